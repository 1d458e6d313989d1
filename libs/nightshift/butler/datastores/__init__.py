"""Datastores: where the bytes of datasets live.

``FileDatastore`` over a ``PosixBackend`` or an ``S3Backend``,
``InMemoryDatastore``, ``ChainedDatastore``, the shared ``DatastoreCache``,
and :func:`datastore_from_config`. Errors: see ``_exceptions``.
"""

from ._base import Constraints, Datastore, StoredRecord
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
from ._rest import RestPublishDatastore
from ._s3 import S3Backend
from ._transfer import TransferMode, transfer_dataset

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
