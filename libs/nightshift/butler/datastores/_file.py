"""A datastore of files, on a POSIX file system, an S3 object store or a WebDAV server.

One class over three storage backends (:class:`PosixBackend`, :class:`S3Backend`,
:class:`DavBackend`):
paths come from file templates, formats from the formatter configuration, and
each dataset has a small JSON record (``_records/<id>.json``, written last)
holding its relative path, formatter, storage class, size and checksum. A
dataset exists when its record does.

Put, step by step (each step can fail; every failure undoes the earlier ones):

1. the formatter writes the object to a staging file (same file system for
   POSIX, a local temporary directory for S3);
2. fsync;
3. checksum (sha256) and size;
4. publish: rename into place (POSIX; atomic, DMS-MWBT-REQ-0030), upload (S3)
   or PUT aside and MOVE into place (WebDAV);
5. with provenance from a quantum (DMS-MWBT-REQ-0096): it is inside the file
   (written by the formatter in step 1), or for formats without metadata in a
   JSON sidecar ``<file>.provenance.json`` published after the file;
6. write the record.

Component and subset reads (a ``bbox`` cutout) from a backend with byte
ranges (WebDAV) fetch only the bytes the formatter asks for, when the
formatter can read from a seekable stream (``reads_streams``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from ..._exceptions import NightshiftError
from .._dataset_ref import DatasetRef
from .._file_provenance import SIDECAR_SUFFIX, FileProvenance
from .._file_templates import FileTemplates
from .._storage_class import StorageClassFactory
from ..formatters import FormatterFactory, FormatterSpec
from ..formatters._exceptions import FormatterError, UnsupportedComponentError, UnsupportedParameterError
from . import _io
from ._base import Constraints, Datastore, DatastoreTrash, StoredRecord
from ._cache import DatastoreCache
from ._exceptions import (
    DatasetCorruptError,
    DatasetExistsError,
    DatasetNotFoundError,
    DatastoreError,
    DatastorePermissionError,
    MissingLocalFileError,
)

__all__ = ["FileDatastore", "StorageBackend"]

RECORDS = "_records"
#: Where :meth:`FileDatastore.trash` moves files until the removal is final.
TRASH = "_trash"


class StorageBackend(Protocol):
    """What :class:`FileDatastore` needs from a storage backend."""

    remote: bool

    def uri(self, rel: str) -> str: ...
    def new_staging_path(self, rel: str) -> Path: ...
    def publish(self, staging: Path, rel: str) -> None: ...
    def upload(self, local: Path, rel: str) -> None: ...
    def put_bytes(self, rel: str, data: bytes) -> None: ...
    def get_bytes(self, rel: str) -> bytes | None: ...
    def download(self, rel: str, dest: Path) -> None: ...
    def exists(self, rel: str) -> bool: ...
    def size(self, rel: str) -> int | None: ...
    def delete(self, rel: str) -> None: ...
    def check_deletable(self, rel: str) -> None: ...
    def move(self, src: str, dst: str) -> None: ...
    def list(self, prefix: str) -> Iterator[str]: ...


class FileDatastore(Datastore):
    """Datasets as files (POSIX) or objects (S3).

    Parameters
    ----------
    backend : PosixBackend or S3Backend
        Where the files go.
    name : str
        Label.
    templates : FileTemplates, optional
        Path templates (DMS-MWBT-REQ-0066, 0078).
    formatters : FormatterFactory, optional
        Format per dataset type / storage class (DMS-MWBT-REQ-0025).
    storage_classes : StorageClassFactory, optional
    constraints : Constraints, optional
    clobber : bool
        If False (default) putting a stored dataset is an error (DMS-MWBT-REQ-0074);
        if True it replaces it (the old file is restored if the put fails).
    checksum : str or None
        hashlib algorithm for records (``sha256``); None skips checksums.
    verify_checksums : bool
        Verify full reads against the record (component and subset reads
        check the size only, so they stay cheap).
    cache : DatastoreCache, optional
        Local cache for a remote backend (DMS-MWBT-REQ-0058).
    """

    def __init__(
        self,
        backend: Any,
        name: str = "files",
        templates: FileTemplates | None = None,
        formatters: FormatterFactory | None = None,
        storage_classes: StorageClassFactory | None = None,
        constraints: Constraints | None = None,
        clobber: bool = False,
        checksum: str | None = "sha256",
        verify_checksums: bool = True,
        cache: DatastoreCache | None = None,
    ) -> None:
        super().__init__(name, storage_classes, constraints)
        self.backend = backend
        self.templates = templates if templates is not None else FileTemplates()
        self.formatters = formatters if formatters is not None else FormatterFactory()
        self.clobber = clobber
        self.checksum = checksum
        self.verify_checksums = verify_checksums and checksum is not None
        self.cache = cache

    # -- records ---------------------------------------------------------------------------------
    @staticmethod
    def _record_path(ref: DatasetRef) -> str:
        h = ref.id.hex
        return f"{RECORDS}/{h[:2]}/{h}.json"

    def record(self, ref: DatasetRef) -> StoredRecord:
        """The stored record of ``ref``.

        Raises
        ------
        DatasetNotFoundError
            Not stored here.
        """
        data = self.backend.get_bytes(self._record_path(ref))
        if data is None:
            raise DatasetNotFoundError(
                f"dataset {ref.dataset_type.parent_name} {dict(ref.data_id)} in run {ref.run!r} "
                f"(id {ref.id}) is not in datastore {self.name!r}"
            )
        return StoredRecord.from_json(data)

    def _record_or_none(self, ref: DatasetRef) -> StoredRecord | None:
        try:
            return self.record(ref)
        except DatasetNotFoundError:
            return None

    # -- put -------------------------------------------------------------------------------------
    def path_of(self, ref: DatasetRef) -> str:
        """Relative path the dataset is (or would be) stored at."""
        spec = self.formatters.spec_for(ref.dataset_type)
        return self.templates.path(ref) + self.formatters.create(spec).extension

    def put(self, obj: Any, ref: DatasetRef, provenance: FileProvenance | None = None) -> None:
        sc = self._check_put(obj, ref)
        spec = self.formatters.spec_for(ref.dataset_type)
        formatter = self.formatters.create(spec)
        rel = self.templates.path(ref) + formatter.extension
        existing = self._record_or_none(ref)
        if existing is not None and not self.clobber:
            raise DatasetExistsError(
                f"dataset {ref.dataset_type.name} {dict(ref.data_id)} in run {ref.run!r} is already in "
                f"datastore {self.name!r} (at {existing.path}) and clobbering is off"
            )
        staging = self.backend.new_staging_path(rel)
        backup: str | None = None
        published = False
        sidecar: bytes | None = None
        sidecar_written = False
        try:
            if provenance is not None:
                file_provenance = provenance.for_output(ref)
                if not formatter.write_with_provenance(obj, staging, file_provenance):
                    sidecar = file_provenance.to_json().encode()
            else:
                formatter.write(obj, staging)
            checksum: str | None = None
            if getattr(self.backend, "fsync", False):
                _io.fsync_file(staging)
            if self.checksum is not None:
                checksum, size = _io.checksum_file(staging, self.checksum)
            else:
                size = staging.stat().st_size
            if existing is not None:
                backup = existing.path + ".replaced"
                self.backend.move(existing.path, backup)
            published = True  # from here the target may exist, even if publish raises
            self.backend.publish(staging, rel)
            if sidecar is not None:
                sidecar_written = True  # from here it may exist
                self.backend.put_bytes(rel + SIDECAR_SUFFIX, sidecar)
            record = StoredRecord(
                id=str(ref.id), path=rel, formatter=spec.name, formatter_options=dict(spec.options),
                storage_class=sc.name, checksum=checksum, size=size, ref=ref.to_dict(),
                sidecar=rel + SIDECAR_SUFFIX if sidecar is not None else None,
            )
            self.backend.put_bytes(self._record_path(ref), record.to_json())
        except BaseException as exc:
            self._undo_put(staging, rel if published else None, backup, existing,
                           rel + SIDECAR_SUFFIX if sidecar_written else None)
            if isinstance(exc, OSError):
                raise DatastoreError(f"put of {ref.dataset_type.name} to {self.name!r} failed: {exc}") from exc
            raise
        if backup is not None:
            with contextlib.suppress(Exception):
                self.backend.delete(backup)
        if existing is not None and existing.sidecar is not None and sidecar is None:
            with contextlib.suppress(Exception):  # the replaced file's sidecar does not describe this one
                self.backend.delete(existing.sidecar)

    def _undo_put(self, staging: Path, published: str | None, backup: str | None,
                  existing: StoredRecord | None, sidecar: str | None = None) -> None:
        """Best-effort rollback of a failed put (errors here must not mask the original)."""
        with contextlib.suppress(Exception):
            staging.unlink(missing_ok=True)
        if published is not None:
            with contextlib.suppress(Exception):
                self.backend.delete(published)
        if sidecar is not None:
            with contextlib.suppress(Exception):
                self.backend.delete(sidecar)
        if backup is not None and existing is not None:
            with contextlib.suppress(Exception):
                self.backend.move(backup, existing.path)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        deferred = getattr(self.backend, "deferred_sync", None)
        return deferred() if deferred is not None else contextlib.nullcontext()

    # -- get -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _local_file(self, record: StoredRecord, full_read: bool) -> Iterator[Path]:
        ext = Path(record.path).suffix
        if not self.backend.remote:
            path = self.backend.local_path(record.path)
            try:
                if full_read and self.verify_checksums and record.checksum:
                    actual, size = _io.checksum_file(path, record.checksum.split(":", 1)[0])
                    if actual != record.checksum:
                        raise DatasetCorruptError(
                            f"{path}: checksum {actual} does not match the recorded {record.checksum}")
                else:
                    size = os.stat(path).st_size
            except FileNotFoundError:
                raise DatasetNotFoundError(
                    f"the file of dataset {record.id} is missing from datastore {self.name!r}: {path}"
                ) from None
            if size != record.size:
                raise DatasetCorruptError(f"{path} has {size} bytes; {record.size} were written")
            yield path
            return
        if self.cache is not None and record.checksum:
            with self.cache.local(record.checksum, ext, lambda dest: self.backend.download(record.path, dest)) as p:
                yield p
            return
        if self.cache is not None and not self.cache.fetch:
            raise MissingLocalFileError(f"{record.path} has no checksum to find it in the cache; fetching is disabled")
        with tempfile.TemporaryDirectory(prefix="nightshift-get-") as tmp:
            dest = Path(tmp) / f"data{ext}"
            self.backend.download(record.path, dest)
            if self.verify_checksums and record.checksum:
                actual, _ = _io.checksum_file(dest, record.checksum.split(":", 1)[0])
                if actual != record.checksum:
                    raise DatasetCorruptError(
                        f"{self.backend.uri(record.path)}: checksum {actual} does not match {record.checksum}"
                    )
            yield dest

    def get(self, ref: DatasetRef, parameters: Mapping[str, Any] | None = None,
            storage_class: str | None = None) -> Any:
        record = self.record(ref)
        parent_sc, target_sc = self._target_class(ref, storage_class)
        if record.storage_class != parent_sc.name and storage_class is None:
            parent_sc = self.storage_classes.get(record.storage_class)
        component = ref.dataset_type.component
        params = dict(parameters or {})
        allowed = parent_sc.parameters | target_sc.parameters
        unknown = set(params) - allowed
        if unknown:
            raise UnsupportedParameterError(
                f"parameter(s) {sorted(unknown)} not supported by storage class {target_sc.name!r} "
                f"(supports {sorted(allowed)})"
            )
        formatter = self.formatters.create(FormatterSpec(record.formatter, record.formatter_options))
        in_formatter = {k: v for k, v in params.items() if k in formatter.read_parameters}
        in_memory = {k: v for k, v in params.items() if k not in in_formatter}
        full_read = component is None and not params
        if self._ranged_read_possible(record, formatter, component, full_read):
            try:
                with self.backend.open_ranged(record.path, record.size) as stream:
                    obj = formatter.read_stream(stream, target_sc, component, in_formatter)
            except OSError as exc:
                raise DatastoreError(f"ranged read of {self.backend.uri(record.path)} failed: {exc}") from exc
        else:
            try:
                with self._local_file(record, full_read) as path:
                    if component is None or component in formatter.read_components:
                        obj = formatter.read(path, target_sc, component, in_formatter)
                    else:
                        whole = formatter.read(path, parent_sc, None, in_formatter)
                        try:
                            obj = parent_sc.delegate().get_component(whole, component)
                        except KeyError as exc:
                            raise UnsupportedComponentError(
                                f"{parent_sc.name} has no component {component!r}") from exc
            except OSError as exc:
                raise DatastoreError(f"read of {record.path} from {self.name!r} failed: {exc}") from exc
        if in_memory:
            try:
                obj = target_sc.delegate().handle_parameters(obj, in_memory)
            except (ValueError, TypeError) as exc:
                raise UnsupportedParameterError(str(exc)) from exc
        return obj

    def _ranged_read_possible(self, record: StoredRecord, formatter: Any, component: str | None,
                              full_read: bool) -> bool:
        """Whether a component/subset read can fetch byte ranges instead of the whole remote file.

        Only partial reads qualify (a full read is verified against the
        checksum, which needs every byte), only on a backend with
        ``open_ranged`` (WebDAV) and a formatter with ``read_stream``, and
        only when the file is not already in the local cache.
        """
        if full_read or not hasattr(self.backend, "open_ranged") or not getattr(formatter, "reads_streams", False):
            return False
        if component is not None and component not in formatter.read_components:
            return False
        ext = Path(record.path).suffix
        return not (self.cache is not None and record.checksum and self.cache.contains(record.checksum, ext))

    # -- other operations ---------------------------------------------------------------------------
    def exists(self, ref: DatasetRef) -> bool:
        found: bool = self.backend.exists(self._record_path(ref))
        return found

    def get_uri(self, ref: DatasetRef) -> str:
        uri: str = self.backend.uri(self.record(ref).path)
        return uri

    def remove(self, ref: DatasetRef) -> None:
        record = self.record(ref)
        self.backend.check_deletable(record.path)
        self.backend.check_deletable(self._record_path(ref))
        try:
            self.backend.delete(record.path)
            if record.sidecar is not None:
                self.backend.delete(record.sidecar)
            self.backend.delete(self._record_path(ref))
        except OSError as exc:
            raise DatastoreError(f"removal of {record.path} from {self.name!r} failed: {exc}") from exc

    def trash(self, refs: Iterable[DatasetRef]) -> DatastoreTrash:
        """Move the files and records of ``refs`` under ``_trash/<token>/``, reversibly.

        Permissions are checked for every file before anything moves
        (DMS-MWBT-REQ-0004); a failure part-way moves back what had moved. A
        trash left behind by a crash between the registry commit and
        :meth:`DatastoreTrash.empty` holds no record under ``_records`` (the
        datasets no longer exist) and is deleted by :meth:`purge_trash`.
        """
        held = [(ref, rec) for ref in dict.fromkeys(refs) if (rec := self._record_or_none(ref)) is not None]
        for ref, rec in held:
            self.backend.check_deletable(rec.path)
            self.backend.check_deletable(self._record_path(ref))
        base = f"{TRASH}/{uuid.uuid4().hex}"
        moved: list[tuple[str, str]] = []

        def move_all(pairs: list[tuple[str, str]]) -> None:
            for src, dst in pairs:
                try:
                    self.backend.move(src, dst)
                except BaseException:
                    with contextlib.suppress(Exception):  # S3 copies before deleting: drop a half-made copy
                        if self.backend.exists(src):
                            self.backend.delete(dst)
                    raise
                moved.append((src, dst))

        pairs: list[tuple[str, str]] = []
        for ref, rec in held:  # the record first: from then on the dataset does not exist here
            pairs += [(self._record_path(ref), f"{base}/{self._record_path(ref)}"), (rec.path, f"{base}/{rec.path}")]
            if rec.sidecar is not None:
                pairs.append((rec.sidecar, f"{base}/{rec.sidecar}"))
        try:
            move_all(pairs)
        except BaseException as exc:
            self._move_back(moved)
            if isinstance(exc, PermissionError):
                raise DatastorePermissionError(f"not allowed to remove from {self.name!r}: {exc}") from exc
            if isinstance(exc, OSError):
                raise DatastoreError(f"removal from {self.name!r} failed (nothing was removed): {exc}") from exc
            raise

        def empty() -> None:
            for _, dst in moved:
                with contextlib.suppress(Exception):
                    self.backend.delete(dst)

        return DatastoreTrash(lambda: self._move_back(moved, strict=True), empty, [ref for ref, _ in held])

    def _move_back(self, moved: list[tuple[str, str]], strict: bool = False) -> None:
        failed: list[str] = []
        for src, dst in reversed(moved):
            try:
                self.backend.move(dst, src)
            except Exception as exc:  # noqa: BLE001 - keep restoring the others
                failed.append(f"{self.backend.uri(dst)} -> {src}: {exc}")
        if failed and strict:
            raise DatastoreError(
                f"could not restore {len(failed)} file(s) of datastore {self.name!r}; move them back by hand: "
                + "; ".join(failed)
            )

    def purge_trash(self) -> int:
        """Delete what interrupted removals left under ``_trash`` (their datasets are gone); returns files deleted."""
        n = 0
        for rel in list(self.backend.list(TRASH)):
            self.backend.delete(rel)
            n += 1
        return n

    def records(self) -> Iterator[StoredRecord]:
        """Every stored record."""
        for rel in self.backend.list(RECORDS):
            if rel.endswith(".json"):
                data = self.backend.get_bytes(rel)
                if data is not None:
                    yield StoredRecord.from_json(data)

    def refs(self) -> Iterator[DatasetRef]:
        for record in self.records():
            yield record.dataset_ref()

    def ingest(self, path: str | os.PathLike[str], ref: DatasetRef, mode: str = "copy") -> None:
        """Take an existing file (e.g. a non-survey catalog) as dataset ``ref`` (DMS-MWBT-REQ-0046).

        The file must be readable by the formatter configured for the dataset
        type; it is then served exactly like written datasets (REQ-0047).

        Parameters
        ----------
        path : path-like
            A local file.
        ref : DatasetRef
            Resolved ref of the new dataset.
        mode : {"copy", "symlink", "move"}
            ``symlink``/``move`` only for POSIX datastores on the same host.

        Raises
        ------
        DatasetExistsError
            Already stored.
        FormatterError
            The file cannot be read with the configured formatter (nothing is stored).
        """
        if mode not in ("copy", "symlink", "move"):
            raise ValueError(f"ingest mode must be copy, symlink or move, not {mode!r}")
        source = Path(path).absolute()
        if not source.is_file():
            raise DatasetNotFoundError(f"no file to ingest at {source}")
        sc = self.storage_classes.get(ref.dataset_type.storage_class)
        if ref.dataset_type.component is not None or not self.accepts(ref):
            raise DatastoreError(f"datastore {self.name!r} cannot ingest {ref.dataset_type.name!r}")
        if self.exists(ref):
            raise DatasetExistsError(f"{ref.dataset_type.name} {dict(ref.data_id)} is already in {self.name!r}")
        spec = self.formatters.spec_for(ref.dataset_type)
        formatter = self.formatters.create(spec)
        try:  # refuse files the formatter cannot read, before storing anything
            formatter.read(source, sc)
        except NightshiftError:
            raise
        except Exception as exc:  # noqa: BLE001 - any library error means "not readable as configured"
            raise FormatterError(f"{source} cannot be read by formatter {spec.name!r}: {exc}") from exc
        rel = self.templates.path(ref) + formatter.extension
        checksum, size = _io.checksum_file(source, self.checksum or "sha256")
        record = StoredRecord(
            id=str(ref.id), path=rel, formatter=spec.name, formatter_options=dict(spec.options), storage_class=sc.name,
            checksum=checksum if self.checksum else None, size=size, ref=ref.to_dict(),
        )
        placed = False
        try:
            if mode == "copy":
                placed = True
                self.backend.upload(source, rel)
            else:
                if self.backend.remote:
                    raise DatastoreError(f"{mode} ingest needs a POSIX datastore")
                staging = self.backend.new_staging_path(rel)
                if mode == "symlink":
                    os.symlink(source, staging)
                else:
                    os.replace(source, staging)  # same file system; restored below on failure
                placed = True
                try:
                    self.backend.publish(staging, rel)
                except BaseException:
                    if mode == "move" and staging.exists():
                        os.replace(staging, source)
                    raise
                finally:
                    if mode == "symlink":
                        staging.unlink(missing_ok=True)
            self.backend.put_bytes(self._record_path(ref), record.to_json())
        except BaseException as exc:
            if placed:
                if mode == "move" and not source.exists() and self.backend.exists(rel):
                    with contextlib.suppress(Exception):
                        os.replace(self.backend.local_path(rel), source)
                with contextlib.suppress(Exception):
                    self.backend.delete(rel)
            if isinstance(exc, OSError):
                raise DatastoreError(f"ingest of {source} into {self.name!r} failed: {exc}") from exc
            raise

    def adopt(self, ref: DatasetRef, rel: str, *, formatter: str, formatter_options: Mapping[str, Any], size: int,
              checksum: str | None = None) -> None:
        """Record a file the caller has already placed at ``rel`` as dataset ``ref`` (the record is written last).

        Raw ingest (``nightshift.obs``) places files itself (hard links, S3 objects in place) and
        records them here, with its own formatter and options.
        """
        record = StoredRecord(
            id=str(ref.id), path=rel, formatter=formatter, formatter_options=dict(formatter_options),
            storage_class=ref.dataset_type.storage_class, checksum=checksum, size=size, ref=ref.to_dict(),
        )
        self.backend.put_bytes(self._record_path(ref), record.to_json())

    def export_file(self, ref: DatasetRef, dest: Path) -> None:
        """Copy the dataset's file to the local path ``dest`` (verified)."""
        record = self.record(ref)
        with self._local_file(record, full_read=True) as path:
            import shutil

            shutil.copyfile(path, dest)
        if record.sidecar is not None:  # the provenance of a format without metadata goes along
            sidecar = self.backend.get_bytes(record.sidecar)
            if sidecar is not None:
                Path(str(dest) + SIDECAR_SUFFIX).write_bytes(sidecar)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(
            backend=repr(self.backend), templates=self.templates.to_dict(), formatters=self.formatters.to_dict(),
            clobber=self.clobber, checksum=self.checksum, cache=repr(self.cache) if self.cache else None,
        )
        return out
