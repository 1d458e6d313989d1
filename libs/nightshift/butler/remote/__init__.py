"""The registry service's library: batched registration of stored datasets, the butler's HTTP read API
and the remote butler that reads through it (DMS-MWBT-REQ-0040).

``aiohttp`` (the server) and ``httpx`` (the client) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports as _lazy_exports
from ._errors import RemoteAuthenticationError, RemoteButlerError

if TYPE_CHECKING:
    from ._client import RemoteButler, RemoteButlerSettings, RemoteRegistry
    from ._registrar import BatchRegistrar, RegistrationResult, Rejection, StoredDataset
    from ._server import API_PREFIX, ButlerReadAPI

_LAZY = {
    "API_PREFIX": "._server",
    "BatchRegistrar": "._registrar",
    "ButlerReadAPI": "._server",
    "RegistrationResult": "._registrar",
    "Rejection": "._registrar",
    "RemoteButler": "._client",
    "RemoteButlerSettings": "._client",
    "RemoteRegistry": "._client",
    "StoredDataset": "._registrar",
}

__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)

__all__ = [
    "API_PREFIX",
    "BatchRegistrar",
    "ButlerReadAPI",
    "RegistrationResult",
    "Rejection",
    "RemoteAuthenticationError",
    "RemoteButler",
    "RemoteButlerError",
    "RemoteButlerSettings",
    "RemoteRegistry",
    "StoredDataset",
]
