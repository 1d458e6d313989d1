"""The same registry benchmark against Rubin's ``lsst-daf-butler`` (SQLite), for comparison.

Run with the separate peer environment (never a nightshift dependency)::

    python -m venv .cache/peer-venv && .cache/peer-venv/bin/pip install lsst-daf-butler
    .cache/peer-venv/bin/python loadtests/registry_bench_peer.py --sizes 2000 100000

Same work as ``registry_bench.py``: insert N ``calexp`` datasets over (visit, detector)
(189 detectors), ``where`` on a visit range and detector, a data-ID query joining visit
records (``visit.zenith_angle`` here: daf_butler's visit has no seeing field) and
constrained to datasets, ``findDataset`` through a 5-run CHAINED collection, and the cold
start (import + construct a Butler). Prints JSON and a one-line summary per size.
"""

from __future__ import annotations

import argparse
import json
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

N_DETECTORS = 189


def _pct(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return {"p50_ms": round(statistics.median(samples) * 1e3, 3), "p95_ms": round(p95 * 1e3, 3), "n": len(samples)}


def _time_many(fn: Callable[[int], object], repeat: int) -> dict[str, float]:
    for i in range(min(5, repeat)):
        fn(i)
    out = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return _pct(out)


def bench_one(root: str, n: int, repeat: int, pg_url: str | None = None, schema: str | None = None) -> dict[
    str, Any
]:
    from lsst.daf.butler import Butler, CollectionType, Config, DatasetType

    if pg_url is None:
        Butler.makeRepo(root)
    else:
        Butler.makeRepo(root, config=Config({"registry": {"db": pg_url, "namespace": schema}}))
    butler = Butler.from_config(root, writeable=True)
    reg = butler.registry
    n_visits = -(-n // N_DETECTORS)
    rng = random.Random(42)
    reg.insertDimensionData("instrument", {"name": "Cam", "visit_max": 10**6, "exposure_max": 10**6,
                                           "detector_max": N_DETECTORS, "class_name": "x.Cam"})
    reg.insertDimensionData("physical_filter", {"instrument": "Cam", "name": "r_01", "band": "r"})
    reg.insertDimensionData("day_obs", {"instrument": "Cam", "id": 20250101})
    reg.insertDimensionData("detector", *[{"instrument": "Cam", "id": d, "full_name": f"d{d}"}
                                          for d in range(N_DETECTORS)])
    reg.insertDimensionData("visit", *[
        {"instrument": "Cam", "id": v, "physical_filter": "r_01", "day_obs": 20250101, "name": f"v{v}",
         "zenith_angle": rng.uniform(0.0, 60.0), "exposure_time": 30.0}
        for v in range(n_visits)
    ])
    data_ids = [{"instrument": "Cam", "visit": v, "detector": d}
                for v in range(n_visits) for d in range(N_DETECTORS)][:n]
    calexp = DatasetType("calexp", ["instrument", "visit", "detector"], "StructuredDataDict",
                         universe=butler.dimensions)
    reg.registerDatasetType(calexp)
    reg.registerRun("run")
    t0 = time.perf_counter()
    for i in range(0, len(data_ids), 10_000):
        reg.insertDatasets(calexp, data_ids[i:i + 10_000], "run")
    insert_s = time.perf_counter() - t0
    result: dict[str, Any] = {"datasets": n, "insert": {"seconds": round(insert_s, 3),
                                                        "datasets_per_s": round(n / insert_s)}}
    rng = random.Random(7)

    def q_datasets(i: int) -> None:
        v = rng.randrange(max(1, n_visits - 10))
        refs = butler.query_datasets("calexp", collections="run",
                                     where=f"instrument = 'Cam' AND visit IN ({v}..{v + 9}) AND detector = d",
                                     bind={"d": rng.randrange(min(N_DETECTORS, n))}, limit=None)
        if not refs:
            raise RuntimeError("nothing found")

    result["query_datasets"] = _time_many(q_datasets, repeat)

    def q_data_ids(i: int) -> None:
        list(reg.queryDataIds(["visit", "detector"],
                              where="instrument = 'Cam' AND visit.zenith_angle < z AND detector = d",
                              bind={"z": 10.0, "d": rng.randrange(min(N_DETECTORS, n))},
                              datasets="calexp", collections="run"))

    result["query_data_ids"] = _time_many(q_data_ids, repeat)
    runs = [f"layer{i}" for i in range(5)]
    for r in runs:
        reg.registerRun(r)
    reg.registerCollection("chain5", CollectionType.CHAINED)
    reg.setCollectionChain("chain5", runs)
    sample = list({tuple(sorted(d.items())): d for d in
                   (data_ids[rng.randrange(len(data_ids))] for _ in range(200))}.values())
    reg.insertDatasets(calexp, sample, runs[-1])

    def lookup(i: int) -> None:
        if butler.find_dataset("calexp", sample[i % len(sample)], collections="chain5") is None:
            raise RuntimeError("nothing found")

    result["chained_lookup"] = _time_many(lookup, repeat)
    code = ("import time; t0 = time.perf_counter()\nfrom lsst.daf.butler import Butler\n"
            f"b = Butler.from_config({root!r}); b.registry.getCollectionType('run')\n"
            "print(time.perf_counter() - t0)\n")
    cold = [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                 text=True).stdout.strip().splitlines()[-1]) for _ in range(3)]
    result["cold_start"] = {"p50_s": round(statistics.median(cold), 3), "max_s": round(max(cold), 3), "n": 3}
    result["backend"] = "sqlite" if pg_url is None else "postgresql"
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 100_000])
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--backends", nargs="+", default=["sqlite"], choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-dsn", default="postgresql://nightshift@127.0.0.1:15433/nightshift")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import lsst.daf.butler

    report: dict[str, Any] = {"benchmark": "registry-daf_butler",
                              "daf_butler": getattr(lsst.daf.butler, "__version__", "?"), "results": []}
    with tempfile.TemporaryDirectory(prefix="peerbench") as tmp:
        for backend in args.backends:
            for n in args.sizes:
                root = str(Path(tmp) / f"{backend}{n}")
                if backend == "sqlite":
                    report["results"].append(bench_one(root, n, args.repeat))
                    continue
                # a private database: daf_butler needs the btree_gist extension installed in it
                db = f"peerbench_{uuid.uuid4().hex[:8]}"
                _admin(args.pg_dsn, f'CREATE DATABASE "{db}"')
                url = args.pg_dsn.rsplit("/", 1)[0] + "/" + db
                try:
                    _admin(url, "CREATE EXTENSION IF NOT EXISTS btree_gist")
                    report["results"].append(bench_one(root, n, args.repeat, url, "bench"))
                finally:
                    _admin(args.pg_dsn, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    for r in report["results"]:
        print(f"daf_butler {r['backend']:<10} n={r['datasets']:>6}: insert {r['insert']['datasets_per_s']}/s | "
              f"query_datasets p50 {r['query_datasets']['p50_ms']} ms | "
              f"query_data_ids p50 {r['query_data_ids']['p50_ms']} ms | "
              f"chained(5) p50 {r['chained_lookup']['p50_ms']} ms | cold start {r['cold_start']['p50_s']} s")
    return 0


def _admin(dsn: str, sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(dsn.replace("postgresql://", "postgresql+psycopg2://", 1), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
