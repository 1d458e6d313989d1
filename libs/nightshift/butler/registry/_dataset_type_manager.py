"""Registry manager: dataset types."""

from __future__ import annotations

import fnmatch
import json

import sqlalchemy as sa

from .._dataset_type import DatasetType
from .._registry_exceptions import (
    ConflictingDefinitionError,
    DataIdError,
    DatasetMetadataError,
    MissingDatasetTypeError,
)
from ._storage import RegistryStorage

__all__ = ["METADATA_TYPES", "DatasetTypeManager"]


METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (float, int), "str": (str,), "string": (str,), "bool": (bool,),
}


class DatasetTypeManager:
    """Registers and looks up dataset types (the ``dataset_type`` table), with a cache of those read."""

    def __init__(self, storage: RegistryStorage) -> None:
        self._storage = storage
        self._entries: dict[str, tuple[int, DatasetType]] = {}

    def forget(self) -> None:
        """Drop the cache (after a rolled-back transaction: a type read inside it may not exist)."""
        self._entries.clear()

    def register_dataset_type(self, dataset_type: DatasetType) -> bool:
        """Register a dataset type, at any time including pre-flight (REQ-0059).

        Returns
        -------
        bool
            True if it was new, False if an identical definition exists.

        Raises
        ------
        ConflictingDefinitionError
            If the name exists with other dimensions, storage class, calibration flag or metadata.
        DimensionNameError
            If a dimension is unknown.
        DataIdError
            If the dimensions leave out one they require (e.g. ``visit`` without ``instrument``).
        """
        if dataset_type.component is not None:
            raise ConflictingDefinitionError(
                f"register the parent dataset type {dataset_type.parent_name!r}, not the component "
                f"{dataset_type.name!r}"
            )
        dims = set(dataset_type.dimensions)
        closure = self._storage.universe.required_closure(dims)
        missing = [d for d in closure if d not in dims]
        if missing:
            raise DataIdError(
                f"dataset type {dataset_type.name!r} has dimensions {sorted(dims)} but they require {missing}; "
                "add them to the dimensions"
            )
        for ftype in dataset_type.metadata.values():
            if ftype not in METADATA_TYPES:
                raise DatasetMetadataError(
                    f"dataset type {dataset_type.name!r} metadata type {ftype!r} unknown; "
                    f"use one of {sorted(METADATA_TYPES)}"
                )
        t = self._storage.tables.dataset_type
        row = {
            "name": dataset_type.name,
            "dimensions": ",".join(self._storage.universe.sorted(dims)),
            "storage_class": dataset_type.storage_class,
            "is_calibration": dataset_type.is_calibration,
            "metadata_fields": json.dumps(dict(sorted(dataset_type.metadata.items()))),
        }
        with self._storage.db.transaction() as conn:
            existing = conn.execute(sa.select(t).where(t.c.name == dataset_type.name)).first()
            if existing is not None:
                stored = _from_row(existing._mapping)
                if stored != dataset_type:
                    raise ConflictingDefinitionError(
                        f"dataset type {dataset_type.name!r} is already registered as {stored.to_dict()}; "
                        f"it cannot be redefined as {dataset_type.to_dict()} -- use a new name"
                    )
                return False
            conn.execute(t.insert().values(**row))
        return True

    def entry(self, dataset_type: str | DatasetType) -> tuple[int, DatasetType]:
        """The registered ``(dataset_type_id, DatasetType)`` of a name, component name or definition.

        Raises
        ------
        MissingDatasetTypeError
            If it is not registered.
        ConflictingDefinitionError
            If a given definition differs from the registered one.
        """
        name = dataset_type if isinstance(dataset_type, str) else dataset_type.parent_name
        name = name.split(".", 1)[0]
        entry = self._entries.get(name)
        if entry is None:
            t = self._storage.tables.dataset_type
            with self._storage.db.reading() as conn:
                row = conn.execute(sa.select(t).where(t.c.name == name)).first()
            if row is None:
                raise MissingDatasetTypeError(
                    f"dataset type {name!r} is not registered; register it with register_dataset_type()"
                )
            entry = (row.dataset_type_id, _from_row(row._mapping))
            self._entries[name] = entry
        if isinstance(dataset_type, DatasetType) and dataset_type.component is None and dataset_type != entry[1]:
            raise ConflictingDefinitionError(
                f"dataset type {dataset_type.to_dict()} differs from the registered {entry[1].to_dict()}"
            )
        return entry

    def get_dataset_type(self, name: str) -> DatasetType:
        """The registered dataset type ``name`` (raises MissingDatasetTypeError)."""
        return self.entry(name)[1]

    def query_dataset_types(self, pattern: str | None = None) -> list[DatasetType]:
        """Registered dataset types, optionally filtered by a glob (``calexp*``) (REQ-0092)."""
        t = self._storage.tables.dataset_type
        with self._storage.db.reading() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.name)).all()
        types = [_from_row(r._mapping) for r in rows]
        return [dt for dt in types if pattern is None or fnmatch.fnmatchcase(dt.name, pattern)]


def _from_row(row: sa.RowMapping) -> DatasetType:
    return DatasetType(
        row["name"], [d for d in row["dimensions"].split(",") if d], row["storage_class"],
        bool(row["is_calibration"]), json.loads(row["metadata_fields"]),
    )
