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

With ``--exec-io-size VxD`` (implied as 2x189 by ``--peer-python``), also the
no-op graph of that size run in-process through a real butler (reads ``raw``,
writes outputs, metadata and provenance): ``inprocess_butler``.

With ``--peer-python PATH`` (the python of a separate environment holding
``lsst-pipe-base`` + ``lsst-ctrl-mpexec``, never a nightshift dependency; see
``pipeline_bench_peer.py`` for how to create it), the same sizes are then run
on Rubin's framework by ``pipeline_bench_peer.py``, and ``comparison`` holds
both sides and the ratios peer / nightshift (build time, memory, file size,
save/load, per-quantum overhead; > 1: nightshift is faster or smaller), plus
the load average over the run. The multi-process comparison uses a small graph
(``--mp-size``, default 1x20) run cold on both sides (``multiprocess_small``):
pipe_base starts one process per quantum, so 9,501 quanta would take hours.

Prints one JSON document, then one summary line.

Usage::

    .venv/bin/python loadtests/pipeline_bench.py [--sizes 50x189 200x189 1000x189] [--processes 2] [--out r.json]
        [--peer-python .cache/pipe-peer-venv/bin/python] [--exec-io-size 2x189] [--peer-budget-s 300]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _fill_registry(reg: Any, visits: int, detectors: int) -> None:
    from nightshift.butler import DatasetType

    reg.insert_dimension_records("instrument", [{"name": "Cam", "visit_max": 10**6, "detector_max": 1000}])
    reg.insert_dimension_records("band", [{"name": "r"}])
    reg.insert_dimension_records("physical_filter", [{"instrument": "Cam", "name": "r_01", "band": "r"}])
    reg.insert_dimension_records("day_obs", [{"instrument": "Cam", "id": 20260101}])
    reg.insert_dimension_records("detector", [{"instrument": "Cam", "id": d} for d in range(detectors)])
    reg.insert_dimension_records("visit", [{"instrument": "Cam", "id": v, "physical_filter": "r_01",
                                            "day_obs": 20260101} for v in range(visits)])
    reg.register_dataset_type(DatasetType("raw", ["instrument", "visit", "detector"], "NumpyArray"))
    reg.register_run("raw/all")


def _make_registry(root: Path, visits: int, detectors: int) -> Any:
    from nightshift.butler.registry import Registry

    reg = Registry.create(root)
    _fill_registry(reg, visits, detectors)
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


def measure_io_exec(visits: int, detectors: int) -> dict[str, Any]:
    """Run in a child process: no-op graph executed in-process through a real butler (reads raw, writes outputs).

    Setup (repository, one tiny ``raw`` file per (visit, detector), pre-flight) is not timed;
    the run's own initialization (dataset types, config snapshots) is.
    """
    import numpy as np

    from nightshift.butler._butler import Butler
    from nightshift.pipe import InProcessExecutor, Pipeline, build_quantum_graph
    from nightshift.pipe.examples import NOOP_PIPELINE

    with tempfile.TemporaryDirectory() as tmp:
        butler = Butler.create(Path(tmp) / "repo")
        _fill_registry(butler.registry, visits, detectors)
        raw = np.zeros(1, dtype=np.float32)
        for v in range(visits):
            for d in range(detectors):
                butler.put(raw, "raw", {"instrument": "Cam", "visit": v, "detector": d}, run="raw/all")
        graph = build_quantum_graph(butler.registry, Pipeline.from_yaml(NOOP_PIPELINE), collections=["raw/all"],
                                    run="bench/run")
        butler.close()
        n = len(graph)
        t = time.perf_counter()
        rep = InProcessExecutor(str(butler.root)).run(graph)
        wall = time.perf_counter() - t
        if not rep.ok:
            raise RuntimeError(f"no-op run with butler failed: {rep.counts()}")
    return {"visits": visits, "detectors": detectors, "quanta": n, "wall_s": round(wall, 3),
            "quanta_per_s": round(n / wall, 1), "ms_per_quantum": round(1000 * wall / n, 3)}


def measure_mp_small(visits: int, detectors: int, processes: int) -> dict[str, Any]:
    """Run in a child process: a small no-op graph multi-process, cold (pool start-up included), no butler I/O.

    The like-for-like of the peer's multi-process run, which starts one process per quantum.
    """
    from nightshift.pipe import MultiProcessExecutor, Pipeline, build_quantum_graph
    from nightshift.pipe.examples import NOOP_PIPELINE

    with tempfile.TemporaryDirectory() as tmp:
        reg = _make_registry(Path(tmp) / "repo", visits, detectors)
        graph = build_quantum_graph(reg, Pipeline.from_yaml(NOOP_PIPELINE), collections=["raw/all"], run="bench/run")
        reg.close()
        n = len(graph)
        t = time.perf_counter()
        rep = MultiProcessExecutor(None, processes=processes).run(graph)
        wall = time.perf_counter() - t
        if not rep.ok:
            raise RuntimeError(f"no-op multiprocess run failed: {rep.counts()}")
    return {"visits": visits, "detectors": detectors, "processes": processes, "quanta": n, "wall_s": round(wall, 3),
            "quanta_per_s": round(n / wall, 1), "ms_per_quantum": round(1000 * wall / n, 3),
            "ms_per_quantum_per_worker": round(1000 * wall * processes / n, 3)}


def _child(conn: Any, fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    try:
        conn.send(fn(*args))
    except BaseException as exc:  # noqa: BLE001 - report to the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh (spawned) process, so its peak memory is its own."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    result: dict[str, Any] = parent.recv()
    proc.join()
    return result


def run_peer(python: str, sizes: list[str], processes: int, exec_io_size: str, mp_size: str,
             budget_s: float) -> dict[str, Any]:
    """Run ``pipeline_bench_peer.py`` (lsst-pipe-base) with the peer environment's interpreter."""
    script = Path(__file__).with_name("pipeline_bench_peer.py")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [python, str(script), "--sizes", *sizes, "--processes", str(processes), "--exec-io-size", exec_io_size,
               "--mp-size", mp_size, "--budget-s", str(budget_s), "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            return {"error": f"peer exited {proc.returncode}", "stderr_tail": proc.stderr[-2000:]}
        doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def _ratio(peer: dict[str, Any] | None, ours: dict[str, Any] | None, key: str) -> float | None:
    """peer / nightshift for ``key`` (None when either side lacks it)."""
    if not peer or not ours or peer.get(key) is None or not ours.get(key):
        return None
    return round(peer[key] / ours[key], 2)


def compare(ours: list[dict[str, Any]], ours_io: dict[str, Any] | None, ours_mp: dict[str, Any] | None,
            peer: dict[str, Any]) -> dict[str, Any]:
    """Side-by-side rows and ratios (peer / nightshift: > 1 means nightshift is faster or smaller)."""
    by_size = {(r["visits"], r["detectors"]): r for r in peer.get("results", [])}
    rows = []
    for r in ours:
        p = by_size.get((r["visits"], r["detectors"]))
        row: dict[str, Any] = {"size": f"{r['visits']}x{r['detectors']}", "quanta": r["quanta"]}
        if p is None or "build_s" not in p:
            row["peer"] = (p or {}).get("skipped") or (p or {}).get("error") or "not run"
        else:
            row["peer_quanta"] = p["quanta"]
            for key in ("build_s", "peak_rss_mb", "file_bytes", "save_s", "load_s", "materialize_s"):
                row[key] = {"nightshift": r[key], "peer": p[key], "ratio": _ratio(p, r, key)}
            ns_lm, p_lm = r["load_s"] + r["materialize_s"], p["load_s"] + p["materialize_s"]
            row["load_plus_materialize_s"] = {"nightshift": round(ns_lm, 3), "peer": round(p_lm, 3),
                                              "ratio": round(p_lm / ns_lm, 2) if ns_lm else None}
        rows.append(row)
    first_ns, first_peer = ours[0], (peer.get("results") or [{}])[0]
    execution = {
        "inprocess_no_io": {"nightshift": first_ns.get("inprocess"), "peer": first_peer.get("inprocess"),
                            "ratio_ms_per_quantum": _ratio(first_peer.get("inprocess"), first_ns.get("inprocess"),
                                                           "ms_per_quantum")},
        "multiprocess_no_io": {"nightshift": ours_mp, "nightshift_first_size": first_ns.get("multiprocess"),
                               "peer": peer.get("multiprocess"),
                               "ratio_ms_per_quantum": _ratio(peer.get("multiprocess"), ours_mp, "ms_per_quantum")},
        "inprocess_butler_io": {"nightshift": ours_io, "peer": peer.get("inprocess_butler"),
                                "ratio_ms_per_quantum": _ratio(peer.get("inprocess_butler"), ours_io,
                                                               "ms_per_quantum")},
    }
    return {"sizes": rows, "execution": execution}


def _summary(doc: dict[str, Any]) -> str:
    results = doc["results"]
    first = results[0]
    parts = [f"{r['visits']}x{r['detectors']}: {r['quanta']} quanta built in {r['build_s']} s "
             f"(+{r['peak_rss_mb']} MB), file {r['file_bytes'] / 1e6:.1f} MB save {r['save_s']} s load {r['load_s']} s"
             for r in results]
    if "inprocess" in first:
        parts.append(f"no-op in-process {first['inprocess']['ms_per_quantum']} ms/quantum, "
                     f"multi-process({first['multiprocess']['processes']}) "
                     f"{first['multiprocess']['ms_per_quantum']} ms/quantum")
    cmp = doc.get("comparison")
    if cmp:
        peer = [f"{row['size']} build {row['build_s']['ratio']}x memory {row['peak_rss_mb']['ratio']}x"
                if "build_s" in row else f"{row['size']} {row['peer']}" for row in cmp["sizes"]]
        ex = cmp["execution"]
        peer.append("per-quantum overhead in-process {}x, multi-process {}x, with butler I/O {}x".format(
            ex["inprocess_no_io"]["ratio_ms_per_quantum"], ex["multiprocess_no_io"]["ratio_ms_per_quantum"],
            ex["inprocess_butler_io"]["ratio_ms_per_quantum"]))
        parts.append("peer/nightshift: " + ", ".join(peer))
    elif "peer" in doc:
        parts.append(f"peer: {doc['peer'].get('error')}")
    return "pipeline_bench: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["50x189", "200x189"])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--peer-python", help="python of an environment with lsst-pipe-base + lsst-ctrl-mpexec: "
                                              "also run pipeline_bench_peer.py and compare")
    parser.add_argument("--exec-io-size", help="also run this graph (VxD) in-process through a real butler "
                                               "(default with --peer-python: 2x189)")
    parser.add_argument("--mp-size", default="1x20",
                        help="with --peer-python: graph run multi-process cold on both sides (the peer starts one "
                             "process per quantum)")
    parser.add_argument("--peer-budget-s", type=float, default=300.0,
                        help="the peer skips sizes predicted to build slower than this")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    results = []
    for i, size in enumerate(args.sizes):
        result = _in_child(measure_size, *_parse(size), i == 0, args.processes)
        results.append(result)
        if "error" in result:
            print(json.dumps(results, indent=2))
            return 1
    doc: dict[str, Any] = {"benchmark": "pipeline", "python": sys.version.split()[0], "results": results}
    if len(results) > 1:
        a, b = results[0], results[-1]
        doc["growth"] = {"quanta_ratio": round(b["quanta"] / a["quanta"], 2),
                         "build_time_ratio": round(b["build_s"] / a["build_s"], 2)}
    exec_io_size = args.exec_io_size or ("2x189" if args.peer_python else None)
    ours_io = _in_child(measure_io_exec, *_parse(exec_io_size)) if exec_io_size else None
    if ours_io is not None:
        doc["inprocess_butler"] = ours_io
    if args.peer_python:
        doc["multiprocess_small"] = _in_child(measure_mp_small, *_parse(args.mp_size), args.processes)
        doc["peer"] = run_peer(args.peer_python, args.sizes, args.processes, exec_io_size or "2x189", args.mp_size,
                               args.peer_budget_s)
        if "error" not in doc["peer"]:
            doc["comparison"] = compare(results, ours_io, doc["multiprocess_small"], doc["peer"])
    if args.peer_python or exec_io_size:
        doc["loadavg"] = {"start": [round(x, 2) for x in load_start],
                          "end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    print(_summary(doc))
    return 0 if "error" not in doc.get("peer", {}) else 1


def _parse(size: str) -> tuple[int, int]:
    v, d = (int(x) for x in size.lower().split("x"))
    return v, d


if __name__ == "__main__":
    raise SystemExit(main())
