"""Datastores: where the bytes of datasets live.

``FileDatastore`` over a ``PosixBackend`` or an ``S3Backend``,
``InMemoryDatastore``, ``ChainedDatastore``, the shared ``DatastoreCache``,
and :func:`datastore_from_config`. Errors: see ``_exceptions``.

``S3Backend`` (boto3) and ``RestPublishDatastore`` are imported on first
attribute access (PEP 562), so a POSIX repository never loads boto3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._base import Constraints, Datastore, DatastoreTrash, StoredRecord
from ._cache import DatastoreCache
from ._chained import ChainedDatastore
from ._config import datastore_from_config
from ._exceptions import (
    DatasetCorruptError,
    DatasetExistsError,
    DatasetNotFoundError,
    DatastoreError,
    DatastorePermissionError,
    FileTemplateError,
    MissingLocalFileError,
    StorageUnavailableError,
)
from ._file import FileDatastore
from ._memory import InMemoryDatastore
from ._posix import PosixBackend
from ._transfer import TransferMode, transfer_dataset

if TYPE_CHECKING:
    from ._rest import RestPublishDatastore
    from ._s3 import S3Backend

_LAZY = {"RestPublishDatastore": "._rest", "S3Backend": "._s3"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "ChainedDatastore",
    "Constraints",
    "DatasetCorruptError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "Datastore",
    "DatastoreCache",
    "DatastoreError",
    "DatastorePermissionError",
    "DatastoreTrash",
    "FileDatastore",
    "FileTemplateError",
    "InMemoryDatastore",
    "MissingLocalFileError",
    "PosixBackend",
    "RestPublishDatastore",
    "S3Backend",
    "StorageUnavailableError",
    "StoredRecord",
    "TransferMode",
    "datastore_from_config",
    "transfer_dataset",
]
