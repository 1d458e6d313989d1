"""The datastore interface and the record a file datastore keeps of each dataset."""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._dataset_ref import DatasetRef
from .._file_provenance import FileProvenance
from .._storage_class import StorageClass, StorageClassFactory
from ._exceptions import DatastoreError

__all__ = ["Constraints", "Datastore", "DatastoreTrash", "StoredRecord"]


@dataclass(frozen=True)
class StoredRecord:
    """What a file datastore knows about one stored dataset.

    Paths are relative to the datastore root, so a repository is relocated by
    changing the root only (DMS-MWBT-REQ-0001). ``sidecar`` is the path of the
    file's provenance sidecar, for formats that cannot hold it (DMS-MWBT-REQ-0096).
    """

    id: str
    path: str
    formatter: str
    formatter_options: Mapping[str, Any]
    storage_class: str
    checksum: str | None
    size: int
    ref: Mapping[str, Any] = field(default_factory=dict)
    sidecar: str | None = None

    def to_json(self) -> bytes:
        """Serialized form."""
        d = {
            "id": self.id, "path": self.path, "formatter": self.formatter,
            "formatter_options": dict(self.formatter_options), "storage_class": self.storage_class,
            "checksum": self.checksum, "size": self.size, "ref": dict(self.ref),
        }
        if self.sidecar is not None:
            d["sidecar"] = self.sidecar
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StoredRecord:
        """Parse :meth:`to_json` output."""
        return cls(**json.loads(data))

    def dataset_ref(self) -> DatasetRef:
        """The ref this record was written for."""
        return DatasetRef.from_dict(self.ref)


class Constraints:
    """Which datasets a datastore accepts, by dataset type or storage class name.

    Parameters
    ----------
    accept : iterable of str, optional
        If given, only these dataset types / storage classes are accepted.
    reject : iterable of str, optional
        These are never accepted.
    """

    def __init__(self, accept: Iterable[str] | None = None, reject: Iterable[str] | None = None) -> None:
        self.accept = frozenset(accept) if accept is not None else None
        self.reject = frozenset(reject or ())

    def accepts(self, ref: DatasetRef) -> bool:
        """Whether ``ref`` may be stored here."""
        dt = ref.dataset_type
        names = {dt.name, dt.parent_name, dt.storage_class}
        if names & self.reject:
            return False
        return self.accept is None or bool(names & self.accept)

    def to_dict(self) -> dict[str, Any]:
        """Configuration form."""
        out: dict[str, Any] = {}
        if self.accept is not None:
            out["accept"] = sorted(self.accept)
        if self.reject:
            out["reject"] = sorted(self.reject)
        return out


class DatastoreTrash:
    """Datasets taken out of a datastore reversibly: :meth:`restore` puts them back, :meth:`empty` ends them.

    Made by :meth:`Datastore.trash`. Between the two calls the datasets do not
    exist for the datastore (``exists`` is False) but nothing is lost, so a
    caller can make a removal all-or-nothing with another store (the registry).

    Parameters
    ----------
    restore : callable
        Undo the trashing (raises if it cannot).
    empty : callable
        Delete what was trashed for good (best effort).
    refs : sequence of DatasetRef
        The datasets that were actually stored and are now in the trash.
    """

    def __init__(self, restore: Callable[[], None], empty: Callable[[], None], refs: Sequence[DatasetRef]) -> None:
        self._restore = restore
        self._empty = empty
        self.refs = list(refs)
        self._done = False

    def restore(self) -> None:
        """Put every trashed dataset back (idempotent).

        Raises
        ------
        DatastoreError
            Something could not be put back; the message says where it is.
        """
        if not self._done:
            self._done = True
            self._restore()

    def empty(self) -> None:
        """Delete the trashed datasets for good (idempotent)."""
        if not self._done:
            self._done = True
            self._empty()


class Datastore(ABC):
    """Where the bytes (or objects) of datasets live.

    Every implementation passes the same conformance suite
    (``tests/butler/datastore_conformance.py``).

    Parameters
    ----------
    name : str
        Label used in messages and chained configurations.
    storage_classes : StorageClassFactory, optional
        Storage class definitions; the packaged defaults if omitted.
    constraints : Constraints, optional
        Which datasets this datastore accepts.
    """

    def __init__(
        self,
        name: str,
        storage_classes: StorageClassFactory | None = None,
        constraints: Constraints | None = None,
    ) -> None:
        self.name = name
        self.storage_classes = storage_classes if storage_classes is not None else StorageClassFactory()
        self.constraints = constraints if constraints is not None else Constraints()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def accepts(self, ref: DatasetRef) -> bool:
        """Whether this datastore is configured to store ``ref``."""
        return self.constraints.accepts(ref)

    def _check_put(self, obj: Any, ref: DatasetRef) -> StorageClass:
        if ref.dataset_type.component is not None:
            raise DatastoreError(f"cannot put component {ref.dataset_type.name!r}: put the composite")
        if not self.accepts(ref):
            raise DatastoreError(f"datastore {self.name!r} does not accept dataset type {ref.dataset_type.name!r}")
        sc = self.storage_classes.get(ref.dataset_type.storage_class)
        sc.validate_instance(obj)
        return sc

    def _target_class(self, ref: DatasetRef, storage_class: str | None) -> tuple[StorageClass, StorageClass]:
        parent = self.storage_classes.get(ref.dataset_type.storage_class)
        if storage_class is not None:
            return parent, self.storage_classes.get(storage_class)
        comp = ref.dataset_type.component
        if comp is None:
            return parent, parent
        return parent, self.storage_classes.component_class(parent.name, comp)

    @abstractmethod
    def put(self, obj: Any, ref: DatasetRef, provenance: FileProvenance | None = None) -> None:
        """Store ``obj`` as dataset ``ref``; all or nothing (DMS-MWBT-REQ-0076).

        ``provenance`` (from the quantum that made ``obj``) is written into
        the file, or a sidecar, by datastores of files (DMS-MWBT-REQ-0096);
        others ignore it.

        Raises
        ------
        DatasetExistsError
            Already stored and clobbering is off (DMS-MWBT-REQ-0074).
        StorageClassError
            ``obj`` is not of the dataset type's storage class.
        FormatterError, DatastoreError
            Writing failed; nothing was left behind.
        """

    @abstractmethod
    def get(
        self,
        ref: DatasetRef,
        parameters: Mapping[str, Any] | None = None,
        storage_class: str | None = None,
    ) -> Any:
        """Read dataset ``ref`` (or its component, if ``ref`` is a component ref).

        Parameters
        ----------
        ref : DatasetRef
            A dataset, or a component of one (``calexp.wcs``).
        parameters : mapping, optional
            Subset to read, e.g. ``{"bbox": Box(...)}`` (DMS-MWBT-REQ-0033).
        storage_class : str, optional
            Read as this storage class instead (same bytes, other Python type).

        Raises
        ------
        DatasetNotFoundError
            Not stored here.
        DatasetCorruptError
            The file's checksum does not match its record.
        """

    def put_many(self, items: Iterable[tuple[Any, DatasetRef]]) -> None:
        """Store several datasets, all or nothing (a failure removes those already written)."""
        done: list[DatasetRef] = []
        try:
            with self.batch():
                for obj, ref in items:
                    self.put(obj, ref)
                    done.append(ref)
        except BaseException:
            for ref in done:
                with contextlib.suppress(Exception):  # best effort; the original error matters
                    self.remove(ref)
            raise

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """A block of many writes: file datastores flush once at its end instead of once per file."""
        return contextlib.nullcontext()

    @abstractmethod
    def exists(self, ref: DatasetRef) -> bool:
        """Whether ``ref`` (its parent, for a component) is stored here."""

    @abstractmethod
    def remove(self, ref: DatasetRef) -> None:
        """Delete the stored dataset.

        Raises
        ------
        DatasetNotFoundError
            Not stored here.
        DatastorePermissionError
            The storage does not allow the current user to delete it (DMS-MWBT-REQ-0004).
        """

    def trash(self, refs: Iterable[DatasetRef]) -> DatastoreTrash:
        """Take datasets out of this datastore reversibly (the first step of an all-or-nothing delete).

        Datasets not stored here are skipped. Either every stored dataset is
        trashed, or (on error) none is. This default defers the deletion to
        :meth:`DatastoreTrash.empty` after checking each dataset exists;
        datastores that can move their bytes aside override it.

        Raises
        ------
        DatastorePermissionError
            The storage does not allow the current user to delete one of them
            (DMS-MWBT-REQ-0004); nothing was trashed.
        DatastoreError
            Trashing failed; nothing was trashed.
        """
        held = [r for r in dict.fromkeys(refs) if self.exists(r)]

        def empty() -> None:
            for ref in held:
                with contextlib.suppress(Exception):
                    self.remove(ref)

        return DatastoreTrash(lambda: None, empty, held)

    @abstractmethod
    def refs(self) -> Iterator[DatasetRef]:
        """Every dataset stored here."""

    def get_uri(self, ref: DatasetRef) -> str | None:
        """Where the dataset's file is (None for datastores without files)."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """Active configuration (DMS-MWBT-REQ-0026)."""
        return {"name": self.name, **self.constraints.to_dict()}
