"""The asynchronous APDB client on asyncpg: the pool's lifecycle and the public calls.

The work lives in three modules the client composes: ``_schema_ops`` (create, drop,
metadata, upgrade, time partitions), ``_store`` (the binary-COPY write pipeline) and
``_read`` (field and history reads); results and time conversion are in ``_types``.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import numpy as np
import pyarrow as pa
from astropy.time import Time
from numpy.typing import ArrayLike

from ..sky import Region
from ._ddl import Layout
from ._errors_map import wrapped
from ._ids import NUMBER_BITS, make_source_ids
from ._read import ApdbReader
from ._schema_ops import create_schema, drop_schema, read_metadata, recorded_layout, upgrade_schema
from ._settings import ApdbSettings
from ._store import store_visit
from ._types import Preload, StoreResult, to_mjd_tai
from ._validate import TableLike

__all__ = ["AsyncApdb", "Preload", "StoreResult", "to_mjd_tai"]

_log = logging.getLogger(__name__)


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
        # One thread encodes a store's COPY streams in the order the server needs them;
        # it lives from open() to close().
        self._encoder: ThreadPoolExecutor | None = None

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
                self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apdb-encode")
        return self

    async def close(self, timeout: float = 10.0) -> None:
        """Close the pool (wait up to ``timeout`` for connections, then terminate them) and stop the encoder thread.

        Idempotent; :meth:`open` may be called again afterwards.
        """
        pool, self._pool = self._pool, None
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            # no store is running on a closing client; its thread ends once idle
            encoder.shutdown(wait=False, cancel_futures=True)
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


    def _encoder_thread(self) -> ThreadPoolExecutor:
        if self._encoder is None:
            raise RuntimeError("the APDB is not open: await apdb.open() first")
        return self._encoder

    async def _reader(self) -> ApdbReader:
        return ApdbReader(self.pool, self.settings, await self.layout())

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
        await create_schema(self.pool, layout, drop=drop)
        self._layout = layout
        self._partitions.clear()

    async def drop(self) -> None:
        """Drop the APDB schema and everything in it."""
        await drop_schema(self.pool, self.settings.schema_name)
        self._layout = None
        self._partitions.clear()

    async def metadata(self) -> dict[str, str]:
        """The metadata table (schema version, layout parameters)."""
        return await read_metadata(self.pool, self.settings.schema_name)

    async def upgrade(self) -> str:
        """Bring a schema of an older nightshift layout to the current one, keeping its data.

        Layout 1 → 2 drops the non-Rubin columns of ``DiaObjectLast`` (the field read
        uses ``apdbRecord``) and the secondary indexes of ``DiaSource`` and
        ``DiaForcedSource`` (nothing reads by them). Returns the layout version now recorded.
        """
        version = await upgrade_schema(self.pool, self.settings.schema_name)
        self._layout = None
        return version

    async def layout(self) -> Layout:
        """The layout recorded in the schema (cached after the first call)."""
        if self._layout is None:
            self._layout = recorded_layout(self.settings.schema_name, await self.metadata())
        return self._layout

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
        layout = await self.layout()
        return await store_visit(
            self.pool, self._encoder_thread(), layout, self._partitions, visit_time, objects, sources, forced_sources
        )

    # ------------------------------------------------------------------ reads
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
        return await (await self._reader()).dia_objects(region)

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
        return await (await self._reader()).history("DiaSource", object_ids, since, region)

    async def get_dia_forced_sources(
        self, object_ids: ArrayLike, since: Time | float, *, region: Region | None = None
    ) -> pa.Table:
        """DiaForcedSources of ``object_ids`` at or after ``since`` (see :meth:`get_dia_sources`)."""
        return await (await self._reader()).history("DiaForcedSource", object_ids, since, region)

    async def stored_source_ids(self, visit: int, detector: int, around: Time | float | None = None,
                                window_days: float = 2.0) -> np.ndarray:
        """Ids of the DiaSources already stored for one (visit, detector), sorted.

        DiaSource ids pack (visit, detector, number) (:func:`make_source_ids`), so one
        primary-key range scan answers it: a redelivered quantum learns whether its
        rows exist without reprocessing (the runner's exactly-once replay).

        Parameters
        ----------
        visit, detector : int
        around : astropy.time.Time or float, optional
            The visit's time (float: MJD TAI); only partitions within ``window_days`` of
            it are read. ``None`` reads every partition.
        window_days : float
            Half-width of that time window.
        """
        lo = int(make_source_ids(visit, detector, 0))
        hi = int(make_source_ids(visit, detector, (1 << NUMBER_BITS) - 1))
        layout = await self.layout()
        sql = f'SELECT "diaSourceId" FROM {layout.t("DiaSource")} WHERE "diaSourceId" BETWEEN $1 AND $2'
        args: list[float | int] = [lo, hi]
        if around is not None:
            mjd = to_mjd_tai(around)
            sql += ' AND "midpointMjdTai" BETWEEN $3 AND $4'
            args += [mjd - window_days, mjd + window_days]
        async with wrapped("reading a visit's stored DiaSource ids"):
            rows = await self.pool.fetch(sql + " ORDER BY 1", *args)
        return np.array([r[0] for r in rows], dtype=np.int64)

    async def preload(self, region: Region, since: Time | float) -> Preload:
        """A field's DiaObjects and their source and forced-source histories (REQ-0030 preload).

        The three reads run concurrently on separate connections (the histories
        split further over ``read_parallelism`` connections each); the
        histories are then cut to the objects found.
        """
        return await (await self._reader()).preload(region, since)
