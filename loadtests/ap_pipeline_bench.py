"""The Alert Production pipeline YAML over a simulated night: ≥ 20 visits into the APDB and the butler.

Builds a repository with ``--visits`` visits of ``--detectors`` detectors
(``tests/ap/ap_repo.py``: Gaussian-PSF stars, cosmic rays, a transient that
is on in every visit, a template, bias, flat, reference catalog, visit
regions), creates a fresh APDB schema, then runs ``nightshift.ap.AP_PIPELINE``
one visit at a time (one quantum graph per visit, as Alert Production does:
each visit's preload sees the previous visits' stores) with the chosen
executor. Reports per visit the wall time and the APDB rows added, and at the
end the APDB totals and the transient's DiaObject (one object, one source per
visit). The schema is dropped afterwards unless ``--keep``. Prints one JSON
document, then one summary line.

Needs the PostgreSQL of ``nightshift dev env`` (``PG_DSN`` or ``NIGHTSHIFT_APDB_DSN`` in the environment)::

    eval "$(nightshift dev env)"
    .venv/bin/python loadtests/ap_pipeline_bench.py --visits 20 --detectors 2 --size 512 \
        --executor multiprocess --processes 2 --out loadtests/results/ap_pipeline_bench-2026-12-06.json
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ap"))

from ap_repo import INSTRUMENT, ApRepoSpec, make_ap_repo, transient_xy  # noqa: E402

from nightshift.ap import AP_PIPELINE  # noqa: E402
from nightshift.apdb import Apdb, ApdbSettings, Circle  # noqa: E402
from nightshift.butler._butler import Butler  # noqa: E402
from nightshift.pipe import (  # noqa: E402
    DaskExecutor,
    Executor,
    InProcessExecutor,
    MultiProcessExecutor,
    Pipeline,
    build_quantum_graph,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--visits", type=int, default=20)
    p.add_argument("--detectors", type=int, default=2)
    p.add_argument("--size", type=int, default=512, help="detector side, pixels")
    p.add_argument("--executor", choices=["inprocess", "multiprocess", "dask"], default="multiprocess")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--out", type=Path)
    p.add_argument("--keep", action="store_true", help="keep the APDB schema and the repository")
    args = p.parse_args()
    if "NIGHTSHIFT_APDB_DSN" not in os.environ and "PG_DSN" not in os.environ:
        sys.exit('no PG_DSN: run  eval "$(nightshift dev env)"  first')
    schema = f"apdb_apbench_{uuid.uuid4().hex[:8]}"
    settings = ApdbSettings(schema_name=schema, pool_min_size=0)  # type: ignore[call-arg]
    with Apdb(settings) as apdb:
        apdb.create(drop=True)
    tmp = Path(tempfile.mkdtemp(prefix="ap_pipeline_bench_"))
    spec = ApRepoSpec(visits=tuple(range(1, args.visits + 1)), detectors=tuple(range(1, args.detectors + 1)),
                      size=args.size, amps=(2, 2) if args.size <= 512 else (4, 2))
    t0 = time.perf_counter()
    butler = make_ap_repo(tmp / "repo", spec)
    sim_s = time.perf_counter() - t0
    pipe = Pipeline.from_yaml(AP_PIPELINE)
    for key, value in spec.isr_config().items():
        pipe.add_config_override("isr", key, value)
    pipe.add_config_override("preload", "apdb_schema", schema)
    pipe.add_config_override("store", "apdb_schema", schema)
    client = cluster = None
    ex: Executor
    if args.executor == "inprocess":
        ex = InProcessExecutor(butler.root)
    elif args.executor == "multiprocess":
        ex = MultiProcessExecutor(butler.root, processes=args.processes)
    else:
        import distributed

        cluster = distributed.LocalCluster(n_workers=args.processes, processes=True, threads_per_worker=1,
                                           dashboard_address=":0")
        client = distributed.Client(cluster)
        ex = DaskExecutor(butler.root, client=client)
    per_visit: list[dict[str, Any]] = []
    failed = 0
    try:
        for v in spec.visits:
            t = time.perf_counter()
            graph = build_quantum_graph(butler.registry, pipe, collections=["raw/all", "ap/inputs"],
                                        run=f"ap/run/v{v}", where=f"visit = {v}")
            pre = time.perf_counter() - t
            report = ex.run(graph)
            failed += report.counts()["failed"] + report.counts()["blocked"]
            with Butler(butler.root, collections=[f"ap/run/v{v}"]) as out:
                added = [out.get("apdb_store", {"instrument": INSTRUMENT, "visit": v, "detector": d})["added"]
                         for d in spec.detectors]
            per_visit.append({"visit": v, "preflight_s": round(pre, 3), "wall_s": round(time.perf_counter() - t, 3),
                              "quanta": len(graph), "apdb_added": {k: sum(a[k] for a in added) for k in added[0]}})
            print(f"visit {v}: {per_visit[-1]}", file=sys.stderr)
        with Apdb(settings) as apdb:
            objs = apdb.get_dia_objects(Circle(150.0, 2.0, 1.0))
            ids = objs["diaObjectId"].to_numpy()
            sources = apdb.get_dia_sources(ids, 0.0)
            forced = apdb.get_dia_forced_sources(ids, 0.0)
        with Butler(butler.root, collections=["ap/run/v1"]) as out:
            src = out.get("dia_source", {"instrument": INSTRUMENT, "visit": 1, "detector": 1})
        tx, ty = transient_xy(spec)
        j = int(np.argmin(np.hypot(src["x"].to_numpy() - tx, src["y"].to_numpy() - ty)))
        oid = src["diaObjectId"][j].as_py()
        n_of_transient = int(objs["nDiaSources"].to_numpy()[list(ids).index(oid)]) if oid in ids else 0
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        butler.close()
        if not args.keep:
            with Apdb(settings) as apdb:
                apdb.drop()
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    walls = [r["wall_s"] for r in per_visit]
    result = {
        "benchmark": "ap_pipeline_bench", "host": platform.node(), "load_avg": os.getloadavg(),
        "cpu_count": os.cpu_count(), "executor": args.executor, "processes": args.processes,
        "visits": args.visits, "detectors": args.detectors, "size": args.size, "simulate_s": round(sim_s, 1),
        "wall_per_visit_median_s": round(statistics.median(walls), 2), "wall_total_s": round(sum(walls), 1),
        "failed_or_blocked_quanta": failed,
        "apdb": {"DiaObject": int(objs.num_rows), "DiaSource": int(sources.num_rows),
                 "DiaForcedSource": int(forced.num_rows)},
        "transient_object_nDiaSources": n_of_transient, "per_visit": per_visit,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"ap_pipeline_bench: {args.visits} visits x {args.detectors} detectors ({args.size} px, {args.executor}"
          f" x{args.processes}): median {result['wall_per_visit_median_s']} s/visit, {failed} failed; APDB "
          f"{result['apdb']}; transient object has {n_of_transient} sources")


if __name__ == "__main__":
    main()
