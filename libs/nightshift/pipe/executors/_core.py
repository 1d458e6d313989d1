"""The executor core shared by every specialization (REQ-0018, REQ-0020).

:class:`Executor.run` walks the quantum graph in dependency order: a quantum
is submitted when all the quanta it depends on have succeeded (or were
memoized); a failed quantum marks all its descendants BLOCKED. The
specializations only say *where* a quantum runs, by providing a
``concurrent.futures.Executor``-compatible pool whose workers call
:func:`run_quantum_in_worker`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import os
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypedDict, TypeVar

from .._graph import QuantumGraph
from .._logging import LogFormat, configure_logging, pipeline_logging
from .._report import ExecutionReport, QuantumReport, QuantumStatus
from .._runner import ButlerSpec, QuantumButlerFactory, QuantumRunner, initialize_run

__all__ = ["Executor", "ProgressCallback", "WorkerSetup", "run_quantum_in_worker"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

_log = logging.getLogger("nightshift.pipe.executor")
ProgressCallback = Callable[[QuantumReport], None]


class ExecutorOptions(TypedDict, total=False):
    """The keyword options of :class:`Executor` that every executor passes on to it."""

    memoize: bool
    progress: ProgressCallback | None
    log_level: str | None
    deferred_timeout: float
    stage_dir: str | os.PathLike[str] | None


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker process needs to run quanta of one graph (small and picklable)."""

    graph_path: str
    butler: ButlerSpec | None
    memoize: bool = True
    log_level: str | None = None
    deferred_timeout: float = 300.0
    log_format: LogFormat = "text"
    log_file: str | None = None
    execution_id: str | None = None


_RUNNERS: dict[WorkerSetup, QuantumRunner] = {}


def _runner_for(setup: WorkerSetup) -> QuantumRunner:
    runner = _RUNNERS.get(setup)
    if runner is None:
        if setup.log_level:  # a worker process of the framework: its logging is the framework's to set
            configure_logging(setup.log_level, fmt=setup.log_format, file=setup.log_file)
        for old in _RUNNERS.values():
            old.close()
        _RUNNERS.clear()
        runner = _RUNNERS[setup] = QuantumRunner(QuantumGraph.load(setup.graph_path), setup.butler,
                                                 memoize=setup.memoize, deferred_timeout=setup.deferred_timeout,
                                                 execution_id=setup.execution_id)
    return runner


def warm_worker(setup: WorkerSetup) -> int:
    """Load the graph into a worker ahead of the first quantum; returns the worker's pid."""
    _runner_for(setup)
    return os.getpid()


def run_quantum_in_worker(setup: WorkerSetup, index: int) -> QuantumReport:
    """Worker entry point: run quantum ``index`` of the graph at ``setup.graph_path`` (graph cached per process)."""
    return _runner_for(setup).run(index)


def run_quanta_in_worker(setup: WorkerSetup, indices: list[int]) -> list[QuantumReport]:
    """Run several independent quanta in one call (fewer round trips for tiny quanta)."""
    runner = _runner_for(setup)
    return [runner.run(i) for i in indices]


class Executor(ABC):
    """Runs a quantum graph; subclasses choose where quanta run.

    Parameters
    ----------
    repo : str or os.PathLike, optional
        Butler repository; None runs without butler I/O (no-op/dry runs).
    memoize : bool
        Reuse identical outputs (REQ-0031); False: existing outputs are errors.
    progress : callable, optional
        Called with each finished quantum's :class:`QuantumReport`.
    log_level : str, optional
        Standard logging at this level during :meth:`run`, in this process
        (restored afterwards) and in worker processes (REQ-0025); None leaves
        logging as it is. Constructing the executor changes nothing.
    log_format : {"text", "json"}
        Line format of that logging.
    log_file : str or os.PathLike, optional
        Append log lines to this file (workers too) instead of stderr.
    deferred_timeout : float
        Seconds a quantum waits for a deferred input made by a quantum running in parallel.
    stage_dir : str or os.PathLike, optional
        Node-local scratch directory: the graph's inputs are copied into a
        private repository there before the run (DMS-MWBT-REQ-0052), quanta
        read and write only that, and the outputs are moved to ``repo``
        afterwards (DMS-MWBT-REQ-0079). Workers must see the directory.
    """

    name = "executor"

    def __init__(self, repo: str | os.PathLike[str] | None = None, *, memoize: bool = True,
                 progress: ProgressCallback | None = None, log_level: str | None = None,
                 deferred_timeout: float = 300.0, stage_dir: str | os.PathLike[str] | None = None,
                 log_format: LogFormat = "text", log_file: str | os.PathLike[str] | None = None) -> None:
        if stage_dir is not None and repo is None:
            raise ValueError("stage_dir needs a repository to stage from and to")
        self.repo = None if repo is None else os.fspath(repo)
        self.stage_dir = None if stage_dir is None else os.fspath(stage_dir)
        self.deferred_timeout = deferred_timeout
        self.memoize = memoize
        self.progress = progress
        if log_format not in ("text", "json"):
            raise ValueError(f"log_format must be 'text' or 'json', got {log_format!r}")
        self.log_level = log_level
        self.log_format: LogFormat = log_format
        self.log_file = None if log_file is None else os.path.abspath(log_file)

    @property
    def max_in_flight(self) -> int:
        """How many quanta may be submitted but unfinished at once."""
        return 1

    @abstractmethod
    def _pool(self, graph: QuantumGraph, setup: WorkerSetup) -> contextlib.AbstractContextManager[cf.Executor]:
        """A pool whose workers can call :func:`run_quantum_in_worker` with ``setup``."""

    def _batch_size(self, n_ready: int) -> int:
        return 1

    def run(self, graph: QuantumGraph, *, graph_path: str | os.PathLike[str] | None = None) -> ExecutionReport:
        """Execute every quantum in dependency order.

        Parameters
        ----------
        graph : QuantumGraph
        graph_path : path, optional
            Where ``graph`` is saved already (workers load it from there);
            otherwise it is written to a temporary file when workers need it.

        Returns
        -------
        ExecutionReport
            Status, timing and error of every quantum; call
            :meth:`ExecutionReport.raise_for_failures` to turn failures into an exception.
        """
        with pipeline_logging(self.log_level, fmt=self.log_format, file=self.log_file):
            if not len(graph):
                _log.warning("empty quantum graph: nothing to run (%s)", graph.explanation or "no explanation recorded")
                return ExecutionReport([], executor=self.name)
            if self.stage_dir is not None and self.repo is not None:
                return run_staged(self, graph, self.repo, self.stage_dir, graph_path)
            return self._run(graph, self.repo, graph_path)

    def _run(self, graph: QuantumGraph, repo: str | None,
             graph_path: str | os.PathLike[str] | None) -> ExecutionReport:
        t0 = time.perf_counter()
        execution_id = uuid.uuid4().hex  # recorded in the provenance of every quantum this run writes
        spec = ButlerSpec.for_graph(repo, graph) if repo is not None else None
        if spec is not None:
            factory = QuantumButlerFactory(spec)
            try:
                initialize_run(graph, factory.make())
            finally:
                factory.close()
        with contextlib.ExitStack() as stack:
            path = os.fspath(graph_path) if graph_path is not None else self._graph_file(graph, stack)
            setup = WorkerSetup(path, spec, self.memoize, self.log_level, self.deferred_timeout,
                                log_format=self.log_format, log_file=self.log_file, execution_id=execution_id)
            pool = stack.enter_context(self._pool(graph, setup))
            reports = self._walk(graph, pool, setup)
        report = ExecutionReport(reports, executor=self.name, wall_seconds=time.perf_counter() - t0,
                                 execution_id=execution_id)
        _log.info("run finished: %s in %.2f s", report.counts(), report.wall_seconds)
        return report

    def _graph_file(self, graph: QuantumGraph, stack: contextlib.ExitStack) -> str:
        if not self.needs_graph_file:
            return f"memory:{id(graph)}:{time.time_ns()}"
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="nightshift-qg-"))
        path = Path(tmp) / "graph.qg"
        graph.save(path)
        return str(path)

    needs_graph_file = True

    def _walk(self, graph: QuantumGraph, pool: cf.Executor, setup: WorkerSetup) -> list[QuantumReport]:
        deps = graph.start_dependencies()
        children: list[list[int]] = [[] for _ in graph.quanta]
        for i, ds in enumerate(deps):
            for d in ds:
                children[d].append(i)
        reports = [QuantumReport(q.index, q.task_label, q.data_id) for q in graph.quanta]
        running: set[int] = set()
        waiting = [len(d) for d in deps]
        ready = [i for i, n in enumerate(waiting) if n == 0]
        ready.reverse()  # pop() from the end keeps graph order
        in_flight: dict[cf.Future[list[QuantumReport]], list[int]] = {}
        limit = self.max_in_flight

        def finish(rep: QuantumReport) -> None:
            reports[rep.index] = rep
            running.discard(rep.index)
            if rep.status in (QuantumStatus.SUCCEEDED, QuantumStatus.MEMOIZED):
                for c in children[rep.index]:
                    waiting[c] -= 1
                    if waiting[c] == 0 and reports[c].status is QuantumStatus.PENDING:
                        ready.append(c)
            else:
                for d in sorted(graph.descendants(rep.index)):
                    if reports[d].status is QuantumStatus.PENDING and d not in running:
                        reports[d].status = QuantumStatus.BLOCKED
                        reports[d].blocked_by = rep.index
                        if self.progress is not None:
                            self.progress(reports[d])
            if self.progress is not None:
                self.progress(rep)

        while ready or in_flight:
            while ready and len(in_flight) < limit:
                n = self._batch_size(len(ready))
                batch = [ready.pop() for _ in range(min(n, len(ready)))]
                batch = [i for i in batch if reports[i].status is QuantumStatus.PENDING]
                if batch:
                    running.update(batch)
                    in_flight[pool.submit(run_quanta_in_worker, setup, batch)] = batch
            if not in_flight:
                break
            done, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                batch = in_flight.pop(fut)
                try:
                    results = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker died: the batch failed
                    results = []
                    for i in batch:
                        q = graph.quanta[i]
                        results.append(QuantumReport(i, q.task_label, q.data_id, status=QuantumStatus.FAILED,
                                                     error_type=type(exc).__name__,
                                                     error=f"worker failed: {type(exc).__name__}: {exc}"))
                for rep in results:
                    finish(rep)
        return reports


def run_staged(executor: Executor, graph: QuantumGraph, repo: str, stage_dir: str,
               graph_path: str | os.PathLike[str] | None) -> ExecutionReport:
    """Stage in, run against the node-local repository, stage out (REQ-0052, REQ-0079).

    Staged in: every predicted input and init-input, plus the outputs and
    config snapshots the run already holds (so memoization and the
    changed-config check see them). If staging out fails, the scratch
    repository is kept and named in the error: nothing is lost.
    """
    import shutil

    from ...butler import Butler

    os.makedirs(stage_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="nightshift-stage-", dir=stage_dir)
    shutil.rmtree(scratch)  # Butler.create wants to make the directory itself
    with Butler(repo) as shared:
        wanted = {r.id for q in graph.quanta for r in (*q.input_refs(), *q.output_refs())}
        wanted.update(r.id for part in (graph.init_inputs, graph.init_outputs)
                      for conns in part.values() for r in conns.values())
        # what exists now: inputs, and outputs of an earlier attempt (intermediates made by this
        # graph's own quanta are predicted inputs too, but do not exist yet)
        refs = {r.id: r for r in shared.registry.get_datasets(sorted(wanted))}
        t0 = time.perf_counter()
        try:
            local = shared.stage_in(list(refs.values()), scratch)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)  # only copies of shared datasets were there
            raise
        t_in = time.perf_counter() - t0
        try:
            try:
                report = executor._run(graph, str(local.root), graph_path)
            except BaseException:  # the run did not start (e.g. a changed config): no outputs to keep
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            t0 = time.perf_counter()
            try:
                staged = shared.stage_out(local, runs=[graph.run] if graph.run else None)
            except BaseException:
                _log.error("staging out failed; the outputs are kept in %s", scratch)
                raise
        finally:
            local.close()
    shutil.rmtree(scratch, ignore_errors=True)
    report.extra.update(staged_in=len(refs), staged_out=len(staged), stage_in_seconds=round(t_in, 3),
                        stage_out_seconds=round(time.perf_counter() - t0, 3))
    _log.info("staged in %d datasets (%.2f s), out %d (%.2f s)", len(refs), t_in, len(staged),
              report.extra["stage_out_seconds"])
    return report


class _Immediate(cf.Executor):
    """A concurrent.futures executor that runs each call at once in this thread."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> cf.Future[_T]:
        fut: cf.Future[_T] = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001
            fut.set_exception(exc)
        return fut


@contextlib.contextmanager
def _closing_runners() -> Iterator[None]:
    try:
        yield
    finally:
        for r in _RUNNERS.values():
            r.close()
        _RUNNERS.clear()
