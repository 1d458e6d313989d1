"""Moving datasets between datastores: copy the bytes, or link them (a view sharing files).

Used by the Butler to export subsets (DMS-MWBT-REQ-0011 copy, DMS-MWBT-REQ-0010
view), to upload to another storage context (DMS-MWBT-REQ-0019) and to merge
repositories (DMS-MWBT-REQ-0007). A file keeps its formatter and checksum, so
it reads back identically wherever it goes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

from .._dataset_ref import DatasetRef
from .._file_provenance import SIDECAR_SUFFIX
from ._base import Datastore, StoredRecord
from ._exceptions import DatasetExistsError, DatastoreError
from ._file import FileDatastore
from ._posix import PosixBackend

__all__ = ["TransferMode", "transfer_dataset"]

TransferMode = Literal["copy", "symlink"]


def _dest_path(dest: FileDatastore, record: StoredRecord, dest_ref: DatasetRef) -> str:
    return dest.templates.path(dest_ref) + Path(record.path).suffix


def transfer_dataset(
    source: Datastore,
    dest: Datastore,
    ref: DatasetRef,
    mode: TransferMode = "copy",
    dest_ref: DatasetRef | None = None,
) -> None:
    """Make dataset ``ref`` of ``source`` available in ``dest`` (as ``dest_ref``, default the same ref).

    Parameters
    ----------
    source, dest : Datastore
        From and to.
    ref : DatasetRef
        The dataset in ``source``.
    mode : {"copy", "symlink"}
        ``copy`` transfers the bytes (any datastores); ``symlink`` makes a view
        sharing the source file (POSIX to POSIX only).
    dest_ref : DatasetRef, optional
        Store under another ref (e.g. another run when merging).

    Raises
    ------
    DatasetExistsError
        ``dest`` already holds the dataset.
    DatastoreError
        The transfer is not possible or failed; ``dest`` is unchanged.
    """
    dest_ref = dest_ref or ref
    if dest.exists(dest_ref):
        raise DatasetExistsError(f"{dest_ref.dataset_type.name} {dict(dest_ref.data_id)} is already in {dest.name!r}")
    if not (isinstance(source, FileDatastore) and isinstance(dest, FileDatastore)):
        if mode != "copy":
            raise DatastoreError(f"{mode} transfers need file datastores at both ends")
        dest.put(source.get(ref), dest_ref)  # by value (in-memory / chained datastores)
        return
    record = source.record(ref)
    rel = _dest_path(dest, record, dest_ref)
    new_record = StoredRecord(
        id=str(dest_ref.id), path=rel, formatter=record.formatter, formatter_options=record.formatter_options,
        storage_class=record.storage_class, checksum=record.checksum, size=record.size, ref=dest_ref.to_dict(),
        sidecar=rel + SIDECAR_SUFFIX if record.sidecar is not None else None,
    )
    placed = False
    try:
        if mode == "symlink":
            if not (isinstance(source.backend, PosixBackend) and isinstance(dest.backend, PosixBackend)):
                raise DatastoreError("symlink views need POSIX datastores at both ends")
            target = source.backend.local_path(record.path)
            staging = dest.backend.new_staging_path(rel)
            os.symlink(target, staging)
            placed = True
            try:
                dest.backend.publish(staging, rel)
            finally:
                staging.unlink(missing_ok=True)
        elif mode == "copy":
            with source._local_file(record, full_read=True) as local:  # verified against its checksum
                placed = True
                dest.backend.upload(local, rel)
        else:
            raise ValueError(f"transfer mode must be 'copy' or 'symlink', not {mode!r}")
        if record.sidecar is not None and new_record.sidecar is not None:  # the file's provenance goes along
            provenance = source.backend.get_bytes(record.sidecar)
            if provenance is not None:
                dest.backend.put_bytes(new_record.sidecar, provenance)
        dest.backend.put_bytes(dest._record_path(dest_ref), new_record.to_json())
    except BaseException as exc:
        if placed:
            with contextlib.suppress(Exception):
                dest.backend.delete(rel)
            if new_record.sidecar is not None:
                with contextlib.suppress(Exception):
                    dest.backend.delete(new_record.sidecar)
        if isinstance(exc, OSError):
            raise DatastoreError(f"transfer of {ref.dataset_type.name} to {dest.name!r} failed: {exc}") from exc
        raise
