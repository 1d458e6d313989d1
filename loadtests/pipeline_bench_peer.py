"""The pipeline benchmark against Rubin's ``lsst-pipe-base`` / ``lsst-ctrl-mpexec``, for comparison.

Run with a separate peer environment (never a nightshift dependency)::

    /root/.pyenv/versions/3.11.7/bin/python -m venv .cache/pipe-peer-venv
    .cache/pipe-peer-venv/bin/pip install --upgrade pip
    .cache/pipe-peer-venv/bin/pip install lsst-pipe-base lsst-ctrl-mpexec
    .cache/pipe-peer-venv/bin/python loadtests/pipeline_bench_peer.py --sizes 50x189 200x189

(``loadtests/pipeline_bench.py --peer-python .cache/pipe-peer-venv/bin/python`` runs it too.)

Same work as ``pipeline_bench.py``: a daf_butler repo (SQLite + POSIX) with V*D ``raw``
datasets (registry entries only, like nightshift's; real files only where execution
reads them), the three-step no-op pipeline (three PipelineTasks defined here: per
(instrument, visit, detector) reading ``raw``; per (instrument, visit) reading step-1
outputs; per instrument reading step-2 outputs), built with
``AllDimensionsQuantumGraphBuilder(...).finish()`` + ``assemble()`` as ``pipetask qgraph``
does (no datastore records, its default), written to a ``.qg`` file and read back. Setup
runs in its own process, and each build in a fresh one, so ``peak_rss_mb`` (peak RSS of
the process minus RSS just before the build) is that build's alone. Measured:

- ``build_s`` (= ``finish_s`` + ``assemble_s``), ``peak_rss_mb``, ``quanta``, ``counts``;
- ``save_s``, ``file_bytes``; ``load_s`` (open + thin graph: quanta, edges, data IDs) and
  ``materialize_s`` (read every quantum's datasets + dimension data, build executable
  ``Quantum`` objects);
- no-op execution, framework only (``inprocess``, ``multiprocess``): pipe_base's
  ``MPGraphExecutor`` + ``SingleQuantumExecutor`` over a do-nothing ``LimitedButler``
  (``get`` returns None, ``put`` discards): the analogue of nightshift's butler-less run;
- no-op execution through a real butler (``inprocess_butler``): what ``pipetask run``
  does (reads ``raw``, writes outputs, metadata and log datasets), on a smaller graph.

``MPGraphExecutor`` with ``num_proc > 1`` spawns one process per quantum, so the
multi-process run uses a small graph (``--mp-size``). Sizes predicted to exceed
``--budget-s`` (extrapolated from the previous size) are skipped and say so.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lsst.pipe.base.connectionTypes as cT
from lsst.daf.butler import Butler, ButlerMetrics, DatasetRef, DatasetType, DimensionUniverse, LimitedButler
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct

RAW_RUN = "raw/all"
OUT_RUN = "bench/run"


# ---------------------------------------------------------------- the three no-op tasks
class NoopDetectorConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    raw = cT.Input("raw", storageClass="StructuredDataDict", dimensions=("instrument", "visit", "detector"))
    out = cT.Output("noop_detector", storageClass="StructuredDataDict",
                    dimensions=("instrument", "visit", "detector"))


class NoopDetectorConfig(PipelineTaskConfig, pipelineConnections=NoopDetectorConnections):
    pass


class NoopDetectorTask(PipelineTask):
    """Does nothing per (visit, detector)."""

    ConfigClass = NoopDetectorConfig
    _DefaultName = "noop_detector"

    def run(self, raw: Any) -> Struct:
        return Struct(out={})


class NoopVisitConnections(PipelineTaskConnections, dimensions=("instrument", "visit")):
    upstream = cT.Input("noop_detector", storageClass="StructuredDataDict",
                      dimensions=("instrument", "visit", "detector"), multiple=True)
    out = cT.Output("noop_visit", storageClass="StructuredDataDict", dimensions=("instrument", "visit"))


class NoopVisitConfig(PipelineTaskConfig, pipelineConnections=NoopVisitConnections):
    pass


class NoopVisitTask(PipelineTask):
    """Does nothing per visit."""

    ConfigClass = NoopVisitConfig
    _DefaultName = "noop_visit"

    def run(self, upstream: list[Any]) -> Struct:
        return Struct(out={})


class NoopGlobalConnections(PipelineTaskConnections, dimensions=("instrument",)):
    upstream = cT.Input("noop_visit", storageClass="StructuredDataDict", dimensions=("instrument", "visit"),
                      multiple=True)
    out = cT.Output("noop_global", storageClass="StructuredDataDict", dimensions=("instrument",))


class NoopGlobalConfig(PipelineTaskConfig, pipelineConnections=NoopGlobalConnections):
    pass


class NoopGlobalTask(PipelineTask):
    """Does nothing, once."""

    ConfigClass = NoopGlobalConfig
    _DefaultName = "noop_global"

    def run(self, upstream: list[Any]) -> Struct:
        return Struct(out={})


def pipeline_graph() -> Any:
    """The three-step pipeline as a ``PipelineGraph``."""
    from lsst.pipe.base.pipeline_graph import PipelineGraph

    graph = PipelineGraph(description="three no-op steps")
    graph.add_task("noop_detector", NoopDetectorTask, NoopDetectorConfig())
    graph.add_task("noop_visit", NoopVisitTask, NoopVisitConfig())
    graph.add_task("noop_global", NoopGlobalTask, NoopGlobalConfig())
    return graph


# ---------------------------------------------------------------- a butler that stores nothing
class NullButler(LimitedButler):
    """A ``LimitedButler`` without storage: ``get`` returns None, ``put`` discards.

    Parameters
    ----------
    universe : DimensionUniverse
    output_run : str
        Datasets of this run exist only once put; all others (the inputs) exist.
    """

    def __init__(self, universe: DimensionUniverse, output_run: str) -> None:
        self._universe = universe
        self._output_run = output_run
        self._put: set[Any] = set()
        self._metrics = ButlerMetrics()

    def isWriteable(self) -> bool:  # noqa: N802 - daf_butler's name
        return True

    def put(self, obj: Any, ref: DatasetRef, /, *, provenance: Any = None) -> DatasetRef:
        self._put.add(ref.id)
        return ref

    def get(self, ref: DatasetRef, /, *, parameters: Any = None, storageClass: Any = None) -> Any:  # noqa: N803
        return None

    def stored_many(self, refs: Iterable[DatasetRef]) -> dict[DatasetRef, bool]:
        return {r: r.run != self._output_run or r.id in self._put for r in refs}

    def pruneDatasets(self, refs: Iterable[DatasetRef], **kwargs: Any) -> None:  # noqa: N802
        pass

    @property
    def dimensions(self) -> DimensionUniverse:
        return self._universe

    @contextmanager
    def record_metrics(self, metrics: ButlerMetrics | None = None) -> Iterator[ButlerMetrics]:
        yield metrics if metrics is not None else ButlerMetrics()


class NullButlerFactory:
    """Picklable ``limited_butler_factory`` for ``SingleQuantumExecutor``.

    The NullButler outlives one quantum (the pipe_base executor closes it after
    each; ``close`` is a no-op), so outputs put by earlier quanta "exist".
    """

    def __init__(self, universe: DimensionUniverse, output_run: str) -> None:
        self.universe, self.output_run = universe, output_run
        self._butler: NullButler | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"universe": self.universe, "output_run": self.output_run, "_butler": None}

    def __call__(self, quantum: Any) -> NullButler:
        if self._butler is None:
            self._butler = NullButler(self.universe, self.output_run)
        return self._butler


# ---------------------------------------------------------------- measurements (worker modes)
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup_repo(root: str, visits: int, detectors: int, files: bool) -> dict[str, Any]:
    """Create the repo with V*D ``raw`` datasets (real tiny files only if ``files``)."""
    t = time.perf_counter()
    Butler.makeRepo(root)
    butler = Butler.from_config(root, writeable=True)
    reg = butler.registry
    reg.insertDimensionData("instrument", {"name": "Cam", "visit_max": 10**6, "exposure_max": 10**6,
                                           "detector_max": 1000, "class_name": "x.Cam"})
    reg.insertDimensionData("physical_filter", {"instrument": "Cam", "name": "r_01", "band": "r"})
    reg.insertDimensionData("day_obs", {"instrument": "Cam", "id": 20260101})
    reg.insertDimensionData("detector", *[{"instrument": "Cam", "id": d, "full_name": f"d{d}"}
                                          for d in range(detectors)])
    reg.insertDimensionData("visit", *[{"instrument": "Cam", "id": v, "physical_filter": "r_01",
                                        "day_obs": 20260101, "name": f"v{v}"} for v in range(visits)])
    # pipe_base's builder attaches every (visit, detector) element's record: real repos have these.
    reg.insertDimensionData("visit_detector_region", *[{"instrument": "Cam", "visit": v, "detector": d}
                                                        for v in range(visits) for d in range(detectors)])
    raw = DatasetType("raw", ["instrument", "visit", "detector"], "StructuredDataDict", universe=butler.dimensions)
    reg.registerDatasetType(raw)
    reg.registerRun(RAW_RUN)
    data_ids = [{"instrument": "Cam", "visit": v, "detector": d} for v in range(visits) for d in range(detectors)]
    if files:
        for data_id in data_ids:
            butler.put({"v": 0}, raw, data_id, run=RAW_RUN)
    else:
        reg.insertDatasets(raw, data_ids, run=RAW_RUN)
    butler.close()
    return {"setup_s": round(time.perf_counter() - t, 2), "raw_files": files}


def _executor(num_proc: int, butler: Butler | None, universe: DimensionUniverse) -> Any:
    from lsst.pipe.base.mp_graph_executor import MPGraphExecutor
    from lsst.pipe.base.single_quantum_executor import SingleQuantumExecutor

    if butler is None:
        qe = SingleQuantumExecutor(butler=None, limited_butler_factory=NullButlerFactory(universe, OUT_RUN))
    else:
        qe = SingleQuantumExecutor(butler=butler)
    return MPGraphExecutor(num_proc=num_proc, timeout=3600.0, quantum_executor=qe)


def _run(qg: Any, num_proc: int, butler: Butler | None) -> dict[str, Any]:
    from lsst.pipe.base.quantum_reports import ExecutionStatus

    executor = _executor(num_proc, butler, qg.pipeline_graph.universe)
    n = len(qg)
    t = time.perf_counter()
    executor.execute(qg)
    wall = time.perf_counter() - t
    report = executor.getReport()
    if report.status != ExecutionStatus.SUCCESS or len(report.quantaReports) != n:
        raise RuntimeError(f"no-op run failed: {report.status}, {len(report.quantaReports)}/{n} reports")
    return {"processes": num_proc, "quanta": n, "wall_s": round(wall, 3), "quanta_per_s": round(n / wall, 1),
            "ms_per_quantum": round(1000 * wall / n, 3)}


def measure_build(root: str, visits: int, detectors: int, execute: bool) -> dict[str, Any]:
    """Build, save, load and materialize the graph; optionally run it in-process without storage."""
    from lsst.pipe.base.all_dimensions_quantum_graph_builder import AllDimensionsQuantumGraphBuilder
    from lsst.pipe.base.quantum_graph import PredictedQuantumGraph

    out: dict[str, Any] = {"visits": visits, "detectors": detectors}
    butler = Butler.from_config(root)
    pg = pipeline_graph()
    rss0, max0 = _rss_mb(), _maxrss_mb()
    t = time.perf_counter()
    builder = AllDimensionsQuantumGraphBuilder(pg, butler, input_collections=[RAW_RUN], output_run=OUT_RUN)
    qgc = builder.finish(attach_datastore_records=False)
    t1 = time.perf_counter()
    qg = qgc.assemble()
    t2 = time.perf_counter()
    out["build_s"] = round(t2 - t, 3)
    out["finish_s"], out["assemble_s"] = round(t1 - t, 3), round(t2 - t1, 3)
    out["peak_rss_mb"] = round(_maxrss_mb() - rss0, 1)
    out["rss_before_build_mb"], out["peak_rss_before_build_mb"] = round(rss0, 1), round(max0, 1)
    out["quanta"] = len(qg)
    out["counts"] = {label: len(q) for label, q in qg.quanta_by_task.items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.qg"
        t = time.perf_counter()
        qgc.write(path)
        out["save_s"] = round(time.perf_counter() - t, 3)
        out["file_bytes"] = path.stat().st_size
        t = time.perf_counter()
        with PredictedQuantumGraph.open(path) as reader:
            reader.read_thin_graph()
            t1 = time.perf_counter()
            reader.read_execution_quanta()
            loaded = reader.finish()
        quanta = loaded.build_execution_quanta()
        t2 = time.perf_counter()
        out["load_s"], out["materialize_s"] = round(t1 - t, 3), round(t2 - t1, 3)
        n_refs = sum(sum(map(len, q.inputs.values())) + sum(map(len, q.outputs.values())) for q in quanta.values())
        if len(loaded) != len(qg) or len(quanta) != len(qg):
            raise RuntimeError("graph changed through serialization")
        out["refs"] = n_refs
    butler.close()
    if execute:
        out["inprocess"] = _run(loaded, 1, None)
    return out


def measure_exec(root: str, processes: int, with_butler: bool) -> dict[str, Any]:
    """Build a (small) graph and run it: ``processes`` > 1 is pipe_base's one-process-per-quantum mode."""
    from lsst.pipe.base.all_dimensions_quantum_graph_builder import AllDimensionsQuantumGraphBuilder

    read_butler = Butler.from_config(root)
    qg = AllDimensionsQuantumGraphBuilder(pipeline_graph(), read_butler, input_collections=[RAW_RUN],
                                          output_run=OUT_RUN).finish(attach_datastore_records=False).assemble()
    read_butler.close()
    qg.build_execution_quanta()
    butler = None
    if with_butler:  # as ``pipetask run`` does before executing (not timed)
        butler = Butler.from_config(root, writeable=True, run=OUT_RUN, collections=[RAW_RUN])
        qg.pipeline_graph.register_dataset_types(butler)
        qg.write_init_outputs(butler)
        qg.write_configs(butler)
        qg.write_packages(butler)
        butler.registry.resetConnectionPool()
    result = _run(qg, processes, butler)
    if processes > 1:
        result["ms_per_quantum_per_worker"] = round(result["ms_per_quantum"] * processes, 3)
    return result


# ---------------------------------------------------------------- driver
def _worker(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run this script in a fresh process in one worker mode; its last stdout line is JSON."""
    try:
        proc = subprocess.run([sys.executable, __file__, *cmd], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1], "stderr_tail": proc.stderr[-2000:]}
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def _parse(size: str) -> tuple[int, int]:
    v, d = (int(x) for x in size.lower().split("x"))
    return v, d


def run_all(sizes: list[str], exec_io_size: str, mp_size: str, processes: int, budget_s: float,
            build_only: bool = False) -> dict[str, Any]:
    """Every size (build + I/O, no-op run for the first), then the butler-backed and multi-process runs."""
    import lsst.ctrl.mpexec
    import lsst.daf.butler
    import lsst.pipe.base

    doc: dict[str, Any] = {"benchmark": "pipeline-peer", "python": sys.version.split()[0],
                           "versions": {"lsst-pipe-base": lsst.pipe.base.__version__,
                                        "lsst-ctrl-mpexec": lsst.ctrl.mpexec.__version__,
                                        "lsst-daf-butler": lsst.daf.butler.__version__},
                           "budget_s": budget_s, "results": []}
    rate: float | None = None  # build seconds per quantum, from the previous size
    for i, size in enumerate(sizes):
        v, d = _parse(size)
        n_est = v * d + v + 1
        res: dict[str, Any] = {"visits": v, "detectors": d}
        if rate is not None and rate * n_est > budget_s:
            res["skipped"] = (f"predicted build {rate * n_est:.0f} s (from {rate * 1e3:.2f} ms/quantum at the "
                              f"previous size) exceeds the {budget_s:.0f} s budget")
            doc["results"].append(res)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            res["setup"] = _worker(["--worker", "setup", "--root", tmp, "--size", size], 4 * budget_s)
            if "setup_s" in res["setup"]:
                res.update(_worker(["--worker", "build", "--root", tmp, "--size", size]
                                   + (["--execute"] if i == 0 and not build_only else []), 2 * budget_s))
        if "build_s" in res:
            rate = res["build_s"] / res["quanta"]
        doc["results"].append(res)
    runs = () if build_only else (
        ("inprocess_butler", exec_io_size, 1, True), ("multiprocess", mp_size, processes, False)
    )
    for key, size, procs, io in runs:
        v, d = _parse(size)
        with tempfile.TemporaryDirectory() as tmp:
            setup = _worker(["--worker", "setup", "--root", tmp, "--size", size] + (["--files"] if io else []),
                            budget_s)
            res = _worker(["--worker", "exec", "--root", tmp, "--processes", str(procs)]
                          + (["--butler"] if io else []), budget_s) if "setup_s" in setup else setup
        doc[key] = {"visits": v, "detectors": d, **res}
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["50x189", "200x189"])
    parser.add_argument("--exec-io-size", default="2x189", help="graph run through a real butler, in-process")
    parser.add_argument("--mp-size", default="1x20", help="graph run multi-process (one process per quantum)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=300.0, help="skip sizes predicted to build slower")
    parser.add_argument("--build-only", action="store_true", help="graph build + I/O only, no execution")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", choices=["setup", "build", "exec"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--files", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--execute", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--butler", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "setup":
        print(json.dumps(setup_repo(args.root, *_parse(args.size), args.files)))
    elif args.worker == "build":
        print(json.dumps(measure_build(args.root, *_parse(args.size), args.execute)))
    elif args.worker == "exec":
        print(json.dumps(measure_exec(args.root, args.processes, args.butler)))
    else:
        text = json.dumps(run_all(args.sizes, args.exec_io_size, args.mp_size, args.processes, args.budget_s,
                                  args.build_only), indent=2)
        print(text)
        if args.out:
            args.out.write_text(text)
    return 0


if __name__ == "__main__":
    # Re-import under the module's own name, so the task classes are importable
    # (``pipeline_bench_peer.NoopDetectorTask``) in graph files and spawned workers.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pipeline_bench_peer

    raise SystemExit(pipeline_bench_peer.main())
