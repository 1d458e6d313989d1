"""Persisting a staged output file into a file datastore (output staging, DMS-MWBT-REQ-0079).

The streaming Alert Production path: a runner writes each output to a staging
area (a POSIX directory or ``s3://bucket/prefix``) and announces it
(``dataset.write``, with its sha256); the datastore writer calls
:func:`store_staged_file`, which

1. returns at once if the dataset is already stored with the same checksum
   (a redelivered request) and refuses a different checksum (a conflict);
2. fetches the staged file (an S3 object is downloaded to a temporary file);
3. verifies its sha256 against the announced one: a mismatch stores nothing;
4. ingests it with :meth:`FileDatastore.ingest` (copy): the formatter must be
   able to read it, the bytes are published first and the record written
   last, and any failure removes what was placed (the strong exception
   guarantee, DMS-MWBT-REQ-0076).

No registry row is written: the registry service does that from ``dataset.stored``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._dataset_ref import DatasetRef
from .._dataset_type import DatasetType
from ._exceptions import DatasetExistsError, DatastoreError
from ._file import FileDatastore

__all__ = [
    "ChecksumMismatchError",
    "DatasetConflictError",
    "StagedFileError",
    "StoredFile",
    "open_file_datastore",
    "staged_dataset_ref",
    "store_staged_file",
]

_INT = re.compile(r"^-?[0-9]+$")
_CHUNK = 1 << 20


class StagedFileError(DatastoreError):
    """The staged file cannot be read (missing, or the staging URI is not a path or ``s3://`` URI)."""

    error_type = "staged_file"


class ChecksumMismatchError(DatastoreError, ValueError):
    """The staged file's sha256 is not the one announced: it was damaged or replaced after staging."""

    error_type = "checksum_mismatch"


class DatasetConflictError(DatastoreError, ValueError):
    """The dataset id is already stored with other content (another checksum)."""

    error_type = "dataset_conflict"


@dataclass(frozen=True)
class StoredFile:
    """A dataset persisted (or found already persisted) by :func:`store_staged_file`.

    Attributes
    ----------
    ref : DatasetRef
    uri : str
        Where the datastore keeps it (``file://`` or ``s3://`` URI).
    size_bytes : int
    checksum : str
        sha256, hex (no algorithm prefix).
    already_stored : bool
        True if an earlier request stored it (a redelivery).
    """

    ref: DatasetRef
    uri: str
    size_bytes: int
    checksum: str
    already_stored: bool


def open_file_datastore(repo: str | os.PathLike[str]) -> FileDatastore:
    """The file datastore of the repository at ``repo``, from its ``butler.yaml``, without opening its registry.

    Raises
    ------
    DatastoreError
        No repository there, or its datastore is not a file datastore (POSIX or S3).
    """
    import yaml

    from .._butler import CONFIG_NAME, DEFAULT_DATASTORE
    from .._storage_class import StorageClassFactory
    from ._config import datastore_from_config

    root = Path(repo).absolute()
    try:
        config: dict[str, Any] = yaml.safe_load((root / CONFIG_NAME).read_text()) or {}
    except FileNotFoundError:
        raise DatastoreError(f"{root / CONFIG_NAME} not found: give the directory of a butler repository") from None
    store = datastore_from_config(config.get("datastore", DEFAULT_DATASTORE), base=root,
                                  storage_classes=StorageClassFactory(config.get("storage_classes")))
    if not isinstance(store, FileDatastore):
        raise DatastoreError(f"{root}: staged outputs go to a file datastore (POSIX or S3), not "
                             f"{type(store).__name__}")
    return store


def staged_dataset_ref(dataset_type: str, storage_class: str, data_id: Mapping[str, str | int], run: str,
                       dataset_id: uuid.UUID) -> DatasetRef:
    """The :class:`DatasetRef` of an announced output, from the fields of a ``dataset.write`` event.

    Event data IDs carry text; values that are integers (``visit``, ``detector``,
    ``day_obs``) become ``int`` as the butler's dimension values are. The dataset
    type's dimensions are the data ID's keys; the id is the announced one.
    """
    values: dict[str, str | int] = {
        k: int(v) if isinstance(v, str) and _INT.match(v) else v for k, v in data_id.items()
    }
    return DatasetRef(DatasetType(dataset_type, values.keys(), storage_class), values, run, id=dataset_id)


def _bare(checksum: str | None) -> str | None:
    """``sha256:abc`` -> ``abc`` (records keep the algorithm prefix, events do not)."""
    if checksum is None:
        return None
    algorithm, sep, digest = checksum.partition(":")
    if not sep:
        return checksum
    if algorithm != "sha256":
        raise DatastoreError(f"stored checksum {checksum!r} is not sha256; the datastore writer compares sha256 only")
    return digest


def _sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _already(datastore: FileDatastore, ref: DatasetRef, checksum: str) -> StoredFile | None:
    """The stored dataset if ``ref`` is stored with ``checksum``; raises on a conflict; None if not stored."""
    if not datastore.exists(ref):
        return None
    record = datastore.record(ref)
    stored = _bare(record.checksum)
    if stored != checksum:
        raise DatasetConflictError(
            f"dataset {ref.id} ({ref.dataset_type.name} {dict(ref.data_id)}, run {ref.run!r}) is already stored "
            f"with sha256 {stored}, not {checksum}: a different file for the same dataset id; remove the stored "
            "dataset first if it must be replaced")
    return StoredFile(ref, datastore.backend.uri(record.path), record.size, checksum, already_stored=True)


def _fetch(staging_uri: str, workdir: Path, s3_client: Any, endpoint_url: str | None) -> Path:
    if staging_uri.startswith("s3://"):
        bucket, _, key = staging_uri[len("s3://"):].partition("/")
        if not bucket or not key:
            raise StagedFileError(f"staging URI {staging_uri!r} must be s3://bucket/key")
        if s3_client is None:
            import boto3

            s3_client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url or os.environ.get("S3_ENDPOINT"))
        local = workdir / Path(key).name
        try:
            s3_client.download_file(bucket, key, str(local))
        except Exception as exc:  # noqa: BLE001 - botocore's error tree; the message says what happened
            raise StagedFileError(f"cannot download the staged file {staging_uri}: {exc}") from exc
        return local
    if "://" in staging_uri and not staging_uri.startswith("file://"):
        raise StagedFileError(f"staging URI {staging_uri!r}: use a POSIX path or s3://bucket/key")
    path = Path(staging_uri.removeprefix("file://"))
    if not path.is_file():
        raise StagedFileError(f"no staged file at {path}: the writer staged it elsewhere, or it was removed")
    return path


def _remove_staged(staging_uri: str, s3_client: Any, endpoint_url: str | None) -> None:
    """Best effort: a staged file left behind is only disk space (a lifecycle rule can expire it)."""
    try:
        if staging_uri.startswith("s3://"):
            bucket, _, key = staging_uri[len("s3://"):].partition("/")
            if s3_client is None:
                import boto3

                s3_client = boto3.session.Session().client(
                    "s3", endpoint_url=endpoint_url or os.environ.get("S3_ENDPOINT"))
            s3_client.delete_object(Bucket=bucket, Key=key)
        else:
            Path(staging_uri.removeprefix("file://")).unlink(missing_ok=True)
    except Exception:  # noqa: BLE001, S110 - the dataset is stored; the staged copy is garbage either way
        pass


def store_staged_file(datastore: FileDatastore, ref: DatasetRef, staging_uri: str, checksum: str, *,
                      s3_client: Any = None, endpoint_url: str | None = None,
                      remove_staged: bool = False) -> StoredFile:
    """Persist the staged file ``staging_uri`` as dataset ``ref``; idempotent (see the module docstring).

    Parameters
    ----------
    datastore : FileDatastore
        POSIX or S3; must record sha256 checksums.
    ref : DatasetRef
        The dataset (id as announced; see :func:`staged_dataset_ref`).
    staging_uri : str
        Local path (or ``file://``) or ``s3://bucket/key`` of the staged file.
    checksum : str
        Announced sha256 of the file, hex.
    s3_client : botocore client, optional
        For ``s3://`` staging; one from ``endpoint_url`` (or ``$S3_ENDPOINT``) by default.
    endpoint_url : str, optional
    remove_staged : bool
        Delete the staged file once the dataset is stored with its checksum (now or by an earlier
        request; best effort). A redelivered request finds the stored dataset without needing it.

    Returns
    -------
    StoredFile

    Raises
    ------
    DatasetConflictError
        Already stored with another checksum (nothing changed).
    ChecksumMismatchError
        The staged bytes do not have the announced checksum (nothing stored).
    StagedFileError
        The staged file cannot be read.
    DatastoreError
        Storing failed; the datastore is as it was.
    """
    if not isinstance(datastore, FileDatastore):
        raise DatastoreError(f"staged outputs go to a file datastore (POSIX or S3), not {type(datastore).__name__}")
    if datastore.checksum != "sha256":
        raise DatastoreError(f"datastore {datastore.name!r} records checksum {datastore.checksum!r}; the datastore "
                             "writer needs sha256 (set `checksum: sha256` in its configuration)")
    checksum = checksum.lower()
    done = _already(datastore, ref, checksum)
    if done is not None:
        if remove_staged:  # a redelivery after a crash between storing and removing: the same bytes are stored
            _remove_staged(staging_uri, s3_client, endpoint_url)
        return done
    with tempfile.TemporaryDirectory(prefix="nightshift-staged-") as tmp:
        local = _fetch(staging_uri, Path(tmp), s3_client, endpoint_url)
        actual, _ = _sha256(local)
        if actual != checksum:
            raise ChecksumMismatchError(
                f"staged file {staging_uri} has sha256 {actual} but {checksum} was announced for dataset {ref.id}: "
                "it changed after staging; nothing was stored")
        try:
            datastore.ingest(local, ref, mode="copy")
        except DatasetExistsError:  # a concurrent writer of the same request got there first
            done = _already(datastore, ref, checksum)
            if done is None:
                raise
            return done
    record = datastore.record(ref)
    if remove_staged:
        _remove_staged(staging_uri, s3_client, endpoint_url)
    return StoredFile(ref, datastore.backend.uri(record.path), record.size, checksum, already_stored=False)
