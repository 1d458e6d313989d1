"""Errors raised by the APDB client.

::

    NightshiftError
    └── ApdbError
        ├── ApdbValidationError (+ValueError)      input rejected before any write [non-retriable]
        ├── ApdbSchemaError     (+LookupError)     schema missing or of another version [non-retriable]
        └── ApdbTransientError  (+RuntimeError)    deadlock, serialization failure, timeout [retriable]
            └── ApdbConnectionError (+ConnectionError)  connection lost; the transaction was rolled back [retriable]

Foreign errors (asyncpg, OSError) are wrapped at the boundary with the cause chained.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._exceptions import NightshiftError

__all__ = [
    "ApdbConnectionError",
    "ApdbError",
    "ApdbSchemaError",
    "ApdbTransientError",
    "ApdbValidationError",
]


class ApdbError(NightshiftError):
    """Base class of every APDB error."""

    error_type = "apdb"


class ApdbValidationError(ApdbError, ValueError):
    """Input rejected before anything was written.

    Parameters
    ----------
    message : str
        Human-readable reason, naming the table, column and rows.
    table : str
        The APDB table the input was meant for.
    column : str or None
        The offending column, if one.
    rows : sequence of int
        Zero-based row numbers of (the first) offending rows.
    """

    error_type = "apdb.validation"

    def __init__(self, message: str, *, table: str, column: str | None = None, rows: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.rows = tuple(int(r) for r in rows)


class ApdbSchemaError(ApdbError, LookupError):
    """The APDB schema does not exist, or was made by an incompatible version."""

    error_type = "apdb.schema"


class ApdbTransientError(ApdbError, RuntimeError):
    """A failure that a retry of the same call may not meet (deadlock, timeout)."""

    retriable = True
    error_type = "apdb.transient"


class ApdbConnectionError(ApdbTransientError, ConnectionError):
    """The database connection was lost; the open transaction was rolled back."""

    error_type = "apdb.connection"


def _check_unique_codes() -> None:
    codes = [
        c.error_type
        for c in (ApdbError, ApdbValidationError, ApdbSchemaError, ApdbTransientError, ApdbConnectionError)
    ]
    if len(set(codes)) != len(codes):  # pragma: no cover - import-time guard
        raise RuntimeError(f"duplicate APDB error_type codes: {codes}")


_check_unique_codes()
