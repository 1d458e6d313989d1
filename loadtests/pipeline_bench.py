"""Pipeline framework benchmark: pre-flight, graph files, no-op execution.

For each size V x D (visits x detectors; default 50x189 and 200x189) a fresh
SQLite registry gets V*D ``raw`` datasets, then the three-step no-op
pipeline (per (visit, detector) -> per visit -> one global quantum,
``nightshift/pipe/examples/noop_pipeline.yaml``) is pre-flighted. Measured,
each size in its own process so peak memory is that size's alone:

- ``build_s``: pre-flight time (registry queries + graph), ``quanta``;
- ``peak_rss_mb``: peak resident memory of the process minus the resident
  memory just before pre-flight (the graph and the query results);
- ``save_s``, ``load_s``, ``file_bytes``: graph serialization (``load_s`` reads
  the file and the dependency structure; refs are built lazily, on access);
- ``materialize_s``: building every quantum's refs of the loaded graph;
- for the first size, no-op execution without butler I/O (the framework's
  own overhead: scheduling, task construction, logging context, reports):
  ``inprocess`` and ``multiprocess`` (persistent pool of 2 workers) quanta/s
  and ms per quantum (wall / quanta), plus the pool start-up time.

Prints one JSON document, then one summary line.

Usage::

    .venv/bin/python loadtests/pipeline_bench.py [--sizes 50x189 200x189 1000x189] [--processes 2] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _make_registry(root: Path, visits: int, detectors: int) -> Any:
    from nightshift.butler import DatasetType
    from nightshift.butler.registry import Registry

    reg = Registry.create(root)
    reg.insert_dimension_records("instrument", [{"name": "Cam", "visit_max": 10**6, "detector_max": 1000}])
    reg.insert_dimension_records("band", [{"name": "r"}])
    reg.insert_dimension_records("physical_filter", [{"instrument": "Cam", "name": "r_01", "band": "r"}])
    reg.insert_dimension_records("day_obs", [{"instrument": "Cam", "id": 20260101}])
    reg.insert_dimension_records("detector", [{"instrument": "Cam", "id": d} for d in range(detectors)])
    reg.insert_dimension_records("visit", [{"instrument": "Cam", "id": v, "physical_filter": "r_01",
                                            "day_obs": 20260101} for v in range(visits)])
    reg.register_dataset_type(DatasetType("raw", ["instrument", "visit", "detector"], "NumpyArray"))
    reg.register_run("raw/all")
    reg.insert_datasets("raw", ({"instrument": "Cam", "visit": v, "detector": d}
                                for v in range(visits) for d in range(detectors)), "raw/all")
    return reg


def measure_size(visits: int, detectors: int, execute: bool, processes: int) -> dict[str, Any]:
    """Run in a child process: registry setup, pre-flight, serialization, optional no-op execution."""
    from nightshift.pipe import InProcessExecutor, MultiProcessExecutor, Pipeline, QuantumGraph, build_quantum_graph
    from nightshift.pipe.examples import NOOP_PIPELINE

    out: dict[str, Any] = {"visits": visits, "detectors": detectors}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        reg = _make_registry(Path(tmp) / "repo", visits, detectors)
        out["registry_setup_s"] = round(time.perf_counter() - t, 2)
        pipe = Pipeline.from_yaml(NOOP_PIPELINE)
        rss0 = _rss_mb()
        t = time.perf_counter()
        graph = build_quantum_graph(reg, pipe, collections=["raw/all"], run="bench/run")
        out["build_s"] = round(time.perf_counter() - t, 3)
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0, 1)
        out["quanta"] = len(graph)
        out["counts"] = graph.counts()
        path = Path(tmp) / "g.qg"
        t = time.perf_counter()
        out["file_bytes"] = graph.save(path)
        out["save_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        loaded = QuantumGraph.load(path)
        out["load_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        n_refs = sum(len(q.input_refs()) + len(q.output_refs()) for q in loaded.quanta)
        out["materialize_s"] = round(time.perf_counter() - t, 3)
        if len(loaded) != len(graph) or n_refs != sum(len(q.input_refs()) + len(q.output_refs()) for q in graph.quanta):
            raise RuntimeError("graph changed through serialization")
        reg.close()
        if execute:
            n = len(graph)
            t = time.perf_counter()
            rep = InProcessExecutor(None).run(graph)
            wall = time.perf_counter() - t
            if not rep.ok:
                raise RuntimeError(f"no-op run failed: {rep.counts()}")
            out["inprocess"] = {"quanta": n, "wall_s": round(wall, 3), "quanta_per_s": round(n / wall, 1),
                                "ms_per_quantum": round(1000 * wall / n, 3)}
            tiny = graph.subset([0])
            t = time.perf_counter()
            MultiProcessExecutor(None, processes=processes).run(tiny)
            startup = time.perf_counter() - t
            t = time.perf_counter()
            rep = MultiProcessExecutor(None, processes=processes).run(graph, graph_path=path)
            wall = time.perf_counter() - t
            if not rep.ok:
                raise RuntimeError(f"no-op multiprocess run failed: {rep.counts()}")
            out["multiprocess"] = {
                "processes": processes, "quanta": n, "wall_s": round(wall, 3), "pool_startup_s": round(startup, 3),
                "quanta_per_s": round(n / wall, 1), "ms_per_quantum": round(1000 * wall / n, 3),
                "ms_per_quantum_per_worker": round(1000 * wall * processes / n, 3),
            }
    return out


def _child(conn: Any, args: tuple[int, int, bool, int]) -> None:
    try:
        conn.send(measure_size(*args))
    except BaseException as exc:  # noqa: BLE001 - report to the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["50x189", "200x189"])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    results = []
    for i, size in enumerate(args.sizes):
        v, d = (int(x) for x in size.lower().split("x"))
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(child, (v, d, i == 0, args.processes)))
        proc.start()
        result = parent.recv()
        proc.join()
        results.append(result)
        if "error" in result:
            print(json.dumps(results, indent=2))
            return 1
    doc = {"benchmark": "pipeline", "python": sys.version.split()[0], "results": results}
    if len(results) > 1:
        a, b = results[0], results[-1]
        doc["growth"] = {"quanta_ratio": round(b["quanta"] / a["quanta"], 2),
                         "build_time_ratio": round(b["build_s"] / a["build_s"], 2)}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    first = results[0]
    parts = [f"{r['visits']}x{r['detectors']}: {r['quanta']} quanta built in {r['build_s']} s "
             f"(+{r['peak_rss_mb']} MB), file {r['file_bytes'] / 1e6:.1f} MB save {r['save_s']} s load {r['load_s']} s"
             for r in results]
    if "inprocess" in first:
        parts.append(f"no-op in-process {first['inprocess']['ms_per_quantum']} ms/quantum, "
                     f"multi-process({first['multiprocess']['processes']}) "
                     f"{first['multiprocess']['ms_per_quantum']} ms/quantum")
    print("pipeline_bench: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
