"""Errors raised by datastores (where the bytes of datasets live).

::

    NightshiftError
    └── DatastoreError                      a datastore operation failed; the store is unchanged
        ├── DatasetNotFoundError            (LookupError) no such dataset in this datastore
        │   └── MissingLocalFileError       expected local file absent and fetching is disabled
        ├── DatasetExistsError              (no-clobber) the dataset is already stored
        ├── DatasetCorruptError             stored bytes do not match the recorded checksum
        ├── DatastorePermissionError        (PermissionError) the user may not do this here
        └── StorageUnavailableError         [retriable] the storage service failed after retries
    FileTemplateError                       (ValueError) a file template is invalid / unsafe
                                            (defined in nightshift.butler._file_templates)

Every ``put`` that raises one of these leaves the datastore exactly as it was
(DMS-MWBT-REQ-0076). Foreign errors (``OSError``, botocore errors) are wrapped
at the boundary with the original chained as ``__cause__``.
"""

from __future__ import annotations

from ..._exceptions import NightshiftError
from .._file_templates import FileTemplateError

__all__ = [
    "FileTemplateError",
    "DatasetCorruptError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "DatastoreError",
    "DatastorePermissionError",
    "MissingLocalFileError",
    "StorageUnavailableError",
]


class DatastoreError(NightshiftError):
    """A datastore operation failed."""

    error_type = "datastore"


class DatasetNotFoundError(DatastoreError, LookupError):
    """The dataset is not stored in this datastore."""

    error_type = "dataset_not_found"


class MissingLocalFileError(DatasetNotFoundError):
    """A file expected locally is missing, and the configuration forbids fetching it (REQ-0054)."""

    error_type = "missing_local_file"


class DatasetExistsError(DatastoreError):
    """The dataset is already stored and the datastore is configured not to clobber (REQ-0074)."""

    error_type = "dataset_exists"


class DatasetCorruptError(DatastoreError):
    """The stored bytes do not match the checksum recorded when they were written."""

    error_type = "dataset_corrupt"


class DatastorePermissionError(DatastoreError, PermissionError):
    """The storage refused the operation for the current user (REQ-0004)."""

    error_type = "datastore_permission"


class StorageUnavailableError(DatastoreError):
    """The storage service (S3, web service) failed or was unreachable, after retries."""

    retriable = True
    error_type = "storage_unavailable"
