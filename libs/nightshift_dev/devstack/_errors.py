from __future__ import annotations

from nightshift import NightshiftError


class StackError(NightshiftError):
    """A server of the local stack could not be set up or started.

    The message says which server, why, and how to fix it; where a server
    wrote a log, its tail is included.
    """

    error_type = "stack"


class MissingToolError(StackError):
    """A program the local stack needs (java, mvn, initdb, pg_ctl) is missing."""

    error_type = "stack_missing_tool"
