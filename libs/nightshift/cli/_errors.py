"""The one error handling of every ``nightshift`` command.

A library error (any :class:`~nightshift.NightshiftError`, or the ``ValueError`` /
``LookupError`` a bad argument raises) becomes one line ``Error: <message>`` on stderr
and exit code 1, without a traceback. Bad command-line usage stays click's: exit code 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from .._exceptions import NightshiftError

__all__ = ["EXIT_ERROR", "EXPECTED_ERRORS", "cli_errors"]

F = TypeVar("F", bound=Callable[..., Any])

#: Exit code of a command whose library call failed (click uses 2 for usage errors).
EXIT_ERROR = 1
#: What a command reports as a message instead of a traceback.
EXPECTED_ERRORS: tuple[type[Exception], ...] = (NightshiftError, ValueError, LookupError)


class _LibraryError(click.ClickException):
    exit_code = EXIT_ERROR


def cli_errors(func: F) -> F:
    """Decorate a click command: library errors become ``Error: <message>`` and exit code 1.

    Examples
    --------
    >>> @click.command()
    ... @cli_errors
    ... def create() -> None: ...
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise  # usage errors, aborts: click reports them itself
        except EXPECTED_ERRORS as exc:
            raise _LibraryError(str(exc)) from exc

    wrapper.handles_cli_errors = True  # type: ignore[attr-defined]  # a marker tests look for
    return cast(F, wrapper)  # functools.wraps keeps the signature at run time
