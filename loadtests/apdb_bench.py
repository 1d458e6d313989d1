"""APDB benchmark: the Alert Production cycle on the local PostgreSQL.

Phases
------
1. bulk: ``--bulk-visits`` visits stored through the same ``store()`` (the
   table grows to the target size; the same shape as measured visits);
2. measured: ``--visits`` visits with two processes. The writer (this
   process) stores visit N and sends an event; the reader (a second process),
   on the event, preloads the field of visit N+1 (DiaObjects in the region
   plus 12 months of DiaSource and DiaForcedSource history) and checks that
   N's rows are in it. Store time, preload time (with row counts) and the
   REQ-0028 round trip (writer starts storing N → reader has read N+1's field)
   are recorded per visit.

Prints JSON (also written to ``--out``/apdb_bench.json), a PNG of the times
against the DiaSource table size, and a one-line summary.

Example::

    .venv/bin/python loadtests/apdb_bench.py --centres 6 --bulk-visits 150 --visits 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.apdb import ApdbSettings, AsyncApdb, SkyField, stats

HISTORY_DAYS = 365.0


def _pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {}
    return {
        "p50": round(float(np.percentile(a, 50)), 4),
        "p95": round(float(np.percentile(a, 95)), 4),
        "max": round(float(a.max()), 4),
        "n": int(a.size),
    }


def _sky(args: argparse.Namespace) -> SkyField:
    return SkyField(
        centres=args.centres,
        density=args.density,
        sources_per_visit=args.sources_per_visit,
        forced_per_visit=args.forced_per_visit,
        cadence_days=args.cadence_days,
    )


def _settings(args: argparse.Namespace) -> ApdbSettings:
    return ApdbSettings(schema_name=args.schema, chunk_depth=args.chunk_depth, pool_max_size=8)


# ---------------------------------------------------------------------- reader process
def reader_main(args: argparse.Namespace, conn: Connection) -> None:
    asyncio.run(_reader(args, conn))


async def _reader(args: argparse.Namespace, conn: Connection) -> None:
    sky = _sky(args)
    async with AsyncApdb(_settings(args)) as apdb:
        await apdb.layout()
        conn.send(("ready",))
        while True:
            msg = await asyncio.to_thread(conn.recv)
            if msg[0] == "stop":
                return
            _, i = msg
            nxt = i + 1
            t = time.monotonic()
            pre = await apdb.preload(sky.region(nxt), sky.history_start(nxt, HISTORY_DAYS))
            t1 = time.monotonic()
            seen = int(np.count_nonzero(pre.sources["visit"].to_numpy() == 1000 + i))
            conn.send(
                (
                    "read",
                    i,
                    t1,
                    t1 - t,
                    {
                        "objects": pre.objects.num_rows,
                        "sources": pre.sources.num_rows,
                        "forced_sources": pre.forced_sources.num_rows,
                        "sources_of_visit_n": seen,
                    },
                    {k: round(v, 4) for k, v in pre.timings.items()},
                )
            )


# ---------------------------------------------------------------------- writer (main)
async def run(args: argparse.Namespace) -> dict[str, Any]:
    sky = _sky(args)
    out: dict[str, Any] = {"args": vars(args), "bulk": [], "visits": []}
    async with AsyncApdb(_settings(args)) as apdb:
        if not args.resume:
            await apdb.create(drop=True)
        total_sources = 0
        if args.resume:
            total_sources = (await stats(apdb, exact=True))["DiaSource"]["rows"]
        t_bulk = time.monotonic()
        for i in range(args.start, args.start + args.bulk_visits):
            v = sky.visit(i)
            r = await apdb.store(v.mjd, v.objects, v.sources, v.forced_sources)
            total_sources += r.dia_sources
            out["bulk"].append({"visit": i, "store_s": round(r.seconds, 4), "dia_sources_total": total_sources})
            if args.progress and (i + 1) % 10 == 0:
                print(f"bulk {i + 1}: {total_sources} DiaSources, store {r.seconds:.3f}s", file=sys.stderr, flush=True)
        out["bulk_seconds"] = round(time.monotonic() - t_bulk, 1)

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        reader = ctx.Process(target=reader_main, args=(args, child), daemon=True)
        reader.start()
        try:
            if parent.recv()[0] != "ready":
                raise RuntimeError("reader did not start")
            first = args.start + args.bulk_visits
            for i in range(first, first + args.visits):
                v = sky.visit(i)
                objects, sources, forced = v.objects, v.sources, v.forced_sources
                t0 = time.monotonic()
                r = await apdb.store(v.mjd, objects, sources, forced)
                t_stored = time.monotonic()
                total_sources += r.dia_sources
                parent.send(("stored", i))
                msg = await asyncio.to_thread(parent.recv)
                _, j, t1, preload_s, counts, timings = msg
                if j != i:
                    raise RuntimeError(f"reader answered for visit {j}, expected {i}")
                rec = {
                    "visit": i,
                    "dia_sources_total": total_sources,
                    "store_s": round(t_stored - t0, 4),
                    "preload_s": round(preload_s, 4),
                    "round_trip_s": round(t1 - t0, 4),
                    "store_timings": r.timings,
                    "rows": {"objects": objects.num_rows, "sources": sources.num_rows, "forced": forced.num_rows},
                    "preload_rows": counts,
                    "preload_timings": timings,
                }
                out["visits"].append(rec)
                if args.progress:
                    print(json.dumps(rec), file=sys.stderr, flush=True)
        finally:
            parent.send(("stop",))
            reader.join(timeout=30)
        out["tables"] = await stats(apdb, exact=True)
        if args.drop:
            await apdb.drop()
    v = out["visits"]
    out["summary"] = {
        "store_s": _pct([x["store_s"] for x in v]),
        "preload_s": _pct([x["preload_s"] for x in v]),
        "round_trip_s": _pct([x["round_trip_s"] for x in v]),
        "bulk_store_s": _pct([x["store_s"] for x in out["bulk"]]),
        "preload_rows_p50": {
            k: int(np.median([x["preload_rows"][k] for x in v])) for k in ("objects", "sources", "forced_sources")
        }
        if v
        else {},
        "dia_sources_total": total_sources,
    }
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    bulk = result["bulk"]
    if bulk:
        ax.plot([b["dia_sources_total"] / 1e6 for b in bulk], [b["store_s"] for b in bulk], ".",
                ms=3, alpha=0.5, label="store (bulk phase)")
    v = result["visits"]
    x = [r["dia_sources_total"] / 1e6 for r in v]
    series = (("store_s", "store"), ("preload_s", "field preload"), ("round_trip_s", "round trip (2 processes)"))
    for key, label in series:
        ax.plot(x, [r[key] for r in v], "o-", ms=3, label=label)
    ax.set_xlabel("DiaSource rows in the APDB (millions)")
    ax.set_ylabel("seconds per visit")
    ax.set_title("nightshift APDB on PostgreSQL 15 (2 cores)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--schema", default="apdb_bench")
    p.add_argument("--centres", type=int, default=6, help="distinct field centres, 1.5 deg apart")
    p.add_argument("--density", type=float, default=5200.0, help="objects per square degree (~50k per field)")
    p.add_argument("--sources-per-visit", type=int, default=10_000)
    p.add_argument("--forced-per-visit", type=int, default=10_000)
    p.add_argument("--cadence-days", type=float, default=1.0, help="days between visits")
    p.add_argument("--bulk-visits", type=int, default=150)
    p.add_argument("--visits", type=int, default=30)
    p.add_argument("--start", type=int, default=0, help="first visit index (with --resume)")
    p.add_argument("--resume", action="store_true", help="keep the existing schema and continue")
    p.add_argument("--chunk-depth", type=int, default=7)
    p.add_argument("--drop", action="store_true", help="drop the schema at the end")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "apdb" / "results")
    args = p.parse_args()
    if "NIGHTSHIFT_APDB_DSN" not in os.environ and "PG_DSN" not in os.environ:
        os.environ["PG_DSN"] = "postgresql://nightshift@127.0.0.1:15433/nightshift"
    result = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "apdb_bench.json").write_text(json.dumps(result, indent=1, default=str))
    plot(result, args.out / "apdb_bench.png")
    print(json.dumps({"summary": result["summary"], "tables": result["tables"]}, indent=1))
    s = result["summary"]
    print(
        f"APDB {s['dia_sources_total'] / 1e6:.2f}M DiaSources: store p50/p95/max "
        f"{s['store_s'].get('p50')}/{s['store_s'].get('p95')}/{s['store_s'].get('max')} s; "
        f"preload {s['preload_s'].get('p50')}/{s['preload_s'].get('p95')}/{s['preload_s'].get('max')} s "
        f"({s['preload_rows_p50']}); round trip {s['round_trip_s'].get('p50')}/{s['round_trip_s'].get('p95')}/"
        f"{s['round_trip_s'].get('max')} s"
    )


if __name__ == "__main__":
    main()
