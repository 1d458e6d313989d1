"""Registry manager: RUN, TAGGED, CHAINED and CALIBRATION collections."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, overload

import sqlalchemy as sa

from .._dataset_ref import DatasetRef
from .._dataset_type import DatasetType
from .._registry_exceptions import (
    CollectionCycleError,
    CollectionTypeError,
    ConflictingDefinitionError,
    MissingCollectionError,
)
from ._collections import CollectionRecord, CollectionType
from ._dataset_type_manager import DatasetTypeManager
from ._storage import RegistryStorage, data_id_key
from ._timespan import Timespan

__all__ = ["CollectionManager"]


class CollectionManager:
    """Collections, chains, and dataset membership of TAGGED and CALIBRATION collections.

    Keeps the records of the collections it has read (leaf collections never
    change type); ``dataset_types`` resolves what is associated or certified.
    """

    def __init__(self, storage: RegistryStorage, dataset_types: DatasetTypeManager) -> None:
        self._storage = storage
        self._dataset_types = dataset_types
        self._records: dict[str, CollectionRecord] = {}

    def forget(self) -> None:
        """Drop the cache (after a rolled-back transaction: a collection read inside it may not exist)."""
        self._records.clear()

    def register_collection(self, name: str, type: CollectionType = CollectionType.TAGGED,  # noqa: A002
                            doc: str | None = None) -> bool:
        """Create a collection; returns False if it exists with the same type.

        Raises
        ------
        CollectionTypeError
            If it exists with another type.
        """
        if not isinstance(name, str) or not name or len(name) > 128:
            raise CollectionTypeError(f"collection name must be a non-empty str of <= 128 chars, got {name!r}")
        type = CollectionType(type)  # noqa: A001
        existing = self.record(name, missing_ok=True)
        if existing is not None:
            if existing.type != type:
                raise CollectionTypeError(
                    f"collection {name!r} exists as {existing.type.name}, not {type.name}"
                )
            return False
        t = self._storage.tables.collection
        try:
            with self._storage.db.transaction() as conn:
                conn.execute(t.insert().values(name=name, type=int(type), doc=doc))
        except ConflictingDefinitionError:
            # created concurrently by another process: fine if same type
            existing = self.record(name)
            if existing.type != type:
                raise CollectionTypeError(
                    f"collection {name!r} exists as {existing.type.name}, not {type.name}"
                ) from None
            return False
        return True

    def register_run(self, name: str, doc: str | None = None) -> bool:
        """Create a RUN collection (where datasets are written)."""
        return self.register_collection(name, CollectionType.RUN, doc)

    @overload
    def record(self, name: str, *, missing_ok: Literal[False] = False) -> CollectionRecord: ...

    @overload
    def record(self, name: str, *, missing_ok: bool) -> CollectionRecord | None: ...

    def record(self, name: str, *, missing_ok: bool = False) -> CollectionRecord | None:
        """The record of collection ``name`` (cached); None if it is missing and ``missing_ok``.

        Raises
        ------
        MissingCollectionError
            If there is no such collection (and not ``missing_ok``).
        """
        rec = self._records.get(name)
        if rec is not None:
            return rec
        t = self._storage.tables.collection
        with self._storage.db.reading() as conn:
            row = conn.execute(sa.select(t).where(t.c.name == name)).first()
        if row is None:
            if missing_ok:
                return None
            raise MissingCollectionError(f"collection {name!r} does not exist; create it first")
        rec = CollectionRecord(row.collection_id, row.name, CollectionType(row.type), row.doc)
        self._records[name] = rec
        return rec

    def get_collection_type(self, name: str) -> CollectionType:
        """The type of collection ``name`` (raises MissingCollectionError)."""
        return self.record(name).type

    def get_collection_doc(self, name: str) -> str | None:
        """The documentation string of a collection."""
        return self.record(name).doc

    def set_collection_chain(self, parent: str, children: Sequence[str]) -> None:
        """Define the ordered search path of a CHAINED collection.

        Raises
        ------
        CollectionTypeError
            If ``parent`` is not CHAINED.
        CollectionCycleError
            If the chain would contain itself (directly or through other chains).
        MissingCollectionError
            If a child does not exist.
        """
        if isinstance(children, str):
            children = [children]
        prec = self.record(parent)
        if prec.type != CollectionType.CHAINED:
            raise CollectionTypeError(f"collection {parent!r} is {prec.type.name}, not CHAINED")
        child_recs = [self.record(c) for c in children]
        if len(set(children)) != len(children):
            raise CollectionTypeError(f"chain {parent!r} lists a collection twice: {list(children)}")
        t = self._storage.tables.collection_chain
        with self._storage.db.transaction() as conn:
            for child in child_recs:
                path = self._find_path(conn, child.name, parent, [parent])
                if path is not None:
                    raise CollectionCycleError(
                        f"chaining {child.name!r} into {parent!r} makes a cycle: {' -> '.join(path)}"
                    )
            conn.execute(t.delete().where(t.c.parent_id == prec.id))
            if child_recs:
                conn.execute(t.insert(), [
                    {"parent_id": prec.id, "position": i, "child_id": c.id} for i, c in enumerate(child_recs)
                ])

    def _find_path(self, conn: sa.Connection, start: str, target: str, path: list[str]) -> list[str] | None:
        path = [*path, start]
        if start == target:
            return path
        rec = self.record(start)
        if rec.type != CollectionType.CHAINED:
            return None
        for child in self._chain_children(conn, rec.id):
            found = self._find_path(conn, child, target, path)
            if found is not None:
                return found
        return None

    def _chain_children(self, conn: sa.Connection, parent_id: int) -> list[str]:
        t, c = self._storage.tables.collection_chain, self._storage.tables.collection
        rows = conn.execute(
            sa.select(c.c.name).select_from(t.join(c, t.c.child_id == c.c.collection_id))
            .where(t.c.parent_id == parent_id).order_by(t.c.position)
        )
        return [r[0] for r in rows]

    def get_collection_chain(self, parent: str) -> tuple[str, ...]:
        """The direct children of a CHAINED collection, in search order."""
        rec = self.record(parent)
        if rec.type != CollectionType.CHAINED:
            raise CollectionTypeError(f"collection {parent!r} is {rec.type.name}, not CHAINED")
        with self._storage.db.reading() as conn:
            return tuple(self._chain_children(conn, rec.id))

    def resolve_collections(self, collections: str | Sequence[str]) -> list[CollectionRecord]:
        """Flatten chains into the ordered, de-duplicated leaf collections to search."""
        if isinstance(collections, str):
            collections = [collections]
        if not collections:
            raise MissingCollectionError("no collections given to search; pass collections=[...]")
        cached = [self._records.get(name) for name in collections]
        leaves = [c for c in cached if c is not None and c.type != CollectionType.CHAINED]
        if len(leaves) == len(cached):
            # fast path: leaf collections never change type, so their cached records are final
            return list({c.name: c for c in leaves}.values())
        out: list[CollectionRecord] = []
        seen: set[str] = set()
        with self._storage.db.reading() as conn:
            def visit(name: str) -> None:
                rec = self.record(name)
                if rec.type == CollectionType.CHAINED:
                    for child in self._chain_children(conn, rec.id):
                        visit(child)
                elif name not in seen:
                    seen.add(name)
                    out.append(rec)
            for name in collections:
                visit(name)
        return out

    def query_collections(
        self,
        pattern: str | None = None,
        *,
        types: Iterable[CollectionType] | None = None,
        flatten_chains: bool = False,
    ) -> list[str]:
        """Collection names, filtered by glob and type (REQ-0092)."""
        t = self._storage.tables.collection
        with self._storage.db.reading() as conn:
            rows = conn.execute(sa.select(t.c.name, t.c.type).order_by(t.c.name)).all()
        wanted = {CollectionType(x) for x in types} if types is not None else None
        names = [
            r.name for r in rows
            if (pattern is None or fnmatch.fnmatchcase(r.name, pattern))
            and (wanted is None or CollectionType(r.type) in wanted)
        ]
        if flatten_chains:
            flat: list[str] = []
            for n in names:
                for rec in self.resolve_collections([n]):
                    if rec.name not in flat:
                        flat.append(rec.name)
            return flat
        return names

    def associate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        """Add datasets to a TAGGED collection (replacing none: one dataset per type and data ID).

        Raises
        ------
        CollectionTypeError
            If ``collection`` is not TAGGED.
        ConflictingDefinitionError
            If the collection already holds another dataset with the same type and data ID.
        """
        rec = self.record(collection)
        if rec.type != CollectionType.TAGGED:
            raise CollectionTypeError(f"collection {collection!r} is {rec.type.name}; associate needs TAGGED")
        rows = []
        for ref in refs:
            dt_id, dt = self._dataset_types.entry(ref.dataset_type)
            did = self._storage.universe.normalize_data_id(dt.dimensions, ref.data_id)
            rows.append({"collection_id": rec.id, "dataset_id": ref.id, "dataset_type_id": dt_id,
                         "data_id_key": data_id_key(did)})
        t = self._storage.tables.dataset_tag
        with self._storage.db.transaction() as conn:
            have = {r[0] for r in conn.execute(
                sa.select(t.c.dataset_id).where(t.c.collection_id == rec.id,
                                                t.c.dataset_id.in_([r["dataset_id"] for r in rows]))
            )} if rows else set()
            self._storage.bulk_insert(conn, t, [r for r in rows if r["dataset_id"] not in have])

    def disassociate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        """Remove datasets from a TAGGED collection."""
        rec = self.record(collection)
        if rec.type != CollectionType.TAGGED:
            raise CollectionTypeError(f"collection {collection!r} is {rec.type.name}; disassociate needs TAGGED")
        t = self._storage.tables.dataset_tag
        ids = [r.id for r in refs]
        with self._storage.db.transaction() as conn:
            conn.execute(t.delete().where(t.c.collection_id == rec.id, t.c.dataset_id.in_(ids)))

    def certify(self, collection: str, refs: Iterable[DatasetRef], timespan: Timespan) -> None:
        """Certify calibration datasets as valid over ``timespan`` in a CALIBRATION collection.

        Raises
        ------
        CollectionTypeError
            If the collection is not CALIBRATION or a dataset type is not a calibration.
        ConflictingDefinitionError
            If a dataset with the same type and data ID is already valid during part of ``timespan``.
        """
        rec = self.record(collection)
        if rec.type != CollectionType.CALIBRATION:
            raise CollectionTypeError(f"collection {collection!r} is {rec.type.name}; certify needs CALIBRATION")
        rows = []
        for ref in refs:
            dt_id, dt = self._dataset_types.entry(ref.dataset_type)
            if not dt.is_calibration:
                raise CollectionTypeError(
                    f"dataset type {dt.name!r} is not a calibration (is_calibration=False); it cannot be certified"
                )
            did = self._storage.universe.normalize_data_id(dt.dimensions, ref.data_id)
            rows.append({"collection_id": rec.id, "dataset_id": ref.id, "dataset_type_id": dt_id,
                         "data_id_key": data_id_key(did), "valid_begin": timespan.begin_ns,
                         "valid_end": timespan.end_ns})
        t = self._storage.tables.dataset_calib
        with self._storage.db.transaction() as conn:
            for r in rows:
                clash = conn.execute(sa.select(t.c.dataset_id).where(
                    t.c.collection_id == rec.id, t.c.dataset_type_id == r["dataset_type_id"],
                    t.c.data_id_key == r["data_id_key"], t.c.valid_begin < r["valid_end"],
                    t.c.valid_end > r["valid_begin"],
                )).first()
                if clash is not None:
                    raise ConflictingDefinitionError(
                        f"{r['data_id_key']} already has dataset {clash[0]} valid during part of {timespan} in "
                        f"{collection!r}; decertify that range first"
                    )
            self._storage.bulk_insert(conn, t, rows)

    def decertify(
        self,
        collection: str,
        dataset_type: str | DatasetType,
        timespan: Timespan,
        *,
        data_ids: Iterable[Mapping[str, int | str]] | None = None,
    ) -> int:
        """Remove validity over ``timespan``; ranges partly inside it are trimmed or split.

        Returns
        -------
        int
            Number of validity ranges changed or removed.
        """
        rec = self.record(collection)
        if rec.type != CollectionType.CALIBRATION:
            raise CollectionTypeError(f"collection {collection!r} is {rec.type.name}; decertify needs CALIBRATION")
        dt_id, dt = self._dataset_types.entry(dataset_type)
        t = self._storage.tables.dataset_calib
        cond = [t.c.collection_id == rec.id, t.c.dataset_type_id == dt_id,
                t.c.valid_begin < timespan.end_ns, t.c.valid_end > timespan.begin_ns]
        if data_ids is not None:
            keys = [data_id_key(self._storage.universe.normalize_data_id(dt.dimensions, d)) for d in data_ids]
            cond.append(t.c.data_id_key.in_(keys))
        with self._storage.db.transaction() as conn:
            rows = conn.execute(sa.select(t).where(*cond)).all()
            if not rows:
                return 0
            conn.execute(t.delete().where(t.c.calib_id.in_([r.calib_id for r in rows])))
            keep = []
            for r in rows:
                base = {"collection_id": r.collection_id, "dataset_id": r.dataset_id,
                        "dataset_type_id": r.dataset_type_id, "data_id_key": r.data_id_key}
                if r.valid_begin < timespan.begin_ns:
                    keep.append({**base, "valid_begin": r.valid_begin, "valid_end": timespan.begin_ns})
                if r.valid_end > timespan.end_ns:
                    keep.append({**base, "valid_begin": timespan.end_ns, "valid_end": r.valid_end})
            self._storage.bulk_insert(conn, t, keep)
        return len(rows)
