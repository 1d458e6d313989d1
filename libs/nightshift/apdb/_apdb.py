"""The asynchronous APDB client on asyncpg."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import numpy as np
import pyarrow as pa
from astropy.time import Time
from numpy.typing import ArrayLike, NDArray

from ._chunks import Chunk, RecordCodec, cut_chunks, select_rows
from ._codec import StagePlan
from ._copy import COPY_HEADER, COPY_TRAILER, decode_fixed
from ._ddl import CHUNK_TABLES, LAYOUT_VERSION, PARTITIONED, RECORD_COLUMN, Layout, q
from ._errors_map import wrapped
from ._exceptions import ApdbSchemaError
from ._region import Region, pixel_ranges, pixels_of
from ._schema import PIXEL_COLUMN, TableSpec, apdb_tables, last_columns, schema_version
from ._settings import ApdbSettings
from ._validate import Columns, TableLike, normalize

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    #: A connection, or the pool's proxy of one (what ``pool.acquire()`` gives).
    _Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy

__all__ = ["AsyncApdb", "Preload", "StoreResult", "to_mjd_tai"]

_log = logging.getLogger(__name__)
#: Rows per part of a store's COPY stream (parts are encoded while the server parses the previous one).
_PART_ROWS = 2500


def to_mjd_tai(when: Time | float) -> float:
    """MJD (TAI) of an astropy ``Time`` or of a float already in MJD TAI."""
    if isinstance(when, Time):
        return float(when.tai.mjd)
    value = float(when)
    if not math.isfinite(value):
        raise ValueError(f"time {when!r} is not finite")
    return value


@dataclass(frozen=True)
class StoreResult:
    """Rows a :meth:`AsyncApdb.store` call added (0 for rows already stored)."""

    dia_objects: int
    dia_sources: int
    dia_forced_sources: int
    seconds: float
    #: Seconds from the start of the call to the end of each step (``prepare``, ``copy:<table>``, ...).
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Preload:
    """A field's DiaObjects with their source and forced-source histories."""

    objects: pa.Table
    sources: pa.Table
    forced_sources: pa.Table
    timings: dict[str, float] = field(default_factory=dict)


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


class AsyncApdb:
    """The Alert Production Database on PostgreSQL, through one asyncpg pool.

    Create one per process, ``await open()`` (or use ``async with``), and
    share it between tasks. Reads of a field run concurrently on separate
    pooled connections; a store is one transaction on one connection.

    Parameters
    ----------
    settings : ApdbSettings, optional
        Connection and layout settings; read from the environment when omitted.
    """

    def __init__(self, settings: ApdbSettings | None = None) -> None:
        self.settings = settings if settings is not None else ApdbSettings()
        self._pool: asyncpg.Pool | None = None
        self._layout: Layout | None = None
        self._partitions: set[str] = set()
        self._open_lock = asyncio.Lock()
        # One thread encodes a store's COPY streams in the order the server needs them.
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apdb-encode")

    def __repr__(self) -> str:
        return f"AsyncApdb(schema={self.settings.schema_name!r})"

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> AsyncApdb:
        """Create the connection pool (idempotent)."""
        async with self._open_lock:
            if self._pool is None:
                password = self.settings.password.get_secret_value() if self.settings.password else None
                async with wrapped("connecting to the APDB"):
                    self._pool = await asyncpg.create_pool(
                        dsn=self.settings.dsn.get_secret_value(),
                        password=password,
                        min_size=self.settings.pool_min_size,
                        max_size=self.settings.pool_max_size,
                        command_timeout=self.settings.command_timeout,
                        server_settings={"application_name": "nightshift-apdb", "jit": "off"},
                    )
        return self

    async def close(self, timeout: float = 10.0) -> None:
        """Close the pool: wait up to ``timeout`` for connections, then terminate them. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout)
        except (TimeoutError, asyncio.CancelledError):
            _log.warning("APDB pool did not close within %.1f s; terminating connections", timeout)
            pool.terminate()
            raise

    async def __aenter__(self) -> AsyncApdb:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the APDB is not open: await apdb.open() first")
        return self._pool

    # ------------------------------------------------------------------ schema
    def _new_layout(self) -> Layout:
        s = self.settings
        return Layout(s.schema_name, s.partition_days, s.index_depth, s.chunk_depth)

    async def create(self, *, drop: bool = False) -> None:
        """Create the APDB tables in ``settings.schema_name`` from the shipped ``apdb.yaml``.

        Parameters
        ----------
        drop : bool
            Drop an existing schema of that name first (all its data).

        Raises
        ------
        ApdbSchemaError
            If the schema already holds an APDB and ``drop`` is false.
        """
        layout = self._new_layout()
        async with wrapped("creating the APDB schema"), self.pool.acquire() as conn, conn.transaction():
            if drop:
                await conn.execute(f"DROP SCHEMA IF EXISTS {q(layout.schema)} CASCADE")
            exists = await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{q(layout.schema)}.{q('metadata')}"
            )
            if exists:
                raise ApdbSchemaError(f"schema {layout.schema!r} already holds an APDB (use drop=True to replace it)")
            for stmt in layout.create_statements():
                await conn.execute(stmt)
            await conn.executemany(
                f"INSERT INTO {layout.t('metadata')} (name, value) VALUES ($1, $2)",
                sorted(layout.metadata_rows().items()),
            )
        self._layout = layout
        self._partitions.clear()

    async def drop(self) -> None:
        """Drop the APDB schema and everything in it."""
        async with wrapped("dropping the APDB schema"), self.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {q(self.settings.schema_name)} CASCADE")
        self._layout = None
        self._partitions.clear()

    async def metadata(self) -> dict[str, str]:
        """The metadata table (schema version, layout parameters)."""
        async with wrapped("reading APDB metadata"), self.pool.acquire() as conn:
            try:
                rows = await conn.fetch(f"SELECT name, value FROM {q(self.settings.schema_name)}.{q('metadata')}")
            except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError) as exc:
                raise ApdbSchemaError(
                    f"no APDB in schema {self.settings.schema_name!r}: run `nightshift apdb create`"
                ) from exc
        return {r["name"]: r["value"] for r in rows}

    async def upgrade(self) -> str:
        """Bring a schema of an older nightshift layout to the current one, keeping its data.

        Layout 1 → 2 drops the non-Rubin columns of ``DiaObjectLast`` (the field read
        uses ``apdbRecord``) and the secondary indexes of ``DiaSource`` and
        ``DiaForcedSource`` (nothing reads by them). Returns the layout version now recorded.
        """
        meta = await self.metadata()
        version = meta.get("version:nightshift.apdb", "")
        layout = Layout(
            self.settings.schema_name,
            int(meta["config:partition_days"]),
            int(meta["config:index_depth"]),
            int(meta["config:chunk_depth"]),
        )
        try:
            stmts = layout.upgrade_statements(version)
        except ValueError as exc:
            raise ApdbSchemaError(str(exc)) from None
        async with wrapped("upgrading the APDB layout"), self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"apdb-partitions:{layout.schema}")
            for stmt in stmts:
                await conn.execute(stmt)
        self._layout = None
        return LAYOUT_VERSION

    async def layout(self) -> Layout:
        """The layout recorded in the schema (cached after the first call)."""
        if self._layout is None:
            meta = await self.metadata()
            if meta.get("version:nightshift.apdb") != LAYOUT_VERSION:
                raise ApdbSchemaError(
                    f"APDB layout version {meta.get('version:nightshift.apdb')!r} is not {LAYOUT_VERSION!r}"
                    " (an older layout can be brought up to date with AsyncApdb.upgrade())"
                )
            if meta.get("version:ApdbSchema") != schema_version():
                raise ApdbSchemaError(
                    f"APDB was created from apdb.yaml {meta.get('version:ApdbSchema')}, "
                    f"installed lsst-sdm-schemas ships {schema_version()}; migrate or recreate it"
                )
            self._layout = Layout(
                self.settings.schema_name,
                int(meta["config:partition_days"]),
                int(meta["config:index_depth"]),
                int(meta["config:chunk_depth"]),
            )
        return self._layout

    async def _ensure_partitions(self, layout: Layout, windows: dict[str, set[int]]) -> None:
        todo = {
            table: {w for w in ws if layout.partition_name(table, w) not in self._partitions}
            for table, ws in windows.items()
        }
        todo = {t: ws for t, ws in todo.items() if ws}
        if not todo:
            return
        async with wrapped("creating APDB partitions"), self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"apdb-partitions:{layout.schema}")
            for table, ws in todo.items():
                existing = {
                    r["relname"]
                    for r in await conn.fetch(
                        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "WHERE i.inhparent = $1::regclass",
                        layout.t(table),
                    )
                }
                missing = [w for w in ws if layout.partition_name(table, w) not in existing]
                for stmt in layout.partition_statements(table, missing):
                    await conn.execute(stmt)
        for table, ws in todo.items():
            self._partitions.update(layout.partition_name(table, w) for w in ws)

    # ------------------------------------------------------------------ writes
    async def store(
        self,
        visit_time: Time | float,
        objects: TableLike | None,
        sources: TableLike | None = None,
        forced_sources: TableLike | None = None,
    ) -> StoreResult:
        """Store a visit's new DiaObject versions, DiaSources and DiaForcedSources, atomically.

        Every table is validated first (nothing is written if any row is bad);
        then, in one transaction, the rows go by binary COPY straight into
        DiaSource, DiaForcedSource and DiaObject (in key order; a table whose keys
        already exist — a replay, a concurrent writer — goes through a staging
        table and ``INSERT ... ON CONFLICT DO NOTHING`` instead), DiaObjectLast is
        upserted from a staging table, and the history chunks of the new rows are
        written. Replaying a visit leaves one copy of every row; concurrent writers
        of one visit produce one copy. ``StoreResult.timings`` times each step.

        Parameters
        ----------
        visit_time : astropy.time.Time or float
            Visit time (float: MJD TAI); the validity start of the new DiaObject versions.
        objects, sources, forced_sources : table-like or None
            pyarrow ``Table``, astropy ``Table`` or NumPy structured array with
            ``apdb.yaml`` column names.

        Returns
        -------
        StoreResult
            Rows newly added per table.

        Raises
        ------
        ApdbValidationError
            Bad input, naming the column and rows; nothing was written.
        ApdbConnectionError
            The connection dropped; the visit was rolled back and may be retried.
        """
        t0 = time.perf_counter()
        layout = await self.layout()
        visit_mjd = to_mjd_tai(visit_time)
        prepared = await asyncio.to_thread(
            self._prepare, layout, visit_mjd, objects, sources, forced_sources
        )
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
                    self._encoder, self._encode, prepared, name, k, parts
                )
        prepared.streams["DiaObjectLast"] = loop.run_in_executor(self._encoder, self._encode_last, prepared)
        try:
            await self._ensure_partitions(layout, windows)
            prepared.mark("partitions")
            async with wrapped("storing a visit in the APDB"), self.pool.acquire() as conn:
                async with conn.transaction():
                    counts = await self._store_tx(conn, prepared)
                prepared.mark("commit")
        finally:
            pending = [f for f in prepared.streams.values() if not f.done()]
            for f in pending:
                f.cancel()
            await asyncio.gather(*prepared.streams.values(), return_exceptions=True)
        return StoreResult(*counts, seconds=time.perf_counter() - t0, timings=prepared.timings)

    @staticmethod
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

    @staticmethod
    def _encode_last(p: _Prepared) -> tuple[bytes, list[str]]:
        """The staging COPY stream of the DiaObjectLast upsert."""
        cols, pixels = p.tables["DiaObject"]
        plan = _last_plan()
        return plan.encode(cols, pixels), plan.stage_columns()

    @staticmethod
    def _encode_stage(p: _Prepared, name: str) -> tuple[bytes, list[str]]:
        """The staging COPY stream of ``name`` (the replay path: INSERT ... ON CONFLICT from it)."""
        cols, pixels = p.tables[name]
        plan = StagePlan(apdb_tables()[name])
        return plan.encode(cols, pixels), plan.stage_columns()

    def _prepare(
        self,
        layout: Layout,
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

    async def _stage(self, conn: _Connection, table: str, stream: bytes, names: list[str]) -> str:
        stage = f"_stage_v2_{table}"
        plan = _last_plan() if table == "DiaObjectLast" else StagePlan(apdb_tables()[table])
        await conn.execute(plan.stage_ddl(stage))
        await conn.copy_to_table(
            # asyncpg documents "an object supporting the buffer protocol" as a source; asyncpg-stubs omit it
            stage, source=memoryview(stream), columns=names, schema_name="pg_temp", format="binary"  # type: ignore[arg-type]
        )
        return stage

    async def _store_tx(self, conn: _Connection, p: _Prepared) -> tuple[int, int, int]:
        cuts: dict[str, asyncio.Future[list[Chunk]]] = {}
        try:
            return await self._store_steps(conn, p, cuts)
        finally:
            for f in cuts.values():
                f.cancel()
            await asyncio.gather(*cuts.values(), return_exceptions=True)

    async def _store_steps(
        self, conn: _Connection, p: _Prepared, cuts: dict[str, asyncio.Future[list[Chunk]]]
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
                staged, stage_names = await asyncio.to_thread(self._encode_stage, p, table)
                stage = await self._stage(conn, table, staged, stage_names)
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
                cuts[table] = asyncio.ensure_future(asyncio.to_thread(self._cut, p, table, new_rows[table]))
        obj_cols, _ = p.tables["DiaObject"]
        if obj_cols.nrows:
            obj_stream, obj_names = await p.streams["DiaObjectLast"]
            plan = _last_plan()
            stage = await self._stage(conn, "DiaObjectLast", obj_stream, obj_names)
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

    def _cut(self, p: _Prepared, table: str, rows: NDArray[np.intp]) -> list[Chunk]:
        cols, pixels = p.tables[table]
        if rows.size != cols.nrows:
            cols, pixels = cols.take(rows), pixels[rows]
        rec = RecordCodec(apdb_tables()[table]).encode(cols)
        shift = 2 * (p.layout.index_depth - p.layout.chunk_depth)
        return cut_chunks(rec, pixels, shift, cols.values("midpointMjdTai"), p.layout.partition_days)

    # ------------------------------------------------------------------ reads
    async def _copy_out(self, sql: str) -> bytes:
        parts: list[bytes] = []

        async def sink(data: bytes) -> None:
            parts.append(data)

        async with self.pool.acquire() as conn:
            await conn.copy_from_query(sql, output=sink, format="binary")  # sql is the bare SELECT
        return b"".join(parts)

    async def get_dia_objects(self, region: Region) -> pa.Table:
        """Current versions of the DiaObjects inside ``region``.

        Parameters
        ----------
        region : Circle or ConvexPolygon
            Sky region (a visit or detector footprint).

        Returns
        -------
        pyarrow.Table
            One row per DiaObject, ``apdb.yaml`` DiaObject columns.
        """
        layout = await self.layout()
        codec = RecordCodec(apdb_tables()["DiaObject"])
        ranges = pixel_ranges(region, layout.index_depth, self.settings.max_ranges)
        if len(ranges) == 0:
            return codec.to_arrow(np.empty(0, dtype=codec.dtype))
        lo = "{" + ",".join(str(int(v)) for v in ranges[:, 0]) + "}"
        hi = "{" + ",".join(str(int(v)) for v in ranges[:, 1]) + "}"
        # One fixed-width bytea per row: the server copies bytes instead of forming 84 fields.
        sql = (
            f"SELECT t.{q(RECORD_COLUMN)} FROM {layout.t('DiaObjectLast')} t "
            f"JOIN unnest('{lo}'::int8[], '{hi}'::int8[]) AS r(lo, hi) "
            f'ON t."{PIXEL_COLUMN}" >= r.lo AND t."{PIXEL_COLUMN}" < r.hi'
        )
        async with wrapped("reading DiaObjects"):
            buffer = await self._copy_out(sql)

        def decode() -> pa.Table:
            rows = decode_fixed(buffer, [("record", f"V{codec.dtype.itemsize}")])
            rec = np.ascontiguousarray(rows["record"]).view(codec.dtype)
            inside = region.contains(rec["ra"], rec["dec"]) if rec.size else np.zeros(0, bool)
            return codec.to_arrow(rec, np.flatnonzero(inside))

        return await asyncio.to_thread(decode)

    async def get_dia_sources(
        self, object_ids: ArrayLike, since: Time | float, *, region: Region | None = None
    ) -> pa.Table:
        """DiaSources of ``object_ids`` observed at or after ``since``.

        Parameters
        ----------
        object_ids : array-like of int
            DiaObject ids.
        since : astropy.time.Time or float
            Earliest ``midpointMjdTai`` (float: MJD TAI), e.g. 12 months before the visit.
        region : Circle or ConvexPolygon, optional
            A region holding the objects; saves looking up their positions.

        Returns
        -------
        pyarrow.Table
            ``apdb.yaml`` DiaSource columns.
        """
        return await self._history("DiaSource", object_ids, since, region)

    async def get_dia_forced_sources(
        self, object_ids: ArrayLike, since: Time | float, *, region: Region | None = None
    ) -> pa.Table:
        """DiaForcedSources of ``object_ids`` at or after ``since`` (see :meth:`get_dia_sources`)."""
        return await self._history("DiaForcedSource", object_ids, since, region)

    async def preload(self, region: Region, since: Time | float) -> Preload:
        """A field's DiaObjects and their source and forced-source histories (REQ-0030 preload).

        The three reads run concurrently on separate connections (the histories
        split further over ``read_parallelism`` connections each); the
        histories are then cut to the objects found.
        """
        layout = await self.layout()
        since_mjd = to_mjd_tai(since)
        cells = self._region_cells(layout, region)
        t0 = time.perf_counter()

        async def timed(name: str, coro: Any) -> Any:
            result = await coro
            timings[name] = time.perf_counter() - t0
            return result

        timings: dict[str, float] = {}
        objects, sources, forced = await asyncio.gather(
            timed("objects", self.get_dia_objects(region)),
            timed("sources", self._read_history("DiaSource", layout, cells, since_mjd)),
            timed("forced_sources", self._read_history("DiaForcedSource", layout, cells, since_mjd)),
        )
        ids = objects["diaObjectId"].to_numpy()
        sources, forced = await asyncio.gather(
            asyncio.to_thread(self._select, "DiaSource", sources, ids, since_mjd),
            asyncio.to_thread(self._select, "DiaForcedSource", forced, ids, since_mjd),
        )
        timings["total"] = time.perf_counter() - t0
        return Preload(objects, sources, forced, timings)

    def _region_cells(self, layout: Layout, region: Region) -> NDArray[np.int64]:
        margin = self.settings.history_margin_arcsec / 3600.0
        ranges = pixel_ranges(region, layout.chunk_depth, max_ranges=1 << 30, margin_deg=margin)
        if not len(ranges):
            return np.empty(0, np.int64)
        return np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi in ranges])

    async def _object_cells(self, layout: Layout, ids: NDArray[np.int64]) -> NDArray[np.int64]:
        literal = "{" + ",".join(str(int(i)) for i in ids) + "}"
        sql = (
            f"SELECT ra, dec FROM {layout.t('DiaObjectLast')} "
            f"WHERE \"diaObjectId\" = ANY('{literal}'::int8[])"
        )
        buffer = await self._copy_out(sql)
        rows = decode_fixed(buffer, [("ra", ">f8"), ("dec", ">f8")])
        ra, dec = rows["ra"].astype(np.float64), rows["dec"].astype(np.float64)
        margin = self.settings.history_margin_arcsec / 3600.0 * 1.1
        cells = [pixels_of(ra, dec, layout.chunk_depth)]
        if margin > 0:
            cosd = np.maximum(np.cos(np.radians(dec)), 1e-6)
            for angle in np.linspace(0.0, 2 * np.pi, 16, endpoint=False):
                r = (ra + margin * np.cos(angle) / cosd) % 360.0
                d = np.clip(dec + margin * np.sin(angle), -90.0, 90.0)
                cells.append(pixels_of(r, d, layout.chunk_depth))
        return np.unique(np.concatenate(cells))

    async def _history(
        self, table: str, object_ids: ArrayLike, since: Time | float, region: Region | None
    ) -> pa.Table:
        layout = await self.layout()
        since_mjd = to_mjd_tai(since)
        ids = np.unique(np.asarray(object_ids, dtype=np.int64))
        spec = apdb_tables()[table]
        if ids.size == 0:
            return spec.arrow_schema().empty_table()
        async with wrapped(f"reading {table} history"):
            if region is not None:
                cells = self._region_cells(layout, region)
            else:
                cells = await self._object_cells(layout, ids)
        raw = await self._read_history(table, layout, cells, since_mjd)
        return await asyncio.to_thread(self._select, table, raw, ids, since_mjd)

    @staticmethod
    def _select(table: str, rec: NDArray[np.void], ids: NDArray[np.int64], since_mjd: float) -> pa.Table:
        return RecordCodec(apdb_tables()[table]).to_arrow(rec, select_rows(rec, ids, since_mjd))

    async def _read_history(
        self, table: str, layout: Layout, cells: NDArray[np.int64], since_mjd: float
    ) -> NDArray[np.void]:
        """Records of the chunks of ``cells`` that may hold rows at or after ``since_mjd``."""
        codec = RecordCodec(apdb_tables()[table])
        if cells.size == 0:
            return np.empty(0, dtype=codec.dtype)
        parts = [p for p in np.array_split(np.sort(cells), self.settings.read_parallelism) if p.size]
        sql = (
            f'SELECT "data" FROM {layout.t(CHUNK_TABLES[table])} '
            f'WHERE "chunkPixel" = ANY($1::int8[]) AND "mjdMax" >= $2'
        )

        async def fetch(part: NDArray[np.int64]) -> list[bytes]:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(sql, part.tolist(), since_mjd)
            return [r[0] for r in rows]

        async with wrapped(f"reading {table} history"):
            blobs = await asyncio.gather(*(fetch(p) for p in parts))

        def join() -> NDArray[np.void]:
            return codec.frombuffer(b"".join(b for part in blobs for b in part))

        return await asyncio.to_thread(join)


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


