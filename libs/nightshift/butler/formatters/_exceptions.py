"""Errors raised by formatters (reading and writing one file format).

::

    NightshiftError
    └── FormatterError                       a file could not be written or read in this format
        ├── FormatterNotFoundError           (LookupError) no formatter configured / registered
        ├── FormatterDependencyError         (ImportError) the formatter's library is not installed
        ├── UnsupportedComponentError        (KeyError-free LookupError) no such component
        └── UnsupportedParameterError        (ValueError) parameter unknown or invalid

Errors of the libraries a formatter uses (astropy, pyarrow, fastavro ...) are
wrapped in :class:`FormatterError` at the formatter boundary, with the original
exception chained as ``__cause__``.
"""

from __future__ import annotations

from ..._exceptions import NightshiftError

__all__ = [
    "FormatterDependencyError",
    "FormatterError",
    "FormatterNotFoundError",
    "UnsupportedComponentError",
    "UnsupportedParameterError",
]


class FormatterError(NightshiftError):
    """A formatter could not write or read a dataset."""

    error_type = "formatter"


class FormatterNotFoundError(FormatterError, LookupError):
    """No formatter is configured for a dataset type / storage class, or the name is unknown."""

    error_type = "formatter_not_found"


class FormatterDependencyError(FormatterError, ImportError):
    """The Python package a formatter needs is not installed (the message names it)."""

    error_type = "formatter_dependency"


class UnsupportedComponentError(FormatterError, LookupError):
    """The requested component does not exist for this storage class / formatter."""

    error_type = "unsupported_component"


class UnsupportedParameterError(FormatterError, ValueError):
    """A read parameter is unknown to the formatter or has an invalid value."""

    error_type = "unsupported_parameter"
