"""Datastores: where the bytes of datasets live.

``FileDatastore`` over a ``PosixBackend``, an ``S3Backend`` or a ``DavBackend``,
``InMemoryDatastore``, ``ChainedDatastore``, the shared ``DatastoreCache``,
and :func:`datastore_from_config`. Errors: see ``_exceptions``.

``S3Backend`` (boto3), ``DavBackend`` and ``RestPublishDatastore`` are imported on first
attribute access (PEP 562), so a POSIX repository never loads boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports as _lazy_exports
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
from ._staged import (
    ChecksumMismatchError,
    DatasetConflictError,
    StagedFileError,
    StoredFile,
    open_file_datastore,
    staged_dataset_ref,
    store_staged_file,
)
from ._transactions import removing_on_failure, restore_trash
from ._transfer import TransferMode, transfer_dataset

if TYPE_CHECKING:
    from ._dav import DavBackend, DavSettings
    from ._rest import RestPublishDatastore
    from ._s3 import S3Backend

_LAZY = {"DavBackend": "._dav", "DavSettings": "._dav", "RestPublishDatastore": "._rest", "S3Backend": "._s3"}


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)

__all__ = [
    "ChainedDatastore",
    "ChecksumMismatchError",
    "Constraints",
    "DatasetConflictError",
    "DatasetCorruptError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "Datastore",
    "DatastoreCache",
    "DatastoreError",
    "DatastorePermissionError",
    "DatastoreTrash",
    "DavBackend",
    "DavSettings",
    "FileDatastore",
    "FileTemplateError",
    "InMemoryDatastore",
    "MissingLocalFileError",
    "PosixBackend",
    "RestPublishDatastore",
    "S3Backend",
    "StagedFileError",
    "StorageUnavailableError",
    "StoredFile",
    "StoredRecord",
    "TransferMode",
    "datastore_from_config",
    "open_file_datastore",
    "removing_on_failure",
    "restore_trash",
    "staged_dataset_ref",
    "store_staged_file",
    "transfer_dataset",
]
