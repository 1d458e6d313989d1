"""Registry manager: dimension records, sky maps, copying records between repositories."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .._registry_exceptions import ConflictingDefinitionError, DimensionRecordError
from ..dimensions import DimensionRecord
from . import _querying
from ._records_io import record_to_row, row_to_record, skypix_rows
from ._storage import RegistryStorage

if TYPE_CHECKING:
    from ._registry import Registry

__all__ = ["DimensionManager"]


class DimensionManager:
    """Dimension records, many-to-many relations, sky maps, copying records between repositories."""

    def __init__(self, storage: RegistryStorage) -> None:
        self._storage = storage

    def insert_dimension_records(
        self, element: str, records: Iterable[Mapping[str, Any]], *, skip_existing: bool = False
    ) -> int:
        """Insert records of one dimension (e.g. ``visit`` with seeing, region, timespan).

        Parameters
        ----------
        element
            Dimension name.
        records
            Mappings of field name -> value: the keys of required dimensions
            (``instrument``), the element's key (``id``/``name``), implied
            dimensions, metadata fields, ``timespan`` (:class:`Timespan`) and
            ``region`` (list of ``(ra, dec)`` degrees) where the element has them.
        skip_existing
            Leave records whose key exists untouched instead of raising.

        Returns
        -------
        int
            Number of records inserted.

        Raises
        ------
        DimensionRecordError
            On a bad record (nothing is inserted).
        ConflictingDefinitionError
            If a record exists already (and ``skip_existing`` is false) or a
            referenced dimension value has no record.
        """
        dim = self._storage.universe[element]
        rows = [record_to_row(self._storage.universe, dim, r) for r in records]
        if not rows:
            return 0
        table = self._storage.tables.dimensions[element]
        keys = (*dim.requires, dim.key_name)
        with self._storage.db.transaction() as conn:
            if skip_existing:
                existing = self._storage.existing_keys(conn, table, keys, rows)
                rows = [r for r in rows if tuple(r[k] for k in keys) not in existing]
            self._storage.bulk_insert(conn, table, rows)
            if dim.has_region:
                sky = [s for r in rows for s in skypix_rows(dim, r, r.pop("_ranges", None))]
                self._storage.bulk_insert(conn, self._storage.tables.skypix[element], sky)
        return len(rows)

    def insert_join_rows(self, join: str, rows: Iterable[Mapping[str, int | str]]) -> int:
        """Insert rows of a many-to-many relation (e.g. ``visit_definition``: exposure ↔ visit)."""
        spec = self._storage.universe.joins.get(join)
        if spec is None:
            raise DimensionRecordError(f"unknown relation {join!r}; known: {', '.join(self._storage.universe.joins)}")
        clean = [self._storage.universe.normalize_data_id(spec.dimensions, r, what=f"{join} row") for r in rows]
        with self._storage.db.transaction() as conn:
            self._storage.bulk_insert(conn, self._storage.tables.joins[join], clean)
        return len(clean)

    def get_dimension_record(self, element: str, data_id: Mapping[str, int | str]) -> DimensionRecord | None:
        """The record of one dimension value, or None."""
        recs = self.query_dimension_records(element, data_id=data_id)
        return recs[0] if recs else None

    def query_dimension_records(
        self,
        element: str,
        *,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        data_id: Mapping[str, int | str] | None = None,
    ) -> list[DimensionRecord]:
        """Records of one dimension matching a ``where`` expression.

        Examples
        --------
        >>> registry.query_dimension_records("visit", where="visit.seeing < 0.8 AND band = 'r'")
        """
        dim = self._storage.universe[element]
        rows = _querying.dimension_record_rows(self._storage, element, where, bind or {}, data_id or {})
        return [row_to_record(dim, r) for r in rows]

    def register_skymap(self, skymap: Any) -> bool:
        """Add a sky map and all its tracts and patches (with regions) (REQ-0020).

        Parameters
        ----------
        skymap : nightshift.sky.HealpixSkyMap or mapping
            The sky map object, or its config (``{"name": ..., "kind": "healpix", ...}``).

        Returns
        -------
        bool
            False if an identical sky map (same hash) was already registered.

        Raises
        ------
        ConflictingDefinitionError
            If a different sky map has that name.
        """
        from ...sky import HealpixSkyMap

        if isinstance(skymap, Mapping):
            skymap = HealpixSkyMap.from_config(skymap)
        existing = self.get_dimension_record("skymap", {"skymap": skymap.name})
        if existing is not None:
            if existing.hash != skymap.hash:
                raise ConflictingDefinitionError(
                    f"sky map {skymap.name!r} exists with another geometry (hash {existing.hash} != {skymap.hash});"
                    " register the new tiling under a new name"
                )
            return False
        tracts, patches = [], []
        for tract in skymap:
            tracts.append({"skymap": skymap.name, "id": tract.id, "region": tract.vertices,
                           "_ranges": [tract.skypix_range]})
            for p in tract.patches:
                patches.append({"skymap": skymap.name, "tract": tract.id, "id": p.id, "region": p.vertices,
                                "cell_x": p.cell_x, "cell_y": p.cell_y, "_ranges": [p.skypix_range]})
        with self._storage.db.transaction():
            self.insert_dimension_records("skymap", [{
                "name": skymap.name, "hash": skymap.hash, "kind": skymap.kind,
                "tract_max": skymap.tract_max, "patch_max": skymap.patch_max,
            }])
            self._insert_precomputed("tract", tracts)
            self._insert_precomputed("patch", patches)
        return True

    def _insert_precomputed(self, element: str, records: list[dict[str, Any]]) -> None:
        dim = self._storage.universe[element]
        rows, sky = [], []
        for rec in records:
            ranges = rec.pop("_ranges")
            row = record_to_row(self._storage.universe, dim, rec)
            rows.append(row)
            sky.extend(skypix_rows(dim, row, ranges))
        with self._storage.db.transaction() as conn:
            self._storage.bulk_insert(conn, self._storage.tables.dimensions[element], rows)
            self._storage.bulk_insert(conn, self._storage.tables.skypix[element], sky)

    def copy_dimension_records_from(
        self,
        source: Registry,
        *,
        elements: Iterable[str] | None = None,
        improve: Callable[[DimensionRecord], Mapping[str, Any] | None] | None = None,
    ) -> dict[str, int]:
        """Take another repository's dimension records, optionally improved (REQ-0023).

        The source is only read: improved values (e.g. a better visit PSF size
        measured by processing) go into *this* repository.

        Parameters
        ----------
        source
            Registry to read records from.
        elements
            Dimensions to copy (with everything they depend on); all by default.
        improve
            Called with each source record; returns replacement field values
            (merged over the record) or None to keep it as is.

        Returns
        -------
        dict
            Records copied per element.
        """
        names = self._storage.universe.full_closure(elements) if elements is not None else self._storage.universe.names
        counts: dict[str, int] = {}
        with self._storage.db.transaction():
            for name in names:
                recs = []
                for rec in source.query_dimension_records(name):
                    fields = rec.to_dict()
                    if improve is not None:
                        changes = improve(rec)
                        if changes:
                            unknown = set(changes) - set(fields)
                            if unknown:
                                raise DimensionRecordError(
                                    f"improve() returned unknown {name} field(s) {sorted(unknown)}"
                                )
                            fields.update(changes)
                    recs.append(fields)
                counts[name] = self.insert_dimension_records(name, recs, skip_existing=True)
            for jname, join in self._storage.universe.joins.items():
                if all(d in names for d in join.dimensions):
                    rows = source.query_join_rows(jname)
                    with self._storage.db.transaction() as conn:
                        table = self._storage.tables.joins[jname]
                        have = self._storage.existing_keys(conn, table, join.dimensions, rows) if rows else set()
                        self._storage.bulk_insert(conn, table, [r for r in rows
                                                         if tuple(r[k] for k in join.dimensions) not in have])
        return counts

    def query_join_rows(self, join: str) -> list[dict[str, int | str]]:
        """All rows of a many-to-many relation such as ``visit_definition``."""
        table = self._storage.tables.joins[join]
        with self._storage.db.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table))]
