"""An in-memory datastore: storage elision within one process (DMS-MWBT-REQ-0027)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .._dataset_ref import DatasetRef
from .._file_provenance import FileProvenance
from .._storage_class import StorageClassFactory
from ..formatters._exceptions import UnsupportedComponentError, UnsupportedParameterError
from ._base import Constraints, Datastore, DatastoreTrash
from ._exceptions import DatasetExistsError, DatasetNotFoundError

__all__ = ["InMemoryDatastore"]


class InMemoryDatastore(Datastore):
    """Holds the objects themselves; ``get`` returns the object that was put.

    Components and parameters are handled by the storage class delegate.
    Objects are not copied: callers must not mutate what they put or get
    (the same contract as daf_butler's in-memory datastore).
    """

    def __init__(
        self,
        name: str = "memory",
        storage_classes: StorageClassFactory | None = None,
        constraints: Constraints | None = None,
        clobber: bool = False,
    ) -> None:
        super().__init__(name, storage_classes, constraints)
        self.clobber = clobber
        self._objects: dict[Any, tuple[Any, DatasetRef]] = {}
        self._lock = threading.Lock()

    def put(self, obj: Any, ref: DatasetRef, provenance: FileProvenance | None = None) -> None:
        self._check_put(obj, ref)
        with self._lock:
            if ref.id in self._objects and not self.clobber:
                raise DatasetExistsError(
                    f"dataset {ref.dataset_type.name} {dict(ref.data_id)} is already in {self.name!r}"
                )
            self._objects[ref.id] = (obj, ref)

    def get(self, ref: DatasetRef, parameters: Mapping[str, Any] | None = None,
            storage_class: str | None = None) -> Any:
        try:
            obj, stored = self._objects[ref.id]
        except KeyError:
            raise DatasetNotFoundError(
                f"dataset {ref.dataset_type.name} {dict(ref.data_id)} (id {ref.id}) is not in {self.name!r}"
            ) from None
        parent_sc = self.storage_classes.get(stored.dataset_type.storage_class)
        component = ref.dataset_type.component
        target_sc = parent_sc
        if component is not None:
            target_sc = self.storage_classes.component_class(parent_sc.name, component)
        params = dict(parameters or {})
        unknown = set(params) - (parent_sc.parameters | target_sc.parameters)
        if unknown:
            raise UnsupportedParameterError(f"parameter(s) {sorted(unknown)} not supported by {target_sc.name!r}")
        try:
            if params and component is not None and set(params) <= parent_sc.parameters:
                obj = parent_sc.delegate().handle_parameters(obj, params)
                params = {}
            if component is not None:
                obj = parent_sc.delegate().get_component(obj, component)
            if params:
                obj = target_sc.delegate().handle_parameters(obj, params)
        except KeyError as exc:
            raise UnsupportedComponentError(f"{parent_sc.name} has no component {component!r}") from exc
        except (ValueError, TypeError) as exc:
            raise UnsupportedParameterError(str(exc)) from exc
        return obj

    def exists(self, ref: DatasetRef) -> bool:
        return ref.id in self._objects

    def remove(self, ref: DatasetRef) -> None:
        with self._lock:
            if self._objects.pop(ref.id, None) is None:
                raise DatasetNotFoundError(f"dataset {ref.dataset_type.name} (id {ref.id}) is not in {self.name!r}")

    def trash(self, refs: Iterable[DatasetRef]) -> DatastoreTrash:
        """Take the objects out; :meth:`DatastoreTrash.restore` puts them back."""
        with self._lock:
            taken = {r.id: self._objects.pop(r.id) for r in dict.fromkeys(refs) if r.id in self._objects}

        def restore() -> None:
            with self._lock:
                self._objects.update(taken)

        return DatastoreTrash(restore, taken.clear, [ref for _, ref in taken.values()])

    def refs(self) -> Iterator[DatasetRef]:
        for _, ref in list(self._objects.values()):
            yield ref
