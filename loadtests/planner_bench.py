"""Planner benchmark: the time to plan one visit of the 189-detector LSSTCam-sim (it runs while the shutter is open).

A repository (SQLite in a temporary directory, or a fresh schema of the
PostgreSQL server at ``--pg-dsn``) gets what prompt processing finds in the
real one: the sky map the night uses (HEALPix order-3 tracts, 4**5 patches
each, restricted to the field's tracts), master bias and flats of every
detector certified in ``LSSTCam-sim/calib``, and an r-band template for every
patch under the field (tiny images: the planner reads the registry only).
Then it plans ``--visits`` nextVisits around the field (rotations and small
dithers vary) and records, per backend:

* ``plan``   -- :meth:`nightshift.ap.VisitPlanner.plan`: footprints, the field, three registry queries;
* ``events`` -- building and Avro-encoding the 189 ``quantum.planned`` events;
* ``geometry`` -- ``plan`` with nothing to resolve (no sky map, no calibrations): the camera geometry alone;

each as median and p95 milliseconds (the first, cold visit reported apart).

Prints JSON (also written to ``--out``) and a one-line summary.

Example::

    eval "$(nightshift dev env)"   # PG_DSN and its password for --backends postgresql
    .venv/bin/python loadtests/planner_bench.py --visits 30 --out loadtests/results/planner_bench.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.ap import PlannerConfig, VisitPlanner
from nightshift.butler import Butler, Exposure
from nightshift.events import NextVisit, encode
from nightshift.obs import lsstcam_like
from nightshift.obs.sim import TEMPLATE, Observation, certify_master_calibs, next_visit_payload
from nightshift.sky import Circle, HealpixSkyMap, pixel_ranges

DEFAULT_DSN = "postgresql://nightshift@127.0.0.1:15433/nightshift"
INSTRUMENT = "LSSTCam-sim"
RA, DEC = 150.0, 2.0
SKYMAP = "bench_healpix"


def _next_visit(i: int) -> NextVisit:
    rng = np.random.default_rng(i)
    obs = Observation(INSTRUMENT, 20261206, i + 1, "2026-12-07T03:00:00", physical_filter="r_57",
                      ra=RA + float(rng.uniform(-0.1, 0.1)), dec=DEC + float(rng.uniform(-0.1, 0.1)),
                      sky_angle=float((37.0 * i) % 360.0))
    payload = next_visit_payload(obs, list(range(189)))
    payload["issued_at"] = datetime.datetime.fromtimestamp(payload["issued_at"] / 1e6, datetime.UTC)
    return NextVisit(**payload)


def build_repo(butler: Butler) -> dict[str, int]:
    """Sky map, certified calibrations of 189 detectors, templates under the field; returns the counts."""
    field = Circle(RA, DEC, 2.3)  # the focal plane (1.75 deg radius) at every rotation and dither
    tracts = sorted({int(p) >> 10 for lo, hi in pixel_ranges(field, 8).tolist() for p in range(lo, hi)})
    sky = HealpixSkyMap(SKYMAP, tract_order=3, patch_levels=5, tracts=tuple(tracts))
    butler.registry.register_skymap(sky)
    calibs = certify_master_calibs(butler, INSTRUMENT, list(range(189)), ["r_57", "g_6"], begin="2026-11-01",
                                   end="2027-01-01", detector_size=16)
    butler.register_dataset_type(TEMPLATE)
    butler.registry.insert_dimension_records("band", [{"name": "r"}], skip_existing=True)
    tiny = Exposure(image=np.zeros((4, 4), np.float32))
    patches = [(t, c - (t << 10)) for lo, hi in pixel_ranges(field, 8).tolist() for c in range(lo, hi)
               for t in [c >> 10] if t in tracts]
    for t, p in patches:
        butler.put(tiny, TEMPLATE, {"skymap": SKYMAP, "tract": t, "patch": p, "band": "r"}, run="templates/sim")
    return {"calibrations": len(calibs), "templates": len(patches), "tracts": len(tracts)}


def _stats(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": round(1e3 * statistics.median(s), 2), "p95_ms": round(1e3 * s[int(0.95 * (len(s) - 1))], 2),
            "n": len(s)}


def bench_backend(repo: Path, registry_db: str | None, schema: str | None, visits: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    with Butler.create(repo, registry_db=registry_db, registry_schema=schema) as butler:
        counts = build_repo(butler)
    setup = time.perf_counter() - t0
    with Butler(repo) as butler:
        planner = VisitPlanner(butler.registry, PlannerConfig(skymap=SKYMAP), butler_repo=str(repo))
        bare = VisitPlanner(butler.registry, PlannerConfig(calib_dataset_types=()))
        planner.check()
        cold = time.perf_counter()
        first = planner.plan(_next_visit(0))
        cold = time.perf_counter() - cold
        plan_t, events_t, geometry_t, planned, missing = [], [], [], [], 0
        for i in range(1, visits + 1):
            nv = _next_visit(i)
            t = time.perf_counter()
            plan = planner.plan(nv)
            plan_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            encoded = [encode(e) for e in plan.events()]
            events_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            bare.plan(nv)
            geometry_t.append(time.perf_counter() - t)
            planned.append(len(encoded))
            missing += sum(bool(p.missing) for p in plan.detectors)
    return {"setup_s": round(setup, 1), **counts, "cold_plan_ms": round(1e3 * cold, 1),
            "first_visit_quanta": len(first.detectors), "plan": _stats(plan_t), "events": _stats(events_t),
            "geometry": _stats(geometry_t), "quanta_per_visit": statistics.median(planned),
            "quanta_missing_an_input": missing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=30)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-dsn", default=os.environ.get("PG_DSN", DEFAULT_DSN))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the planner warns about inputs it misses; none should be here
    report: dict[str, Any] = {"benchmark": "planner", "instrument": INSTRUMENT, "detectors": 189,
                              "python": sys.version.split()[0], "machine": platform.machine(),
                              "cpus": os.cpu_count(), "results": {}}
    _ = lsstcam_like(4096)  # the camera is built once per process, not per visit
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix="plannerbench") as tmp:
            schema = None if backend == "sqlite" else "planbench_" + uuid.uuid4().hex[:8]
            try:
                report["results"][backend] = bench_backend(
                    Path(tmp) / "repo", None if backend == "sqlite" else args.pg_dsn, schema, args.visits)
            finally:
                if schema is not None:
                    _drop_schema(args.pg_dsn, schema)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    parts = [f"{b}: plan p50 {r['plan']['p50_ms']} ms p95 {r['plan']['p95_ms']} ms (geometry {r['geometry']['p50_ms']}"
             f" ms, events {r['events']['p50_ms']} ms), {r['quanta_per_visit']:.0f} quanta"
             for b, r in report["results"].items()]
    print(f"planner_bench: one LSSTCam-sim visit (189 detectors) -- {'; '.join(parts)}")
    return 0


def _drop_schema(dsn: str, schema: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1)
                              if dsn.startswith("postgresql://") else dsn)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
