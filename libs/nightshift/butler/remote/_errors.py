"""Errors of the remote butler client."""

from __future__ import annotations

from ..._exceptions import NightshiftError

__all__ = ["RemoteAuthenticationError", "RemoteButlerError"]


class RemoteButlerError(NightshiftError):
    """The butler service could not answer (unreachable, or an error without a local class)."""

    error_type = "butler.remote"

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class RemoteAuthenticationError(RemoteButlerError, PermissionError):
    """The service refused the bearer token (HTTP 401): none was sent, or not the right one."""

    error_type = "butler.remote.unauthorized"
