"""Errors raised by the EFD client.

::

    NightshiftError
    └── EfdError
        ├── UnknownTopicError (+LookupError)   no such topic (the message lists the existing ones)
        ├── EfdSchemaError    (+LookupError)   the EFD tables are missing: call Efd.create()
        └── EfdInputError     (+ValueError)    bad samples, window, form or visit
"""

from __future__ import annotations

from collections.abc import Iterable

from .._exceptions import NightshiftError

__all__ = ["EfdError", "EfdInputError", "EfdSchemaError", "UnknownTopicError"]


class EfdError(NightshiftError):
    """Base class of every EFD error."""

    error_type = "efd"


class UnknownTopicError(EfdError, LookupError):
    """A topic name the EFD does not have.

    Parameters
    ----------
    topic : str
        The name asked for.
    known : iterable of str
        The topics that exist.
    """

    error_type = "efd_unknown_topic"

    def __init__(self, topic: str, known: Iterable[str]) -> None:
        self.topic = topic
        self.known = sorted(known)
        super().__init__(f"unknown EFD topic {topic!r}; existing topics: {', '.join(self.known)}")


class EfdSchemaError(EfdError, LookupError):
    """The EFD tables are not there (create them with :meth:`Efd.create`)."""

    error_type = "efd_schema"


class EfdInputError(EfdError, ValueError):
    """Input rejected: samples of the wrong shape, an empty or reversed window, an unknown form or visit."""

    error_type = "efd_input"
