"""A chain of datastores: one put writes to every child that accepts it (DMS-MWBT-REQ-0063)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .._dataset_ref import DatasetRef
from .._file_provenance import FileProvenance
from ._base import Constraints, Datastore, DatastoreTrash
from ._exceptions import DatasetNotFoundError, DatastoreError

__all__ = ["ChainedDatastore"]


class ChainedDatastore(Datastore):
    """Children in order; each may use its own formats, templates and constraints.

    ``put`` writes to every accepting child, all or nothing: if a child fails,
    the copies already written to earlier children are removed. ``get`` reads
    from the first child holding the dataset.
    """

    def __init__(self, children: Sequence[Datastore], name: str = "chained",
                 constraints: Constraints | None = None) -> None:
        if not children:
            raise ValueError("a chained datastore needs at least one child")
        super().__init__(name, children[0].storage_classes, constraints)
        self.children = list(children)

    def accepts(self, ref: DatasetRef) -> bool:
        return super().accepts(ref) and any(c.accepts(ref) for c in self.children)

    def put(self, obj: Any, ref: DatasetRef, provenance: FileProvenance | None = None) -> None:
        self._check_put(obj, ref)
        done: list[Datastore] = []
        try:
            for child in self.children:
                if child.accepts(ref):
                    child.put(obj, ref, provenance)
                    done.append(child)
        except BaseException:
            for child in done:
                with contextlib.suppress(Exception):  # best effort; the original error is what matters
                    child.remove(ref)
            raise

    def get(self, ref: DatasetRef, parameters: Mapping[str, Any] | None = None,
            storage_class: str | None = None) -> Any:
        for child in self.children:
            if child.exists(ref):
                return child.get(ref, parameters, storage_class)
        raise DatasetNotFoundError(f"dataset {ref.dataset_type.name} (id {ref.id}) is in no child of {self.name!r}")

    def exists(self, ref: DatasetRef) -> bool:
        return any(c.exists(ref) for c in self.children)

    def remove(self, ref: DatasetRef) -> None:
        holders = [c for c in self.children if c.exists(ref)]
        if not holders:
            raise DatasetNotFoundError(f"dataset {ref.dataset_type.name} (id {ref.id}) is in no child of {self.name!r}")
        errors = []
        for child in holders:
            try:
                child.remove(ref)
            except DatastoreError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def trash(self, refs: Iterable[DatasetRef]) -> DatastoreTrash:
        """Trash in every child, all or nothing: a child's failure restores the children before it."""
        refs = list(dict.fromkeys(refs))
        done: list[DatastoreTrash] = []
        try:
            for child in self.children:
                done.append(child.trash(refs))
        except BaseException:
            for trash in reversed(done):
                with contextlib.suppress(Exception):
                    trash.restore()
            raise

        def restore() -> None:
            errors: list[Exception] = []
            for trash in reversed(done):
                try:
                    trash.restore()
                except Exception as exc:  # noqa: BLE001 - restore the other children too
                    errors.append(exc)
            if errors:
                raise errors[0]

        def empty() -> None:
            for trash in done:
                trash.empty()

        held = list(dict.fromkeys(r for trash in done for r in trash.refs))
        return DatastoreTrash(restore, empty, held)

    def refs(self) -> Iterator[DatasetRef]:
        seen = set()
        for child in self.children:
            for ref in child.refs():
                if ref.id not in seen:
                    seen.add(ref.id)
                    yield ref

    def get_uri(self, ref: DatasetRef) -> str | None:
        for child in self.children:
            if child.exists(ref):
                return child.get_uri(ref)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "children": [c.to_dict() for c in self.children]}
