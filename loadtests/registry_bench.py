"""Registry benchmark on SQLite and PostgreSQL.

For each backend and each size (default 2,000 and 100,000 datasets of one type
over (visit, detector)) it measures:

- ``insert``: bulk insert of all datasets in batches (datasets/s);
- ``query_datasets``: ``where="visit IN (a..b) AND detector = d"`` (ms p50/p95);
- ``query_data_ids``: data IDs joining visit records, ``visit.seeing < x AND detector = d``,
  constrained to existing datasets (ms p50/p95);
- ``chained_lookup``: ``find_dataset`` through a CHAINED collection of 5 runs,
  the dataset being in the last one (ms p50/p95);
- ``cold_start``: a fresh interpreter importing the registry and opening the repository (s).

Prints one JSON document, then a one-line summary per backend and size.

Usage::

    .venv/bin/python loadtests/registry_bench.py [--sizes 2000 100000] [--backends sqlite postgresql]
        [--pg-dsn postgresql://nightshift@127.0.0.1:15433/nightshift] [--repeat 200] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nightshift.butler import DatasetType
from nightshift.butler.registry import CollectionType, Registry

N_DETECTORS = 189
DEFAULT_DSN = "postgresql://nightshift@127.0.0.1:15433/nightshift"


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return {"p50_ms": round(statistics.median(samples) * 1e3, 3), "p95_ms": round(p95 * 1e3, 3),
            "n": len(samples)}


def _time_many(fn: Callable[[int], Any], repeat: int) -> dict[str, float]:
    for i in range(min(5, repeat)):  # warm-up (caches, prepared plans)
        fn(i)
    out = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return _percentiles(out)


def _populate(reg: Registry, n_datasets: int) -> tuple[int, list[dict[str, Any]]]:
    n_visits = -(-n_datasets // N_DETECTORS)
    rng = random.Random(42)
    reg.insert_dimension_records("instrument", [{"name": "Cam", "detector_max": N_DETECTORS}])
    reg.insert_dimension_records("band", [{"name": "r"}])
    reg.insert_dimension_records("physical_filter", [{"instrument": "Cam", "name": "r_01", "band": "r"}])
    reg.insert_dimension_records("day_obs", [{"instrument": "Cam", "id": 20250101}])
    reg.insert_dimension_records("detector", [{"instrument": "Cam", "id": d} for d in range(N_DETECTORS)])
    reg.insert_dimension_records("visit", [
        {"instrument": "Cam", "id": v, "physical_filter": "r_01", "day_obs": 20250101,
         "seeing": rng.uniform(0.4, 1.6), "airmass": rng.uniform(1.0, 2.0), "exposure_time": 30.0}
        for v in range(n_visits)
    ])
    data_ids = [{"instrument": "Cam", "visit": v, "detector": d}
                for v in range(n_visits) for d in range(N_DETECTORS)][:n_datasets]
    return n_visits, data_ids


def bench_one(location: str, schema: str | None, n_datasets: int, repeat: int) -> dict[str, Any]:
    reg = Registry.create(location, schema=schema)
    try:
        n_visits, data_ids = _populate(reg, n_datasets)
        calexp = DatasetType("calexp", ["instrument", "visit", "detector"], "ExposureF")
        reg.register_dataset_type(calexp)
        reg.register_run("run")
        t0 = time.perf_counter()
        reg.insert_datasets(calexp, data_ids, "run", batch_size=10_000)
        insert_s = time.perf_counter() - t0
        result: dict[str, Any] = {
            "datasets": n_datasets,
            "insert": {"seconds": round(insert_s, 3), "datasets_per_s": round(n_datasets / insert_s)},
        }
        rng = random.Random(7)

        def q_datasets_lit(i: int) -> None:
            v = rng.randrange(max(1, n_visits - 10))
            d = rng.randrange(min(N_DETECTORS, n_datasets))
            refs = reg.query_datasets("calexp", "run", where=f"visit IN ({v}..{v + 9}) AND detector = d",
                                      bind={"d": d})
            if not refs:
                raise RuntimeError("benchmark query found nothing")

        result["query_datasets"] = _time_many(q_datasets_lit, repeat)

        def q_data_ids(i: int) -> None:
            reg.query_data_ids(["visit", "detector"], where="visit.seeing < s AND detector = d",
                               bind={"s": 0.6, "d": rng.randrange(min(N_DETECTORS, n_datasets))},
                               datasets=["calexp"], collections="run")

        result["query_data_ids"] = _time_many(q_data_ids, repeat)

        runs = [f"layer{i}" for i in range(5)]
        for r in runs:
            reg.register_run(r)
        reg.register_collection("chain5", CollectionType.CHAINED)
        reg.set_collection_chain("chain5", runs)
        sample = [data_ids[rng.randrange(len(data_ids))] for _ in range(200)]
        reg.insert_datasets(calexp, sample, runs[-1], skip_existing=True)

        def lookup(i: int) -> None:
            if reg.find_dataset("calexp", sample[i % len(sample)], "chain5") is None:
                raise RuntimeError("chained lookup found nothing")

        result["chained_lookup"] = _time_many(lookup, repeat)
        result["cold_start"] = cold_start(location, schema)
        return result
    finally:
        reg.close()


def cold_start(location: str, schema: str | None, runs: int = 5) -> dict[str, float]:
    code = (
        "import time; t0 = time.perf_counter()\n"
        "from nightshift.butler.registry import Registry\n"
        f"r = Registry({location!r}, schema={schema!r}); r.get_collection_type('run')\n"
        "print(time.perf_counter() - t0)\n"
    )
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        samples.append(float(out.stdout.strip()))
    return {"p50_s": round(statistics.median(samples), 3), "max_s": round(max(samples), 3), "n": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 100_000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-dsn", default=os.environ.get("PG_DSN", DEFAULT_DSN))
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--peer-python", type=Path,
                        help="python of a separate venv with lsst-daf-butler: run registry_bench_peer.py with it "
                             "in the same run and report the ratios")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"benchmark": "registry", "python": sys.version.split()[0], "results": []}
    with tempfile.TemporaryDirectory(prefix="regbench") as tmp:
        for backend in args.backends:
            for size in args.sizes:
                schema = None
                if backend == "sqlite":
                    location = str(Path(tmp) / f"repo{size}")
                else:
                    location, schema = args.pg_dsn, "bench_" + uuid.uuid4().hex[:8]
                try:
                    res = bench_one(location, schema, size, args.repeat)
                finally:
                    if schema is not None:
                        _drop_schema(args.pg_dsn, schema)
                res["backend"] = backend
                report["results"].append(res)
    if args.peer_python:
        report["peer"] = _run_peer(args)
        report["speedup"] = _speedups(report["results"], report["peer"]["results"])
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    for r in report["results"]:
        print(
            f"registry {r['backend']:<10} n={r['datasets']:>6}: insert {r['insert']['datasets_per_s']}/s | "
            f"query_datasets p50 {r['query_datasets']['p50_ms']} ms | "
            f"query_data_ids p50 {r['query_data_ids']['p50_ms']} ms | "
            f"chained(5) p50 {r['chained_lookup']['p50_ms']} ms | cold start {r['cold_start']['p50_s']} s"
        )
    for sp in report.get("speedup", []):
        print(
            f"speedup vs daf_butler {sp['backend']:<10} n={sp['datasets']:>6}: "
            + " | ".join(f"{k} {v}x" for k, v in sp.items() if k not in ("backend", "datasets"))
        )
    return 0


def _run_peer(args: argparse.Namespace) -> dict[str, Any]:
    peer = Path(__file__).with_name("registry_bench_peer.py")
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [str(args.peer_python), str(peer), "--sizes", *map(str, args.sizes), "--backends", *args.backends,
             "--repeat", str(args.repeat), "--pg-dsn", args.pg_dsn, "--out", out.name],
            check=True, stdout=subprocess.DEVNULL,
        )
        return json.loads(Path(out.name).read_text())


def _speedups(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for mine in ours:
        peer = next((t for t in theirs if t["backend"] == mine["backend"] and t["datasets"] == mine["datasets"]), None)
        if peer is None:
            continue
        row: dict[str, Any] = {"backend": mine["backend"], "datasets": mine["datasets"]}
        row["insert"] = round(mine["insert"]["datasets_per_s"] / peer["insert"]["datasets_per_s"], 1)
        for key in ("query_datasets", "query_data_ids", "chained_lookup"):
            row[key] = round(peer[key]["p50_ms"] / mine[key]["p50_ms"], 1)
        row["cold_start"] = round(peer["cold_start"]["p50_s"] / mine["cold_start"]["p50_s"], 1)
        out.append(row)
    return out


def _drop_schema(dsn: str, schema: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine("postgresql+psycopg://" + dsn.split("://", 1)[1])
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
