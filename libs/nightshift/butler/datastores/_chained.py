"""A chain of datastores: one put writes to every child that accepts it (DMS-MWBT-REQ-0063)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._dataset_ref import DatasetRef
from ._base import Constraints, Datastore
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

    def put(self, obj: Any, ref: DatasetRef) -> None:
        self._check_put(obj, ref)
        done: list[Datastore] = []
        try:
            for child in self.children:
                if child.accepts(ref):
                    child.put(obj, ref)
                    done.append(child)
        except BaseException:
            for child in done:
                try:
                    child.remove(ref)
                except Exception:  # noqa: BLE001 - best effort; the original error is what matters
                    pass
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
