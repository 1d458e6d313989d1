"""The APDB write pipeline: validate a visit, encode binary COPY streams on one thread, write in one transaction."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
import numpy as np
from astropy.time import Time
from numpy.typing import NDArray

from ..sky import pixels_of
from ._chunks import Chunk, RecordCodec, cut_chunks
from ._codec import StagePlan
from ._copy import COPY_HEADER, COPY_TRAILER
from ._ddl import CHUNK_TABLES, PARTITIONED, RECORD_COLUMN, Layout, q
from ._errors_map import wrapped
from ._schema import TableSpec, apdb_tables, last_columns
from ._schema_ops import ensure_partitions
from ._types import StoreResult, to_mjd_tai
from ._validate import Columns, TableLike, normalize

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    #: A connection, or the pool's proxy of one (what ``pool.acquire()`` gives).
    _Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy

__all__ = ["store_visit"]

#: Rows per part of a store's COPY stream (parts are encoded while the server parses the previous one).
_PART_ROWS = 2500


@dataclass
class _Prepared:
    layout: Layout
    visit_mjd: float
    tables: dict[str, tuple[Columns, NDArray[np.int64]]]
    streams: dict[str, asyncio.Future[tuple[bytes, list[str]]]] = field(default_factory=dict)
    orders: dict[str, NDArray[np.intp]] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)

    def mark(self, step: str) -> None:
        self.timings[step] = round(time.perf_counter() - self.t0, 4)



async def store_visit(
    pool: asyncpg.Pool,
    encoder: ThreadPoolExecutor,
    layout: Layout,
    partitions: set[str],
    visit_time: Time | float,
    objects: TableLike | None,
    sources: TableLike | None = None,
    forced_sources: TableLike | None = None,
) -> StoreResult:
    """Store a visit (see :meth:`AsyncApdb.store`).

    Parameters
    ----------
    pool : asyncpg.Pool
    encoder : ThreadPoolExecutor
        One thread: encodes the COPY streams in the order the server needs them.
    layout : Layout
        The schema's recorded layout.
    partitions : set of str
        Time partitions known to exist; new ones are created and added.
    visit_time, objects, sources, forced_sources
        As :meth:`AsyncApdb.store`.
    """
    t0 = time.perf_counter()
    visit_mjd = to_mjd_tai(visit_time)
    prepared = await asyncio.to_thread(_prepare, layout, visit_mjd, objects, sources, forced_sources)
    prepared.t0 = t0
    prepared.mark("prepare")
    windows: dict[str, set[int]] = {}
    for table, (cols, _) in prepared.tables.items():
        if cols.nrows:
            mjd = cols.values(PARTITIONED[table])
            ws = set(np.unique(np.floor(mjd / layout.partition_days).astype(np.int64)).tolist())
            windows[table] = ws
            if table in CHUNK_TABLES:
                windows[CHUNK_TABLES[table]] = ws
    # Encoding runs in one worker thread, in the order the server needs the streams,
    # while the server works on the previous table.
    loop = asyncio.get_running_loop()
    # A table's stream is cut into parts of ~2,500 rows, so the server parses the first
    # part while the thread encodes the next.
    for name in ("DiaSource", "DiaForcedSource", "DiaObject"):
        parts = max(1, min(8, prepared.tables[name][0].nrows // _PART_ROWS))
        for k in range(parts):
            prepared.streams[f"{name}:{k}/{parts}"] = loop.run_in_executor(
                encoder, _encode, prepared, name, k, parts
            )
    prepared.streams["DiaObjectLast"] = loop.run_in_executor(encoder, _encode_last, prepared)
    try:
        await ensure_partitions(pool, layout, windows, partitions)
        prepared.mark("partitions")
        async with wrapped("storing a visit in the APDB"), pool.acquire() as conn:
            async with conn.transaction():
                counts = await _store_tx(conn, prepared)
            prepared.mark("commit")
    finally:
        pending = [f for f in prepared.streams.values() if not f.done()]
        for f in pending:
            f.cancel()
        await asyncio.gather(*prepared.streams.values(), return_exceptions=True)
    return StoreResult(*counts, seconds=time.perf_counter() - t0, timings=prepared.timings)


def _encode(p: _Prepared, name: str, part: int, parts: int) -> tuple[bytes, list[str]]:
    """Part ``part`` of ``parts`` of the binary COPY stream of ``name`` straight into the table."""
    cols, pixels = p.tables[name]
    plan = StagePlan(apdb_tables()[name])
    if not cols.nrows:
        return b"", plan.target_columns()
    if name not in p.orders:  # part 0 runs first: one encoder thread, FIFO
        key = apdb_tables()[name].primary_key
        # Rows in key order: two writers of one visit then meet the same key first (no deadlock).
        p.orders[name] = np.lexsort([cols.values(k) for k in reversed(key)])
    rows = np.array_split(p.orders[name], parts)[part]
    stream = plan.encode_direct(cols, pixels, rows)
    if part > 0:
        stream = stream[len(COPY_HEADER) :]
    if part < parts - 1:
        stream = stream[: -len(COPY_TRAILER)]
    return stream, plan.target_columns()


def _encode_last(p: _Prepared) -> tuple[bytes, list[str]]:
    """The staging COPY stream of the DiaObjectLast upsert."""
    cols, pixels = p.tables["DiaObject"]
    plan = _last_plan()
    return plan.encode(cols, pixels), plan.stage_columns()


def _encode_stage(p: _Prepared, name: str) -> tuple[bytes, list[str]]:
    """The staging COPY stream of ``name`` (the replay path: INSERT ... ON CONFLICT from it)."""
    cols, pixels = p.tables[name]
    plan = StagePlan(apdb_tables()[name])
    return plan.encode(cols, pixels), plan.stage_columns()


def _prepare(layout: Layout,
    visit_mjd: float,
    objects: TableLike | None,
    sources: TableLike | None,
    forced_sources: TableLike | None,
) -> _Prepared:
    specs = apdb_tables()
    inputs = {
        "DiaObject": normalize(
            objects,
            specs["DiaObject"],
            fill={"validityStartMjdTai": visit_mjd},
            optional=frozenset({"validityStartMjdTai"}),
        ),
        "DiaSource": normalize(sources, specs["DiaSource"]),
        "DiaForcedSource": normalize(forced_sources, specs["DiaForcedSource"]),
    }
    tables = {
        name: (cols, pixels_of(cols.values("ra"), cols.values("dec"), layout.index_depth))
        for name, cols in inputs.items()
    }
    return _Prepared(layout, visit_mjd, tables)


async def _stage(conn: _Connection, table: str, stream: bytes, names: list[str]) -> str:
    stage = f"_stage_v2_{table}"
    plan = _last_plan() if table == "DiaObjectLast" else StagePlan(apdb_tables()[table])
    await conn.execute(plan.stage_ddl(stage))
    await conn.copy_to_table(
        stage, source=memoryview(stream), columns=names, schema_name="pg_temp", format="binary"  # type: ignore[arg-type]  # asyncpg takes buffers; its stubs omit them
    )
    return stage


async def _store_tx(conn: _Connection, p: _Prepared) -> tuple[int, int, int]:
    cuts: dict[str, asyncio.Future[list[Chunk]]] = {}
    try:
        return await _store_steps(conn, p, cuts)
    finally:
        for f in cuts.values():
            f.cancel()
        await asyncio.gather(*cuts.values(), return_exceptions=True)


async def _store_steps(conn: _Connection, p: _Prepared, cuts: dict[str, asyncio.Future[list[Chunk]]]
) -> tuple[int, int, int]:
    layout = p.layout
    specs = apdb_tables()
    added = {"DiaObject": 0, "DiaSource": 0, "DiaForcedSource": 0}
    new_rows: dict[str, NDArray[np.intp]] = {}
    for table in ("DiaSource", "DiaForcedSource", "DiaObject"):
        cols, _ = p.tables[table]
        if not cols.nrows:
            continue
        parts = [f for name, f in p.streams.items() if name.startswith(f"{table}:")]
        names = StagePlan(specs[table]).target_columns()

        async def stream(parts: list[asyncio.Future[tuple[bytes, list[str]]]] = parts) -> AsyncIterator[bytes]:
            for f in parts:
                yield (await f)[0]

        plan = StagePlan(specs[table])
        key = specs[table].primary_key
        keylist = ", ".join(q(k) for k in key)
        try:
            # Fast path, a first store: COPY straight into the table (rows in key order).
            async with conn.transaction():  # a savepoint
                await conn.copy_to_table(
                    table, source=stream(), columns=names, schema_name=layout.schema, format="binary"
                )
            new_rows[table] = np.arange(cols.nrows)
            p.mark(f"copy:{table}")
        except asyncpg.UniqueViolationError:
            # A replay, or a concurrent writer of the same rows: stage, then keep what is new.
            staged, stage_names = await asyncio.to_thread(_encode_stage, p, table)
            stage = await _stage(conn, table, staged, stage_names)
            insert = (
                f"INSERT INTO {layout.t(table)} ({_cols(plan.target_columns())}) "
                f"SELECT {', '.join(plan.select_exprs())} FROM pg_temp.{q(stage)} s "
                f"ORDER BY {', '.join('s.' + q(k) for k in key)}"
            )
            aggs = ", ".join(f"COALESCE(array_agg({q(k)}), '{{}}')" for k in key)
            row = await conn.fetchrow(
                f"WITH ins AS ({insert} ON CONFLICT DO NOTHING RETURNING {keylist}) SELECT {aggs} FROM ins"
            )
            if row is None:  # pragma: no cover - an aggregate always returns one row
                raise RuntimeError("INSERT ... RETURNING aggregate returned no row") from None
            new_rows[table] = _inserted_rows(cols, key, [row[i] for i in range(len(key))])
            p.mark(f"insert:{table}")
        added[table] = int(new_rows[table].size)
        if table in CHUNK_TABLES and new_rows[table].size:
            cuts[table] = asyncio.ensure_future(asyncio.to_thread(_cut, p, table, new_rows[table]))
    obj_cols, _ = p.tables["DiaObject"]
    if obj_cols.nrows:
        obj_stream, obj_names = await p.streams["DiaObjectLast"]
        plan = _last_plan()
        stage = await _stage(conn, "DiaObjectLast", obj_stream, obj_names)
        p.mark("copy:DiaObjectLast")
        last = [*plan.target_columns(), RECORD_COLUMN]
        updates = ", ".join(f"{q(n)} = EXCLUDED.{q(n)}" for n in last if n != "diaObjectId")
        select_last = (
            f'SELECT {", ".join(plan.select_exprs())}, s.{q(RECORD_COLUMN)} '
            f'FROM pg_temp.{q(stage)} s ORDER BY s."diaObjectId"'
        )
        await conn.execute(
            f"INSERT INTO {layout.t('DiaObjectLast')} AS l ({_cols(last)}) {select_last} "
            f'ON CONFLICT ("diaObjectId") DO UPDATE SET {updates} '
            f'WHERE l."validityStartMjdTai" <= EXCLUDED."validityStartMjdTai"'
        )
        p.mark("upsert:DiaObjectLast")
    for table, cut in cuts.items():
        chunks = await cut
        await conn.copy_records_to_table(
            CHUNK_TABLES[table],
            schema_name=layout.schema,
            columns=["chunkPixel", "mjdMin", "mjdMax", "nRows", "data"],
            records=[(c.pixel, c.mjd_min, c.mjd_max, c.nrows, c.data) for c in chunks],
        )
        p.mark(f"chunks:{table}")
    return added["DiaObject"], added["DiaSource"], added["DiaForcedSource"]


def _cut(p: _Prepared, table: str, rows: NDArray[np.intp]) -> list[Chunk]:
    cols, pixels = p.tables[table]
    if rows.size != cols.nrows:
        cols, pixels = cols.take(rows), pixels[rows]
    rec = RecordCodec(apdb_tables()[table]).encode(cols)
    shift = 2 * (p.layout.index_depth - p.layout.chunk_depth)
    return cut_chunks(rec, pixels, shift, cols.values("midpointMjdTai"), p.layout.partition_days)


@cache
def _last_plan() -> StagePlan:
    """Staging plan of the DiaObjectLast upsert: apdb.yaml's DiaObjectLast columns plus the record."""
    obj = apdb_tables()["DiaObject"]
    keep = set(last_columns())
    spec = TableSpec("DiaObjectLast", tuple(c for c in obj.columns if c.name in keep), ("diaObjectId",))
    return StagePlan(spec, record=True, record_spec=obj)


def _cols(names: list[str]) -> str:
    return ", ".join(q(n) for n in names)


def _inserted_rows(cols: Columns, key: Sequence[str], returned: list[list[int]]) -> NDArray[np.intp]:
    """Indices of the rows of ``cols`` whose keys the INSERT returned (it inserted them)."""
    n = len(returned[0]) if returned else 0
    if n == cols.nrows:
        return np.arange(cols.nrows)
    if n == 0:
        return np.empty(0, dtype=np.intp)
    if len(key) == 1:
        return np.flatnonzero(np.isin(cols.values(key[0]), np.asarray(returned[0], dtype=np.int64)))
    got = set(zip(*returned, strict=True))
    mine = zip(*(cols.values(k).tolist() for k in key), strict=True)
    return np.fromiter((i for i, k in enumerate(mine) if k in got), dtype=np.intp)
