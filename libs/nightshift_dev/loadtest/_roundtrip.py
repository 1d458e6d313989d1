"""timeToWriteReadAlertsDB (DMS-MWST-REQ-0028): a writer process stores a visit, a reader process reads the next field.

The writer (this process) stores visit N's DiaObjects, DiaSources and DiaForcedSources
(:meth:`nightshift.apdb.AsyncApdb.store`, binary COPY, one transaction) and tells the
reader (a second process, spawned) over a pipe; the reader preloads the field of
visit N+1 (its DiaObjects and their 12-month DiaSource and DiaForcedSource histories)
and checks that N's rows in that field are there. The round trip runs from the writer's
start of the store to the reader's end of the read.

The table must be large (the issue asks ≥ 10 M DiaSources): ``seed_visits`` visits are
stored first through the same path (or an existing schema is reused with ``--schema``).
The sky and visits are those of ``loadtests/apdb_bench.py`` (14 field centres, 5,200
objects/deg², 10,000 + 10,000 + 10,000 rows a visit, one visit a day), so a schema
seeded by either serves both.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from nightshift.apdb import ApdbSettings, AsyncApdb, SkyField, stats

from ._errors import LoadTestError
from ._resources import ResourceSampler
from ._results import Budget, LoadTestResult, Span
from ._stack import StackAddresses

__all__ = ["RoundTripConfig", "run_roundtrip"]

BUDGET = ("timeToWriteReadAlertsDB", 2.5, 25.0)
HISTORY_DAYS = 365.0


@dataclass
class RoundTripConfig:
    """One round-trip run.

    Parameters
    ----------
    schema : str
        APDB schema (PostgreSQL schema name); reused if it exists.
    visits : int
        Measured visits (writer → reader round trips).
    seed_visits : int
        Visits stored first, unmeasured, to grow the tables (1,000 ≈ 10 M DiaSources).
    min_dia_sources : int
        Refuse to measure below this DiaSource count (0: no floor).
    guard_s : float
        Seconds after which a round trip that does not finish stops the run.
    """

    schema: str = "loadtest_roundtrip"
    visits: int = 20
    seed_visits: int = 0
    min_dia_sources: int = 10_000_000
    centres: int = 14
    density: float = 5200.0
    sources_per_visit: int = 10_000
    guard_s: float = 120.0
    drop: bool = False


def _sky(cfg: RoundTripConfig) -> SkyField:
    density = cfg.density * min(1.0, cfg.sources_per_visit / 10_000)  # the same sky per source as 10,000 a visit
    return SkyField(centres=cfg.centres, density=density, sources_per_visit=cfg.sources_per_visit,
                    forced_per_visit=cfg.sources_per_visit, cadence_days=1.0)


def _reader_main(cfg: RoundTripConfig, dsn: str, conn: Connection) -> None:
    asyncio.run(_reader(cfg, dsn, conn))


async def _reader(cfg: RoundTripConfig, dsn: str, conn: Connection) -> None:
    sky = _sky(cfg)
    settings = ApdbSettings(dsn=dsn, schema_name=cfg.schema, pool_max_size=8)
    async with AsyncApdb(settings) as apdb:
        await apdb.layout()
        conn.send(("ready", os.getpid()))
        while True:
            msg = await asyncio.to_thread(conn.recv)
            if msg[0] == "stop":
                return
            _, i, visit_id = msg
            t0 = time.time()
            pre = await apdb.preload(sky.region(i + 1), sky.history_start(i + 1, HISTORY_DAYS))
            t1 = time.time()
            seen = int(np.count_nonzero(pre.sources["visit"].to_numpy() == visit_id))
            conn.send(("read", i, t0, t1, {"objects": pre.objects.num_rows, "sources": pre.sources.num_rows,
                                           "forced_sources": pre.forced_sources.num_rows, "sources_of_visit": seen}))


async def _next_index(apdb: AsyncApdb, schema: str, sky: SkyField) -> int:
    """The first visit index not stored yet in ``schema`` (visits are stored in order)."""
    row = await apdb.pool.fetchval(f'SELECT max(visit) FROM "{schema}"."DiaSource"')
    return 0 if row is None else int(row) - sky.first_visit_id + 1


async def _run(cfg: RoundTripConfig, dsn: str, result: LoadTestResult, t0: float) -> None:
    base = time.time() - (time.monotonic() - t0)  # wall clock of the run's start
    sky = _sky(cfg)
    settings = ApdbSettings(dsn=dsn, schema_name=cfg.schema, pool_max_size=8)
    sampler = ResourceSampler(t0)
    sampler.watch("writer (store)", os.getpid())
    budget = result.budget(BUDGET[0])
    async with AsyncApdb(settings) as apdb:
        exists = await apdb.pool.fetchval("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
                                          cfg.schema)
        if not exists:
            await apdb.create()
        start = await _next_index(apdb, cfg.schema, sky)
        t_seed = time.monotonic()
        for i in range(start, start + cfg.seed_visits):
            v = sky.visit(i)
            await apdb.store(v.mjd, v.objects, v.sources, v.forced_sources)
        if cfg.seed_visits:
            result.extra["seed"] = {"visits": cfg.seed_visits, "seconds": round(time.monotonic() - t_seed, 1)}
        start += cfg.seed_visits
        n_sources = int((await stats(apdb, exact=True))["DiaSource"]["rows"])
        result.extra["dia_sources_before"] = n_sources
        if n_sources < cfg.min_dia_sources:
            raise LoadTestError(
                f"the DiaSource table of schema {cfg.schema} holds {n_sources:,} rows, under the "
                f"{cfg.min_dia_sources:,} asked for: seed it first (--seed-visits "
                f"{(cfg.min_dia_sources - n_sources) // cfg.sources_per_visit + 1}) or lower --min-dia-sources")
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        reader = ctx.Process(target=_reader_main, args=(cfg, dsn, child), daemon=True)
        reader.start()
        try:
            if not parent.poll(cfg.guard_s):
                raise LoadTestError(f"the reader process did not start within {cfg.guard_s:.0f} s")
            _, pid = parent.recv()
            sampler.watch("reader (preload)", pid)
            rows: list[dict[str, Any]] = []
            with sampler:
                for i in range(start, start + cfg.visits):
                    v = sky.visit(i)
                    w0 = time.time()
                    r = await apdb.store(v.mjd, v.objects, v.sources, v.forced_sources)
                    w1 = time.time()
                    parent.send(("stored", i, v.visit))
                    if not await asyncio.to_thread(parent.poll, cfg.guard_s):
                        raise LoadTestError(f"the reader did not answer for visit {i} within {cfg.guard_s:.0f} s")
                    _, j, r0, r1, counts = parent.recv()
                    if j != i:
                        raise LoadTestError(f"the reader answered for visit {j}, expected {i}")
                    overlaps = i % cfg.centres != cfg.centres - 1  # the strip's last field does not touch the first
                    if overlaps and counts["sources_of_visit"] == 0:
                        raise LoadTestError(f"the reader did not find visit {v.visit}'s rows in the next field")
                    budget.samples.append(r1 - w0)
                    k = i - start
                    result.timeline += [Span(k // 10, k % 10, "writer: store", w0 - base, w1 - base),
                                        Span(k // 10, k % 10, "notify", w1 - base, r0 - base),
                                        Span(k // 10, k % 10, "reader: preload next field", r0 - base, r1 - base)]
                    rows.append({"visit": v.visit, "store_s": round(w1 - w0, 4), "notify_s": round(r0 - w1, 4),
                                 "preload_s": round(r1 - r0, 4), "round_trip_s": round(r1 - w0, 4),
                                 "store_rows": r.dia_sources, "preload_rows": counts})
                    result.series.setdefault("round trip (s)", []).append((round(time.monotonic() - t0, 2),
                                                                            round(r1 - w0, 4)))
            result.extra["visits"] = rows
            for key in ("store_s", "notify_s", "preload_s"):
                a = [x[key] for x in rows]
                result.extra[f"{key}_p50_p95"] = [round(float(np.percentile(a, 50)), 4),
                                                  round(float(np.percentile(a, 95)), 4)]
            result.extra["dia_sources_after"] = n_sources + sum(x["store_rows"] for x in rows)
        finally:
            parent.send(("stop",))
            reader.join(timeout=30)
            if reader.is_alive():
                reader.kill()
            result.resources = sampler.samples
        if cfg.drop:
            await apdb.drop()


def run_roundtrip(cfg: RoundTripConfig, command: str, stack: StackAddresses | None = None) -> LoadTestResult:
    """Measure timeToWriteReadAlertsDB; see the module docstring.

    A run that cannot go on (PostgreSQL does not answer, the table is under
    ``min_dia_sources``, the reader hangs) comes back with ``failed`` set.
    """
    result = LoadTestResult(kind="roundtrip", command=command)
    result.budgets = [Budget(BUDGET[0], BUDGET[1], "APDB direct (writer and reader processes)", BUDGET[2])]
    result.extra["schema"] = cfg.schema
    t0 = time.monotonic()
    try:
        stack = stack or StackAddresses.from_env()
        stack.check(need=("pg",))
        asyncio.run(_run(cfg, stack.pg_dsn, result, t0))
    except LoadTestError as exc:  # kept in the result: the report of a failed run says what went wrong
        result.failed = str(exc)
    finally:
        result.notes.append("Writer = the load-test process (AsyncApdb.store, binary COPY, one transaction per "
                            "visit); reader = a spawned process (AsyncApdb.preload of the next field, 12-month "
                            "histories). Round trip = writer's store start to reader's read end (wall clock).")
    return result
