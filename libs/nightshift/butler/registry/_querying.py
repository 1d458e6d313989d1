"""Query execution: data IDs, datasets, dimension records and the pre-flight graph."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .._dataset_ref import DatasetRef
from .._dataset_type import DatasetType
from .._registry_exceptions import CollectionTypeError, QueryNameError
from ._collections import CollectionRecord, CollectionType
from ._exclusions import ExclusionList
from ._graph import DatasetGraph

if TYPE_CHECKING:
    from ...sky import ConvexPolygon
    from ._collection_manager import CollectionManager
    from ._dataset_type_manager import DatasetTypeManager
    from ._queries import JoinPlan
    from ._queries._plan import SpatialConstraint
    from ._storage import RegistryStorage

__all__ = ["dimension_record_rows", "query_data_ids", "query_datasets", "query_graph", "refs_by_id"]


def _qry() -> Any:
    """The ``where`` parser and compiler, imported on the first query (~40 ms a registry open need not pay)."""
    from . import _queries
    from ._queries import _compiler  # noqa: F401 - makes _queries._compiler an attribute

    return _queries


def _parse(storage: RegistryStorage, where: str, bind: Mapping[str, Any]) -> tuple[Any, set[str], set[str]]:
    for key in bind:
        if key in storage.universe:
            raise QueryNameError(f"bind name {key!r} is a dimension name; rename the bind value")
    if not where or not where.strip():
        return None, set(), set()
    tree = _qry().parse_where(where)
    operators = storage.operator_tables()
    clash = sorted(set(bind) & set(operators))
    if clash:
        raise QueryNameError(f"bind name {clash[0]!r} is an operator table name; rename the bind value")
    try:
        dims, elements = _qry().referenced_names(tree, storage.universe, bind, where, operators)
    except QueryNameError:
        fresh = storage.operator_tables(refresh=True)  # another process may have made the table since
        if set(fresh) == set(operators):
            raise
        return _parse(storage, where, bind)
    return tree, dims, elements


def _apply_where(storage: RegistryStorage, plan: JoinPlan, tree: Any, bind: Mapping[str, Any], where: str) -> None:
    if tree is not None:
        compiler = _qry().WhereCompiler(storage.universe, storage.tables, plan, bind, where,
                                        operator_tables=storage.operator_tables())
        plan.conditions.append(compiler.compile(tree))


def _apply_data_id(storage: RegistryStorage, plan: JoinPlan, data_id: Mapping[str, int | str]) -> None:
    for key, value in data_id.items():
        if key not in plan.canonical:
            continue
        plan.conditions.append(
            plan.canonical[key] == sa.bindparam(f"d_{key}", storage.universe.check_value(key, value))
        )


def _parameters(storage: RegistryStorage, bind: Mapping[str, Any], data_id: Mapping[str, int | str],
                time_ns: int | None) -> dict[str, Any]:
    """Values of the named parameters of a (possibly cached) statement."""
    params: dict[str, Any] = _qry()._compiler.bind_parameters(bind)
    for key, value in data_id.items():
        params[f"d_{key}"] = storage.universe.check_value(key, value)
    if time_ns is not None:
        params["calib_time"] = time_ns
    return params


def _value_key(where: str, bind: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Bind values a statement embeds (not parameters): those used in POINT(ra, dec) (they pick HEALPix cells)."""
    if not where or "POINT" not in where.upper():
        return ()
    from ._queries._ast import Identifier, Point, walk

    names = []
    for node in walk(_qry().parse_where(where)):
        if isinstance(node, Point):
            names += [n.parts[0] for n in (node.ra, node.dec) if isinstance(n, Identifier) and n.parts[0] in bind]
    return tuple((n, bind[n]) for n in sorted(set(names)))


@functools.lru_cache(maxsize=8192)
def _region(text: str) -> ConvexPolygon | None:
    """The region of a record's ``region`` column (JSON vertices); None if it is not a valid polygon."""
    from ...sky import ConvexPolygon, RegionError

    try:
        return ConvexPolygon(json.loads(text))
    except (RegionError, TypeError, ValueError):
        return None


def _refine(spatial: Sequence[SpatialConstraint], rows: Sequence[Any]) -> list[Any]:
    """The rows (carrying ``_region_<element>`` columns) whose regions pass every constraint exactly.

    SQL matched them through shared HEALPix cells of the spatial index (one
    cell is ~0.46 deg); here two regions must really overlap and a region must
    really contain the point. A stored region that is not a valid polygon
    keeps its rows (the index's answer stands).
    """
    if not spatial:
        return list(rows)
    overlaps: dict[tuple[str, str], bool] = {}

    def holds(c: SpatialConstraint, m: Mapping[str, Any]) -> bool:
        text = m[f"_region_{c.element}"]
        if text is None:
            return False
        if c.point is not None:
            region = _region(text)
            return region is None or bool(region.contains(c.point[0], c.point[1]))
        other = m[f"_region_{c.other}"]
        if other is None:
            return False
        key = (text, other)
        found = overlaps.get(key)
        if found is None:
            a, b = _region(text), _region(other)
            found = overlaps[key] = a is None or b is None or a.overlaps(b)
        return found

    return [r for r in rows if all(holds(c, r._mapping) for c in spatial)]


def dimension_record_rows(
    storage: RegistryStorage, element: str, where: str, bind: Mapping[str, Any], data_id: Mapping[str, int | str]
) -> list[Mapping[Any, Any]]:
    universe = storage.universe
    dim = universe[element]
    tree, dims, elements = _parse(storage, where, bind)
    for key in data_id:
        universe[key]
    plan = _qry().plan_join(universe, storage.tables, {element, *dims, *data_id}, field_elements={element, *elements})
    _apply_where(storage, plan, tree, bind, where)
    _apply_data_id(storage, plan, data_id)
    table = storage.tables.dimensions[element]
    order = [table.c[k] for k in (*dim.requires, dim.key_name)]
    regions = plan.region_columns()
    stmt = sa.select(table, *regions.values()).select_from(*plan.froms).where(*plan.conditions).order_by(*order)
    if plan.needs_distinct or len(plan.froms) > 1:
        stmt = stmt.distinct()
    with storage.db.reading() as conn:
        rows = conn.execute(stmt).all()
    if not plan.spatial:
        return [r._mapping for r in rows]
    out: dict[tuple[Any, ...], Mapping[Any, Any]] = {}
    for r in _refine(plan.spatial, rows):
        record = {c.name: r._mapping[c.name] for c in table.columns}
        out.setdefault(tuple(record.values()), record)
    return list(out.values())


def _dataset_columns(dataset_table: sa.FromClause, dimensions: Iterable[str]) -> dict[str, Any]:
    return {d: dataset_table.c[d] for d in dimensions}


def _membership(
    storage: RegistryStorage,
    leaves: Sequence[CollectionRecord],
    dataset_table: sa.FromClause,
    time_ns: int | None,
    *,
    need_rank: bool,
) -> tuple[list[sa.ColumnElement[bool]], sa.ColumnElement[Any] | None, list[sa.FromClause]]:
    """Conditions restricting ``dataset_table`` to ``leaves`` and an expression ranking the match."""
    tables = storage.tables
    runs = [(i, c) for i, c in enumerate(leaves) if c.type == CollectionType.RUN]
    others = [(i, c) for i, c in enumerate(leaves) if c.type != CollectionType.RUN]
    if not others:
        ids = [c.id for _, c in runs]
        cond = dataset_table.c.run_id == ids[0] if len(ids) == 1 else dataset_table.c.run_id.in_(ids)
        rank = None
        if need_rank and len(ids) > 1:
            rank = sa.case({c.id: i for i, c in runs}, value=dataset_table.c.run_id)
        return [cond], rank, []
    parts = []
    if runs:
        parts.append(
            sa.select(tables.dataset.c.id.label("dataset_id"),
                      sa.case({c.id: i for i, c in runs}, value=tables.dataset.c.run_id).label("rank"))
            .where(tables.dataset.c.run_id.in_([c.id for _, c in runs]))
        )
    tags = [(i, c) for i, c in others if c.type == CollectionType.TAGGED]
    if tags:
        tt = tables.dataset_tag
        parts.append(
            sa.select(tt.c.dataset_id, sa.case({c.id: i for i, c in tags}, value=tt.c.collection_id).label("rank"))
            .where(tt.c.collection_id.in_([c.id for _, c in tags]))
        )
    cals = [(i, c) for i, c in others if c.type == CollectionType.CALIBRATION]
    if cals:
        ct = tables.dataset_calib
        conds: list[sa.ColumnElement[bool]] = [ct.c.collection_id.in_([c.id for _, c in cals])]
        if time_ns is not None:
            t = sa.bindparam("calib_time", time_ns, type_=sa.BigInteger)
            conds += [ct.c.valid_begin <= t, ct.c.valid_end > t]
        elif need_rank:
            raise CollectionTypeError(
                f"searching CALIBRATION collection(s) {[c.name for _, c in cals]} for the first match needs a "
                "time: pass time=... (e.g. the exposure begin) or find_first=False"
            )
        parts.append(
            sa.select(ct.c.dataset_id, sa.case({c.id: i for i, c in cals}, value=ct.c.collection_id).label("rank"))
            .where(*conds)
        )
    members = (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery("members")
    return [dataset_table.c.id == members.c.dataset_id], members.c.rank, [members]


def _quality_filter(
    storage: RegistryStorage, dataset_table: sa.FromClause, flags: Sequence[str]
) -> list[sa.ColumnElement[bool]]:
    if not flags:
        return []
    q = storage.tables.dataset_quality
    return [~sa.exists(sa.select(sa.literal(1)).where(q.c.dataset_id == dataset_table.c.id, q.c.flag.in_(list(flags))))]


def _row_to_ref(dt: DatasetType, row: Any, run_names: Mapping[int, str]) -> DatasetRef:
    m = row._mapping
    return DatasetRef(dt, {d: m[d] for d in dt.dimensions}, run_names[m["run_id"]], m["id"])


def _run_names(storage: RegistryStorage, conn: sa.Connection, ids: Iterable[int]) -> dict[int, str]:
    ids = set(ids)
    c = storage.tables.collection
    if not ids:
        return {}
    return dict(conn.execute(sa.select(c.c.collection_id, c.c.name).where(c.c.collection_id.in_(ids))).tuples().all())


def refs_by_id(storage: RegistryStorage, dataset_types: DatasetTypeManager, conn: sa.Connection,
               ids: Sequence[uuid.UUID]) -> list[DatasetRef]:
    t = storage.tables.dataset
    rows = conn.execute(sa.select(t).where(t.c.id.in_(list(ids)))).all()
    names = _run_names(storage, conn, (r.run_id for r in rows))
    tmap = {}
    for dt_name in {r.dataset_type_id for r in rows}:
        tt = storage.tables.dataset_type
        name = conn.execute(sa.select(tt.c.name).where(tt.c.dataset_type_id == dt_name)).scalar_one()
        tmap[dt_name] = dataset_types.get_dataset_type(name)
    return [_row_to_ref(tmap[r.dataset_type_id], r, names) for r in rows]


def find_first(
    storage: RegistryStorage,
    dt_id: int,
    dt: DatasetType,
    key: str,
    leaves: Sequence[CollectionRecord],
    time_ns: int | None,
) -> DatasetRef | None:
    """One dataset by type and canonical data-ID key, first along ``leaves`` (one query)."""
    ds = storage.tables.dataset

    def build() -> sa.Select[Any]:
        member_conds, rank, member_froms = _membership(storage, leaves, ds, time_ns, need_rank=True)
        stmt = (
            sa.select(ds.c.id, ds.c.run_id, *[ds.c[d] for d in dt.dimensions])
            .select_from(ds, *member_froms)
            .where(ds.c.data_id_key == sa.bindparam("data_id_key", key), ds.c.dataset_type_id == dt_id,
                   *member_conds)
        )
        if rank is not None:
            stmt = stmt.order_by(rank)
        return stmt.limit(1)

    stmt = storage.cached_statement(("find", dt_id, tuple(c.id for c in leaves), time_ns is None), build)
    params: dict[str, Any] = {"data_id_key": key}
    if time_ns is not None:
        params["calib_time"] = time_ns
    with storage.db.reading() as conn:
        row = conn.execute(stmt, params).first()
        if row is None:
            return None
        names = {c.id: c.name for c in leaves}
        if row.run_id not in names:
            names |= _run_names(storage, conn, [row.run_id])
    return _row_to_ref(dt, row, names)


def _dataset_select(
    storage: RegistryStorage,
    dataset_types: DatasetTypeManager,
    dataset_type: str | DatasetType,
    leaves: Sequence[CollectionRecord],
    *,
    tree: Any,
    where: str,
    bind: Mapping[str, Any],
    dims: set[str],
    elements: set[str],
    data_id: Mapping[str, int | str],
    time_ns: int | None,
    find_first: bool,
    exclude_flags: Sequence[str],
) -> tuple[sa.Select[Any], DatasetType, tuple[SpatialConstraint, ...]]:
    """The statement of a dataset query, and the region constraints its rows must still pass.

    With constraints, find-first ranking and the limit happen after the
    exact cut (:func:`_first_refined`): the statement returns every candidate
    with its ``data_id_key``, ``_rank`` and region columns.
    """
    universe = storage.universe
    dt_id, dt = dataset_types.entry(dataset_type)
    ds = storage.tables.dataset
    base = _dataset_columns(ds, dt.dimensions)
    extra = {*dims, *elements, *[k for k in data_id if k in universe]} - set(dt.dimensions)
    plan = _qry().plan_join(universe, storage.tables, set(dt.dimensions) | extra, field_elements=elements, base=base)
    member_conds, rank, member_froms = _membership(storage, leaves, ds, time_ns, need_rank=find_first)
    _apply_where(storage, plan, tree, bind, where)
    _apply_data_id(storage, plan, data_id)
    conds = [ds.c.dataset_type_id == dt_id, *member_conds, *plan.conditions,
             *_quality_filter(storage, ds, exclude_flags)]
    cols = [ds.c.id, ds.c.run_id, *[ds.c[d] for d in dt.dimensions]]
    froms = [ds, *member_froms, *plan.froms]
    distinct = bool(plan.froms) and (plan.needs_distinct or len(plan.froms) > 0)
    order = [ds.c[d] for d in dt.dimensions]
    if plan.spatial:
        ranked = [rank.label("_rank")] if find_first and rank is not None else []
        stmt = sa.select(*cols, ds.c.data_id_key, *ranked, *plan.region_columns().values())
        stmt = stmt.select_from(*froms).where(*conds).distinct()
        return stmt.order_by(*order), dt, tuple(plan.spatial)
    if find_first and rank is not None:
        rn = sa.func.row_number().over(partition_by=ds.c.data_id_key, order_by=rank).label("rn")
        inner = sa.select(*cols, rn).select_from(*froms).where(*conds)
        if distinct:
            inner = inner.distinct()
        sub = inner.subquery("ranked")
        stmt = sa.select(*[sub.c[c.name] for c in cols]).where(sub.c.rn == 1)
        return stmt.order_by(*[sub.c[d] for d in dt.dimensions]), dt, ()
    stmt = sa.select(*cols).select_from(*froms).where(*conds)
    if distinct:
        stmt = stmt.distinct()
    return stmt.order_by(*order), dt, ()


def _first_refined(spatial: Sequence[SpatialConstraint], rows: Sequence[Any], find_first: bool) -> list[Any]:
    """Rows passing the exact region cut; with ``find_first``, the best-ranked dataset per data ID."""
    best: dict[Any, Any] = {}
    for row in _refine(spatial, rows):
        m = row._mapping
        key = m["data_id_key"] if find_first else m["id"]
        held = best.get(key)
        if held is None or (find_first and "_rank" in m and m["_rank"] < held._mapping["_rank"]):
            best[key] = row
    return list(best.values())


def query_datasets(
    storage: RegistryStorage,
    dataset_types: DatasetTypeManager,
    collection_manager: CollectionManager,
    dataset_type: str | DatasetType,
    collections: str | Sequence[str],
    *,
    where: str,
    bind: Mapping[str, Any],
    data_id: Mapping[str, int | str],
    find_first: bool,
    time: int | None,
    exclude_flags: Sequence[str],
    exclude: ExclusionList | None,
    limit: int | None,
) -> list[DatasetRef]:
    with storage.db.reading():  # one connection for the collection lookups and the query
        return _query_datasets(
            storage, dataset_types, collection_manager, dataset_type, collections, where=where, bind=bind,
            data_id=data_id, find_first=find_first, time=time, exclude_flags=exclude_flags, exclude=exclude,
            limit=limit,
        )


def _query_datasets(
    storage: RegistryStorage,
    dataset_types: DatasetTypeManager,
    collection_manager: CollectionManager,
    dataset_type: str | DatasetType,
    collections: str | Sequence[str],
    *,
    where: str,
    bind: Mapping[str, Any],
    data_id: Mapping[str, int | str],
    find_first: bool,
    time: int | None,
    exclude_flags: Sequence[str],
    exclude: ExclusionList | None,
    limit: int | None,
) -> list[DatasetRef]:
    leaves = collection_manager.resolve_collections(collections)
    dt_name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
    key = ("datasets", dt_name, tuple(c.id for c in leaves), where, _qry()._compiler.bind_signature(bind),
           _value_key(where, bind), tuple(sorted(data_id)),
           find_first, time is None, tuple(exclude_flags), limit if not exclude else None)

    def build() -> tuple[sa.Select[Any], DatasetType, tuple[SpatialConstraint, ...]]:
        tree, dims, elements = _parse(storage, where, bind)
        for k in data_id:
            storage.universe[k]
        stmt, dt, spatial = _dataset_select(
            storage, dataset_types, dataset_type, leaves, tree=tree, where=where, bind=bind, dims=dims,
            elements=elements, data_id=data_id, time_ns=time, find_first=find_first, exclude_flags=exclude_flags,
        )
        if limit is not None and not exclude and not spatial:
            stmt = stmt.limit(limit)
        return stmt, dt, spatial

    stmt, dt, spatial = storage.cached_statement(key, build)
    if isinstance(dataset_type, DatasetType):
        dataset_types.entry(dataset_type)  # a DatasetType argument must match the registered one
    with storage.db.reading() as conn:
        rows = conn.execute(stmt, _parameters(storage, bind, data_id, time)).all()
        if spatial:
            rows = _first_refined(spatial, rows, find_first)
        names = {c.id: c.name for c in leaves} | _run_names(
            storage, conn, {r.run_id for r in rows} - {c.id for c in leaves}
        )
    refs = [_row_to_ref(dt, r, names) for r in rows]
    if exclude:
        refs = [r for r in refs if not exclude.excludes(r.data_id, r.id)]
    if limit is not None and (exclude or spatial):
        refs = refs[:limit]
    return refs


def _data_id_select(
    storage: RegistryStorage,
    dataset_types: DatasetTypeManager,
    dimensions: Iterable[str],
    *,
    tree: Any,
    where: str,
    bind: Mapping[str, Any],
    dims: set[str],
    elements: set[str],
    data_id: Mapping[str, int | str],
    datasets: Sequence[str | DatasetType],
    leaves: Sequence[CollectionRecord] | None,
    exclude_flags: Sequence[str],
) -> tuple[sa.Select[Any], tuple[str, ...], tuple[SpatialConstraint, ...]]:
    universe = storage.universe
    requested = universe.required_closure(dimensions)
    dataset_entries = [dataset_types.entry(d) for d in datasets]
    needed = set(requested) | dims | {k for k in data_id if k in universe}
    for _, dt in dataset_entries:
        needed |= set(dt.dimensions)
    plan = _qry().plan_join(universe, storage.tables, needed, field_elements=elements)
    _apply_where(storage, plan, tree, bind, where)
    _apply_data_id(storage, plan, data_id)
    for i, (dt_id, dt) in enumerate(dataset_entries):
        ds = storage.tables.alias(storage.tables.dataset, f"ds{i}")
        member_conds, _, member_froms = _membership(storage, leaves or [], ds, None, need_rank=False)
        sub = sa.select(sa.literal(1)).select_from(ds, *member_froms).where(
            ds.c.dataset_type_id == dt_id, *member_conds,
            *[ds.c[d] == plan.canonical[d] for d in dt.dimensions],
            *_quality_filter(storage, ds, exclude_flags),
        )
        plan.conditions.append(sa.exists(sub))
    cols = [plan.canonical[d].label(d) for d in requested]
    regions = plan.region_columns()
    stmt = sa.select(*cols, *regions.values()).select_from(*plan.froms).where(*plan.conditions).distinct()
    return stmt.order_by(*[plan.canonical[d] for d in requested]), requested, tuple(plan.spatial)


def query_data_ids(
    storage: RegistryStorage,
    dataset_types: DatasetTypeManager,
    collection_manager: CollectionManager,
    dimensions: Iterable[str],
    *,
    where: str,
    bind: Mapping[str, Any],
    data_id: Mapping[str, int | str],
    datasets: Sequence[str | DatasetType],
    collections: str | Sequence[str] | None,
    exclude_flags: Sequence[str],
    exclude: ExclusionList | None,
) -> list[dict[str, int | str]]:
    dimensions = list(dimensions)
    if not dimensions:
        raise QueryNameError("query_data_ids needs at least one dimension")
    leaves = None
    if datasets:
        if collections is None:
            raise CollectionTypeError("constraining data IDs by datasets needs collections=[...] to search")
        leaves = collection_manager.resolve_collections(collections)
    key = ("data_ids", tuple(dimensions), where, _qry()._compiler.bind_signature(bind), _value_key(where, bind),
           tuple(sorted(data_id)),
           tuple(d if isinstance(d, str) else d.name for d in datasets),
           tuple(c.id for c in leaves) if leaves is not None else None, tuple(exclude_flags))

    def build() -> tuple[sa.Select[Any], tuple[str, ...], tuple[SpatialConstraint, ...]]:
        tree, dims, elements = _parse(storage, where, bind)
        for k in data_id:
            storage.universe[k]
        return _data_id_select(
            storage, dataset_types, dimensions, tree=tree, where=where, bind=bind, dims=dims, elements=elements,
            data_id=data_id, datasets=datasets, leaves=leaves, exclude_flags=exclude_flags,
        )

    with storage.db.reading() as conn:
        stmt, requested, spatial = storage.cached_statement(key, build)
        rows = conn.execute(stmt, _parameters(storage, bind, data_id, None)).all()
    if spatial:  # the exact cut, then one row per data ID (several region pairs may have matched)
        keys = dict.fromkeys(tuple(r._mapping[d] for d in requested) for r in _refine(spatial, rows))
        out = [dict(zip(requested, k, strict=True)) for k in keys]
    else:
        out = [dict(zip(requested, r, strict=True)) for r in rows]
    if exclude:
        out = [d for d in out if not exclude.excludes(d)]
    return out


def query_graph(
    storage: RegistryStorage,
    dataset_types: DatasetTypeManager,
    collection_manager: CollectionManager,
    dimensions: list[str],
    inputs: list[str | DatasetType],
    collections: str | Sequence[str],
    *,
    where: str,
    bind: Mapping[str, Any],
    data_id: Mapping[str, int | str],
    exclude_flags: Sequence[str],
    exclude: ExclusionList | None,
) -> DatasetGraph:
    input_types = [dataset_types.get_dataset_type(i if isinstance(i, str) else i.name) for i in inputs]
    all_dims = storage.universe.required_closure(
        {*dimensions, *[d for dt in input_types for d in dt.dimensions]}
    )
    rows = query_data_ids(
        storage, dataset_types, collection_manager, all_dims, where=where, bind=bind, data_id=data_id,
        datasets=input_types, collections=collections, exclude_flags=exclude_flags, exclude=exclude,
    )
    node_dims = storage.universe.required_closure(dimensions)
    graph = DatasetGraph(node_dims)
    refs_by_type: dict[str, dict[tuple[Any, ...], DatasetRef]] = {}
    for dt in input_types:
        found = query_datasets(
            storage, dataset_types, collection_manager, dt, collections, where=where, bind=bind, data_id=data_id,
            find_first=True, time=None, exclude_flags=exclude_flags, exclude=exclude, limit=None,
        )
        refs_by_type[dt.name] = {tuple(r.data_id[d] for d in dt.dimensions): r for r in found}
    for row in rows:
        node = {d: row[d] for d in node_dims}
        graph.add_node(node)
        for dt in input_types:
            ref = refs_by_type[dt.name].get(tuple(row[d] for d in dt.dimensions))
            if ref is not None:
                graph.add_edge(node, ref)
    return graph
