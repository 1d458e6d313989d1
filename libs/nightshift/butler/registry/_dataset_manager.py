"""Registry manager: datasets, lookups, metadata and data-quality flags."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from .._dataset_ref import DatasetRef
from .._dataset_type import DatasetType
from .._registry_exceptions import (
    CollectionTypeError,
    ConflictingDefinitionError,
    DataIdError,
    DatasetInUseError,
    DatasetMetadataError,
    MissingDatasetError,
    MissingDatasetTypeError,
    RegistryError,
)
from . import _querying
from ._collection_manager import CollectionManager
from ._collections import CollectionType
from ._dataset_type_manager import METADATA_TYPES, DatasetTypeManager
from ._storage import RegistryStorage, data_id_key
from ._timespan import to_tai_ns

__all__ = ["DatasetManager"]


class DatasetManager:
    """Datasets: insertion, import, removal, lookups, metadata and data-quality flags.

    Calls ``collections`` for RUNs and search paths and ``dataset_types`` for
    definitions, through their public methods only.
    """

    def __init__(self, storage: RegistryStorage, collections: CollectionManager,
                 dataset_types: DatasetTypeManager) -> None:
        self._storage = storage
        self._collections = collections
        self._dataset_types = dataset_types

    def insert_datasets(
        self,
        dataset_type: str | DatasetType,
        data_ids: Iterable[Mapping[str, int | str]],
        run: str,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        skip_existing: bool = False,
        batch_size: int = 10_000,
    ) -> list[DatasetRef]:
        """Insert datasets (deterministic uuid5 ids) into a RUN, in batches, all-or-nothing.

        Parameters
        ----------
        dataset_type
            A registered dataset type or its name.
        data_ids
            One data ID per dataset; keys beyond the type's dimensions are ignored.
        run
            The RUN collection (must exist).
        metadata
            Optional per-dataset metadata (declared by the dataset type, REQ-0091).
        skip_existing
            Return the existing ref instead of raising when a dataset exists already.

        Raises
        ------
        DataIdError
            A data ID lacks a key, has a wrong type or refers to a dimension value without a record.
        ConflictingDefinitionError
            A dataset with that type and data ID already exists in ``run`` (unless ``skip_existing``).
        """
        _, dt = self._dataset_types.entry(dataset_type)
        refs, cleans = [], []
        what = f"{dt.name} data ID"
        for did in data_ids:
            clean = self._storage.universe.normalize_data_id(dt.dimensions, did, what=what)
            cleans.append(clean)
            refs.append(DatasetRef(dt, clean, run))
        return self._import_refs(refs, cleans, metadata=metadata, skip_existing=skip_existing, batch_size=batch_size)

    def import_datasets(
        self,
        refs: Sequence[DatasetRef],
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        skip_existing: bool = False,
        batch_size: int = 10_000,
    ) -> list[DatasetRef]:
        """Insert already-resolved refs (their ids are kept), all-or-nothing.

        Same errors as :meth:`insert_datasets`. Returns the refs as stored
        (data IDs normalized to the dataset type's dimensions).
        """
        return self._import_refs(refs, None, metadata=metadata, skip_existing=skip_existing, batch_size=batch_size)

    def _import_refs(
        self,
        refs: Sequence[DatasetRef],
        cleans: Sequence[dict[str, int | str]] | None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None,
        skip_existing: bool,
        batch_size: int,
    ) -> list[DatasetRef]:
        if metadata is not None and len(metadata) != len(refs):
            raise DatasetMetadataError(f"got {len(metadata)} metadata entries for {len(refs)} datasets")
        rows = []
        out: list[DatasetRef] = []
        now = time.time_ns()
        run_cache: dict[str, int] = {}
        in_batch: dict[tuple[int, int, str], uuid.UUID] = {}
        empty_dims = dict.fromkeys(self._storage.universe.names)
        meta_rows = []
        dt_entries: dict[str, tuple[int, DatasetType]] = {}
        for index, ref in enumerate(refs):
            entry = dt_entries.get(ref.dataset_type.name)
            if entry is None:
                entry = dt_entries[ref.dataset_type.name] = self._dataset_types.entry(ref.dataset_type)
            elif ref.dataset_type is not entry[1] and ref.dataset_type != entry[1]:
                entry = self._dataset_types.entry(ref.dataset_type)  # raises the conflict
            dt_id, dt = entry
            if ref.run not in run_cache:
                rec = self._collections.record(ref.run)
                if rec.type != CollectionType.RUN:
                    raise CollectionTypeError(
                        f"datasets are written to RUN collections; {ref.run!r} is {rec.type.name}"
                    )
                run_cache[ref.run] = rec.id
            if cleans is not None:
                clean = cleans[index]
            else:
                clean = self._storage.universe.normalize_data_id(dt.dimensions, ref.data_id, what=f"{dt.name} data ID")
                if clean != dict(ref.data_id):
                    ref = DatasetRef(dt, clean, ref.run, ref.id)
            key = data_id_key(clean)
            batch_key = (dt_id, run_cache[ref.run], key)
            if batch_key in in_batch:
                if skip_existing and in_batch[batch_key] == ref.id:
                    out.append(ref)
                    continue
                raise ConflictingDefinitionError(
                    f"the datasets to insert hold {dt.name} {key} in run {ref.run!r} twice; nothing was inserted"
                )
            in_batch[batch_key] = ref.id
            row: dict[str, Any] = dict(empty_dims)
            row.update(clean)
            row.update(id=ref.id, dataset_type_id=dt_id, run_id=run_cache[ref.run], data_id_key=key, ingest_ns=now)
            rows.append(row)
            out.append(ref)
            values = metadata[index] if metadata is not None else None
            if values:
                meta_rows.append({"dataset_id": ref.id,
                                  "payload": json.dumps(self._check_metadata(ref.dataset_type, values))})
        t = self._storage.tables.dataset
        with self._storage.db.transaction() as conn:
            if skip_existing:
                existing = self._existing_datasets(conn, rows)
                if existing:
                    keep = [i for i, r in enumerate(rows) if r["id"] not in existing]
                    out = [existing.get(r.id, r) for r in out]
                    rows = [rows[i] for i in keep]
                    new_ids = {r["id"] for r in rows}
                    meta_rows = [m for m in meta_rows if m["dataset_id"] in new_ids]
            # a savepoint keeps the connection usable for explaining a conflict; SQLite does not need
            # one for a single row (a failed statement leaves its transaction intact and wrote nothing)
            sqlite = self._storage.db.is_sqlite
            savepoint = conn.begin_nested() if len(rows) > 1 or not sqlite else contextlib.nullcontext()
            try:
                with savepoint:
                    self._storage.bulk_insert_fast(conn, t, rows, batch_size)
            except sa.exc.IntegrityError as exc:
                raise self._explain_dataset_conflict(conn, rows) from exc
            if len(rows) >= 1_000 and not sqlite:
                # refresh PostgreSQL's planner statistics after a bulk load (sampled: a few ms)
                conn.exec_driver_sql(f"ANALYZE {t.fullname}")
            self._storage.bulk_insert(conn, self._storage.tables.dataset_metadata, meta_rows, batch_size)
        return out

    def _existing_datasets(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> dict[uuid.UUID, DatasetRef]:
        ids = [r["id"] for r in rows]
        found: dict[uuid.UUID, DatasetRef] = {}
        for i in range(0, len(ids), 1000):
            for ref in _querying.refs_by_id(self._storage, self._dataset_types, conn, ids[i:i + 1000]):
                found[ref.id] = ref
        return found

    def _explain_dataset_conflict(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> RegistryError:
        t = self._storage.tables.dataset
        for r in rows[:2000]:
            dup = conn.execute(sa.select(t.c.id).where(
                sa.or_(t.c.id == r["id"], sa.and_(t.c.dataset_type_id == r["dataset_type_id"],
                                                  t.c.run_id == r["run_id"], t.c.data_id_key == r["data_id_key"]))
            )).first()
            if dup is not None:
                return ConflictingDefinitionError(
                    f"a dataset with {r['data_id_key']} already exists in this run (id {dup[0]}); nothing was "
                    "inserted -- use skip_existing=True to reuse it"
                )
        for r in rows[:2000]:
            for name in self._storage.universe.names:
                if r.get(name) is None:
                    continue
                dim = self._storage.universe[name]
                table = self._storage.tables.dimensions[name]
                cond = [table.c[dim.key_name] == r[name], *[table.c[q] == r[q] for q in dim.requires]]
                if conn.execute(sa.select(sa.literal(1)).select_from(table).where(*cond)).first() is None:
                    return DataIdError(
                        f"data ID {r['data_id_key']} names {name}={r[name]!r} which has no dimension record; "
                        f"insert the {name} record first (nothing was inserted)"
                    )
        return ConflictingDefinitionError("the registry database refused the datasets (nothing was inserted)")

    def remove_datasets(self, refs: Iterable[DatasetRef | uuid.UUID], *, force: bool = False) -> int:
        """Remove datasets from the registry, all or nothing.

        Removes each dataset's row and with it its RUN membership, TAGGED
        associations, CALIBRATION certifications, metadata and data-quality
        flags. Provenance stays consistent:

        * a dataset that provenance records as an input (predicted or actual)
          of a quantum with an output that is *not* removed too is refused with
          :class:`DatasetInUseError`, because removing it would silently cut
          that output's lineage (REQ-0093); remove the outputs in the same call,
          or pass ``force=True`` to drop the input links and keep the outputs;
        * a removed output loses its producer link; a quantum left with no
          outputs explains nothing any more and is removed with its input links.

        The bytes are not touched: ``Butler.remove_datasets`` removes both.
        Joins an enclosing :meth:`transaction`.

        Parameters
        ----------
        refs : iterable of DatasetRef or uuid.UUID
            The datasets (only their ids matter; duplicates are fine).
        force : bool
            Remove inputs of remaining outputs too, dropping those provenance links.

        Returns
        -------
        int
            Number of datasets removed.

        Raises
        ------
        MissingDatasetError
            A dataset is not in the registry (nothing was removed).
        DatasetInUseError
            A dataset is an input of an output that stays, and ``force`` is False
            (nothing was removed); the message names both.
        """
        ids = list(dict.fromkeys(r.id if isinstance(r, DatasetRef) else r for r in refs))
        if not ids:
            return 0
        id_set = set(ids)
        t = self._storage.tables
        qi, qo = t.quantum_input, t.quantum_output
        chunks = [ids[i:i + 500] for i in range(0, len(ids), 500)]
        with self._storage.db.transaction() as conn:
            found: set[uuid.UUID] = set()
            for chunk in chunks:
                found.update(r[0] for r in conn.execute(sa.select(t.dataset.c.id).where(t.dataset.c.id.in_(chunk))))
            missing = [i for i in ids if i not in found]
            if missing:
                raise MissingDatasetError(
                    f"{len(missing)} dataset(s) to remove are not in the registry, e.g. id {missing[0]}; "
                    "nothing was removed -- query the registry again for current refs"
                )
            if not force:
                for chunk in chunks:
                    rows = conn.execute(
                        sa.select(qi.c.dataset_id, qo.c.dataset_id, qi.c.actual)
                        .select_from(qi.join(qo, qi.c.quantum_id == qo.c.quantum_id))
                        .where(qi.c.dataset_id.in_(chunk))
                    ).all()
                    blocking = next((r for r in rows if r[1] not in id_set), None)
                    if blocking is not None:
                        used, user = (_querying.refs_by_id(self._storage, self._dataset_types, conn, [blocking[0]])[0],
                                      _querying.refs_by_id(self._storage, self._dataset_types, conn, [blocking[1]])[0])
                        how = "an actual" if blocking[2] else "a predicted"
                        raise DatasetInUseError(
                            f"cannot remove {used.dataset_type.name} {dict(used.data_id)} in run {used.run!r} "
                            f"(id {used.id}): provenance records it as {how} input of {user.dataset_type.name} "
                            f"{dict(user.data_id)} in run {user.run!r} (id {user.id}); remove that output in the "
                            "same call, or pass force=True to drop the provenance link (nothing was removed)",
                            dataset_id=used.id, used_by=user.id,
                        )
            touched: set[uuid.UUID] = set()
            for chunk in chunks:
                touched.update(r[0] for r in conn.execute(sa.select(qo.c.quantum_id).where(qo.c.dataset_id.in_(chunk))))
                touched.update(r[0] for r in conn.execute(sa.select(qi.c.quantum_id).where(qi.c.dataset_id.in_(chunk))))
                for table in (t.dataset_tag, t.dataset_calib, t.dataset_metadata, t.dataset_quality, qo, qi):
                    conn.execute(table.delete().where(table.c.dataset_id.in_(chunk)))
            quanta = list(touched)
            for i in range(0, len(quanta), 500):
                chunk_q = quanta[i:i + 500]
                producing = {r[0] for r in conn.execute(
                    sa.select(qo.c.quantum_id).where(qo.c.quantum_id.in_(chunk_q)).distinct())}
                orphans = [q for q in chunk_q if q not in producing]
                if orphans:
                    conn.execute(qi.delete().where(qi.c.quantum_id.in_(orphans)))
                    conn.execute(t.quantum.delete().where(t.quantum.c.quantum_id.in_(orphans)))
            for chunk in chunks:
                conn.execute(t.dataset.delete().where(t.dataset.c.id.in_(chunk)))
        return len(ids)

    def get_dataset(self, dataset_id: uuid.UUID) -> DatasetRef | None:
        """The dataset with this id, or None."""
        with self._storage.db.reading() as conn:
            refs = _querying.refs_by_id(self._storage, self._dataset_types, conn, [dataset_id])
        return refs[0] if refs else None

    def get_datasets(self, dataset_ids: Iterable[uuid.UUID]) -> list[DatasetRef]:
        """The datasets with these ids (unknown ids are left out)."""
        ids = list(dataset_ids)
        out: list[DatasetRef] = []
        with self._storage.db.reading() as conn:
            for i in range(0, len(ids), 1000):
                out.extend(_querying.refs_by_id(self._storage, self._dataset_types, conn, ids[i:i + 1000]))
        return out

    def find_dataset(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, int | str],
        collections: str | Sequence[str],
        *,
        time: Any = None,
    ) -> DatasetRef | None:
        """The first dataset of a type and data ID along a collection search path.

        Parameters
        ----------
        time
            Needed to search CALIBRATION collections: the dataset valid at
            this time (e.g. the exposure's begin) is found.
        """
        dt_id, dt = self._dataset_types.entry(dataset_type)
        clean = self._storage.universe.normalize_data_id(dt.dimensions, data_id, what=f"{dt.name} data ID")
        with self._storage.db.reading():  # one connection for the chain lookup and the query
            leaves = self._collections.resolve_collections(collections)
            return _querying.find_first(self._storage, dt_id, dt, data_id_key(clean), leaves,
                                        None if time is None else to_tai_ns(time))

    def find_dataset_in_each(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, int | str],
        collections: Sequence[str],
        *,
        time: Any = None,
    ) -> dict[str, DatasetRef]:
        """The same logical dataset in each of several parallel collections (REQ-0082).

        Returns
        -------
        dict
            Collection name (as given; chains are searched in order) -> ref,
            for the collections that have it.
        """
        out: dict[str, DatasetRef] = {}
        for name in collections:
            ref = self.find_dataset(dataset_type, data_id, [name], time=time)
            if ref is not None:
                out[name] = ref
        return out

    def _check_metadata(self, dataset_type: DatasetType, values: Mapping[str, Any]) -> dict[str, Any]:
        _, dt = self._dataset_types.entry(dataset_type.parent_name)
        out = {}
        for key, value in values.items():
            if key not in dt.metadata:
                raise DatasetMetadataError(
                    f"metadata {key!r} is not declared by dataset type {dt.name!r} "
                    f"(declared: {sorted(dt.metadata) or 'none'}); declare it in DatasetType(metadata=...)"
                )
            ftype = dt.metadata[key]
            ok = isinstance(value, METADATA_TYPES[ftype]) and not (isinstance(value, bool) and ftype != "bool")
            if value is not None and not ok:
                raise DatasetMetadataError(
                    f"metadata {key!r} of {dt.name!r} must be {ftype}, got {value!r} ({type(value).__name__})"
                )
            out[key] = value
        return out

    def set_dataset_metadata(self, ref: DatasetRef, values: Mapping[str, Any]) -> None:
        """Store (merge) metadata values of a dataset, as declared by its type (REQ-0091)."""
        checked = self._check_metadata(ref.dataset_type, values)
        t = self._storage.tables.dataset_metadata
        with self._storage.db.transaction() as conn:
            if self.get_dataset(ref.id) is None:
                raise MissingDatasetTypeError(f"dataset {ref.id} is not in the registry")
            row = conn.execute(sa.select(t.c.payload).where(t.c.dataset_id == ref.id)).first()
            merged = {**(json.loads(row[0]) if row else {}), **checked}
            if row:
                conn.execute(t.update().where(t.c.dataset_id == ref.id).values(payload=json.dumps(merged)))
            else:
                conn.execute(t.insert().values(dataset_id=ref.id, payload=json.dumps(merged)))

    def get_dataset_metadata(self, ref: DatasetRef | uuid.UUID) -> dict[str, Any]:
        """The stored metadata of a dataset, without reading its file (REQ-0091)."""
        dataset_id = ref.id if isinstance(ref, DatasetRef) else ref
        t = self._storage.tables.dataset_metadata
        with self._storage.db.reading() as conn:
            row = conn.execute(sa.select(t.c.payload).where(t.c.dataset_id == dataset_id)).first()
        return json.loads(row[0]) if row else {}

    def flag_datasets(self, refs: Iterable[DatasetRef], flag: str, comment: str | None = None) -> None:
        """Attach a data-quality flag (e.g. ``"bad"``) to datasets (REQ-0089)."""
        if not flag or len(flag) > 64:
            raise DatasetMetadataError(f"a data-quality flag is a non-empty str of <= 64 chars, got {flag!r}")
        t = self._storage.tables.dataset_quality
        ids = list(dict.fromkeys(r.id for r in refs))
        with self._storage.db.transaction() as conn:
            have = {r[0] for r in conn.execute(
                sa.select(t.c.dataset_id).where(t.c.flag == flag, t.c.dataset_id.in_(ids)))}
            self._storage.bulk_insert(conn, t, [{"dataset_id": i, "flag": flag, "comment": comment}
                                        for i in ids if i not in have])

    def unflag_datasets(self, refs: Iterable[DatasetRef], flag: str) -> None:
        """Remove a data-quality flag from datasets."""
        t = self._storage.tables.dataset_quality
        with self._storage.db.transaction() as conn:
            conn.execute(t.delete().where(t.c.flag == flag, t.c.dataset_id.in_([r.id for r in refs])))

    def get_dataset_flags(self, ref: DatasetRef) -> dict[str, str | None]:
        """Data-quality flags of a dataset -> their comments."""
        t = self._storage.tables.dataset_quality
        with self._storage.db.reading() as conn:
            return dict(conn.execute(sa.select(t.c.flag, t.c.comment).where(t.c.dataset_id == ref.id)).tuples().all())
