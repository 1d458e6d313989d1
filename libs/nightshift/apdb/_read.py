"""APDB reads: a field's DiaObjects and the source histories of objects, from the history chunks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import numpy as np
import pyarrow as pa
from astropy.time import Time
from numpy.typing import ArrayLike, NDArray

from ..sky import Region, pixel_ranges, pixels_of
from ._chunks import RecordCodec, select_rows
from ._copy import decode_fixed
from ._ddl import CHUNK_TABLES, RECORD_COLUMN, Layout, q
from ._errors_map import wrapped
from ._schema import PIXEL_COLUMN, apdb_tables
from ._settings import ApdbSettings
from ._types import Preload, to_mjd_tai

__all__ = ["ApdbReader"]


class ApdbReader:
    """The reads of one APDB layout over a pool (made by :class:`AsyncApdb` for each call; cheap).

    Parameters
    ----------
    pool : asyncpg.Pool
    settings : ApdbSettings
        ``max_ranges``, ``history_margin_arcsec`` and ``read_parallelism`` shape the reads.
    layout : Layout
        The schema's recorded layout.
    """

    def __init__(self, pool: asyncpg.Pool, settings: ApdbSettings, layout: Layout) -> None:
        self.pool = pool
        self.settings = settings
        self.layout = layout

    async def _copy_out(self, sql: str) -> bytes:
        parts: list[bytes] = []

        async def sink(data: bytes) -> None:
            parts.append(data)

        async with self.pool.acquire() as conn:
            await conn.copy_from_query(sql, output=sink, format="binary")  # sql is the bare SELECT
        return b"".join(parts)

    async def dia_objects(self, region: Region) -> pa.Table:
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
        layout = self.layout
        codec = RecordCodec(apdb_tables()["DiaObject"])
        ranges = pixel_ranges(region, layout.index_depth, max_ranges=self.settings.max_ranges)
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

    async def preload(self, region: Region, since: Time | float) -> Preload:
        """A field's DiaObjects and their source and forced-source histories (REQ-0030 preload).

        The three reads run concurrently on separate connections (the histories
        split further over ``read_parallelism`` connections each); the
        histories are then cut to the objects found.
        """
        layout = self.layout
        since_mjd = to_mjd_tai(since)
        cells = self._region_cells(layout, region)
        t0 = time.perf_counter()

        async def timed(name: str, coro: Any) -> Any:
            result = await coro
            timings[name] = time.perf_counter() - t0
            return result

        timings: dict[str, float] = {}
        objects, sources, forced = await asyncio.gather(
            timed("objects", self.dia_objects(region)),
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

    async def history(
        self, table: str, object_ids: ArrayLike, since: Time | float, region: Region | None
    ) -> pa.Table:
        layout = self.layout
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
