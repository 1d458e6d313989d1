"""Wrapping asyncpg and OS errors into the APDB hierarchy at the boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from ._exceptions import ApdbConnectionError, ApdbError, ApdbSchemaError, ApdbTransientError

__all__ = ["translate", "wrapped"]

_TRANSIENT_STATES = {"40001", "40P01", "55P03", "57014", "53300"}


def translate(exc: BaseException, what: str) -> ApdbError:
    """The APDB error for a foreign exception raised while doing ``what``."""
    if isinstance(exc, ApdbError):
        return exc
    state = getattr(exc, "sqlstate", None) or ""
    if (
        isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError, OSError))
        or state.startswith(("08", "57P"))
    ):
        return ApdbConnectionError(f"{what}: database connection lost ({type(exc).__name__}: {exc}); rolled back")
    if isinstance(exc, TimeoutError) or state in _TRANSIENT_STATES:
        return ApdbTransientError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError)):
        return ApdbSchemaError(f"{what}: the APDB schema is missing ({exc}); run `nightshift apdb create`")
    return ApdbError(f"{what}: {type(exc).__name__}: {exc}")


@asynccontextmanager
async def wrapped(what: str) -> AsyncIterator[None]:
    """Re-raise foreign errors as APDB errors, chaining the cause; APDB errors pass through."""
    try:
        yield
    except ApdbError:
        raise
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise translate(exc, what) from exc
