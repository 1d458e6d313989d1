"""Running one quantum: butler per quantum, memoization, I/O around ``run``, provenance.

Used by every executor, in whatever process the quantum lands (REQ-0020).
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..butler import DatasetRef, FileProvenance
from ..butler.datastores import removing_on_failure
from ._context import QuantumContext
from ._exceptions import OutputExistsError, PipelineError, QuantumExecutionError
from ._graph import METADATA_CONNECTION, Quantum, QuantumGraph
from ._logging import quantum_log_context
from ._memo import check_memo
from ._pipeline import CONFIG_SUFFIX, TaskNode
from ._report import QuantumReport, QuantumStatus
from ._task import PipelineTask

if TYPE_CHECKING:
    from ..butler import Butler

__all__ = ["ButlerSpec", "QuantumButlerFactory", "QuantumRunner", "initialize_run"]

_log = logging.getLogger("nightshift.pipe.runner")
HOST = socket.gethostname()


@dataclass(frozen=True)
class ButlerSpec:
    """How to open the butler of a run in any process (picklable).

    Parameters
    ----------
    repo : str
        Repository directory (with ``butler.yaml``).
    collections : tuple of str
        Input collections; the run is searched first.
    run : str
        Output RUN collection.
    """

    repo: str
    collections: tuple[str, ...]
    run: str

    @classmethod
    def for_graph(cls, repo: str | os.PathLike[str], graph: QuantumGraph) -> ButlerSpec:
        """The spec matching a graph's run and input collections."""
        run = graph.run
        if not run:
            raise PipelineError("the quantum graph names no output run")
        return cls(os.fspath(repo), tuple(graph.metadata.get("collections", [])), run)


class QuantumButlerFactory:
    """Creates a :class:`Butler` for each quantum (REQ-0023).

    Each quantum gets its own Butler object (its collections and run); the
    registry connection pool and datastore of the process are shared, so the
    cost per quantum is small.
    """

    def __init__(self, spec: ButlerSpec) -> None:
        self.spec = spec
        self._base: Butler | None = None

    def make(self) -> Butler:
        """A fresh Butler for one quantum."""
        from ..butler import Butler

        search = [self.spec.run, *self.spec.collections]
        if self._base is None:
            self._base = Butler(self.spec.repo, collections=search, run=self.spec.run)
        return Butler(self.spec.repo, collections=search, run=self.spec.run,
                      registry=self._base.registry, datastore=self._base.datastore)

    def close(self) -> None:
        """Release the shared registry connections."""
        if self._base is not None:
            self._base.close()
            self._base = None


class _CallerButler:
    """The butler a caller supplied (REQ-0009): every quantum uses it; the caller keeps and closes it."""

    def __init__(self, butler: Butler) -> None:
        self.butler = butler

    def make(self) -> Butler:
        """The caller's butler."""
        return self.butler

    def close(self) -> None:
        """Nothing: the butler belongs to the caller."""


def initialize_run(graph: QuantumGraph, butler: Butler) -> None:
    """Before any quantum: register dataset types and the run, write config snapshots and init-outputs.

    Re-running into the same run with a different config or code version of a
    task is refused (REQ-0031).

    Raises
    ------
    OutputExistsError
        If the run holds a config snapshot of a task that differs from the graph's.
    """
    registry = butler.registry
    run = graph.run
    if not run:
        raise PipelineError("the quantum graph names no output run")
    registry.register_run(run)
    for node in graph.tasks.values():
        types = [node.config_dataset_type, node.metadata_dataset_type,
                 *(c.dataset_type for c in node.of_kind("output", "init_output"))]
        for dt in types:
            butler.register_dataset_type(dt)
    for label, node in graph.tasks.items():
        outs = graph.init_outputs.get(label, {})
        config_ref = outs.get(CONFIG_SUFFIX)
        if config_ref is None:
            continue
        existing = registry.get_dataset(config_ref.id)
        if existing is not None:
            old = butler.get(existing)
            if (old.get("config_hash"), old.get("code_version")) != (node.config_hash, node.code_version):
                raise OutputExistsError(
                    f"run {run!r} was made with another config or code of this task (config hash "
                    f"{old.get('config_hash')} vs {node.config_hash}, code {old.get('code_version')} vs "
                    f"{node.code_version}); use a new run", task_label=label, data_id={})
            continue
        task = _make_task(node, graph, butler)
        objs = task.init_outputs()
        missing = [name for name in outs if name != CONFIG_SUFFIX and name not in objs]
        if missing:
            raise QuantumExecutionError(f"init_outputs() returned no {missing}", task_label=label, data_id={})
        with registry.transaction():
            for name, ref in outs.items():
                if name == CONFIG_SUFFIX:
                    continue
                butler.put(objs[name], ref.dataset_type, {}, run=run)
            butler.put(node.config_snapshot(), config_ref.dataset_type, {}, run=run)


def _make_task(node: TaskNode, graph: QuantumGraph, butler: Butler | None) -> PipelineTask:
    init_inputs: dict[str, Any] = {}
    for name, ref in graph.init_inputs.get(node.label, {}).items():
        init_inputs[name] = butler.get(ref) if butler is not None else None
    return node.task_class(node.config, name=node.label, log=logging.getLogger("nightshift.pipe.tasks"),
                           init_inputs=init_inputs)


class QuantumRunner:
    """Executes quanta of one graph in the current process.

    Parameters
    ----------
    graph : QuantumGraph
    butler : Butler, ButlerSpec or None
        A :class:`~nightshift.butler.Butler` instance: the caller's butler, used
        for every quantum's reads, writes and provenance (REQ-0009; call
        :func:`initialize_run` with it first, and close it yourself).
        A :class:`ButlerSpec`: a butler per quantum opened by the framework
        (REQ-0023). None: no butler I/O (inputs are None, outputs discarded,
        no provenance).
    memoize : bool
        Reuse identical existing outputs (REQ-0031); off: existing outputs are an error.
    deferred_timeout : float
        Seconds to wait for a deferred input (REQ-0030).
    execution_id : str, optional
        The execution these quanta belong to, recorded in their provenance. A
        quantum whose outputs this execution wrote already (an earlier attempt
        that died after committing, a concurrent copy) is SUCCEEDED, not
        MEMOIZED, and is not an error with memoization off.
    """

    def __init__(self, graph: QuantumGraph, butler: Butler | ButlerSpec | None, *, memoize: bool = True,
                 deferred_timeout: float = 300.0, execution_id: str | None = None) -> None:
        self.graph = graph
        self.memoize = memoize
        self.execution_id = execution_id
        self.deferred_timeout = deferred_timeout
        self.factory: QuantumButlerFactory | _CallerButler | None
        if butler is None:
            self.factory = None
        elif isinstance(butler, ButlerSpec):
            self.factory = QuantumButlerFactory(butler)
        else:
            self.factory = _CallerButler(butler)
        self._tasks: dict[str, PipelineTask] = {}

    def close(self) -> None:
        """Release butler resources."""
        if self.factory is not None:
            self.factory.close()

    def run(self, index: int) -> QuantumReport:
        """Run quantum ``index``; never raises for a task error (the report says FAILED)."""
        quantum = self.graph.quanta[index]
        report = QuantumReport(index, quantum.task_label, quantum.data_id, host=HOST, pid=os.getpid())
        report.start = time.time()
        with quantum_log_context(quantum.describe()):
            try:
                status, n_actual, n_out = self._execute(quantum)
                report.status = status
                report.n_actual_inputs, report.n_outputs = n_actual, n_out
            except Exception as exc:  # noqa: BLE001 - every failure is reported, with its type
                meanwhile = self._written_meanwhile(quantum)
                if meanwhile is not None:
                    # the same quantum ran twice at once (a redelivered event, a rebalance) and the
                    # other copy committed first: its outputs are this quantum's outputs
                    _log.info("%s: outputs were written by a concurrent run of the same quantum", quantum.describe())
                    report.status, report.n_outputs = meanwhile, len(quantum.output_refs())
                    report.end = time.time()
                    return report
                report.status = QuantumStatus.FAILED
                report.error_type = getattr(exc, "error_type", None) or type(exc).__name__
                report.error = str(exc) if isinstance(exc, QuantumExecutionError) else \
                    f"{type(exc).__name__}: {exc}"
                report.traceback = traceback.format_exc()
                _log.error("quantum %s failed: %s", quantum.describe(), report.error)
        report.end = time.time()
        return report

    def _written_meanwhile(self, quantum: Quantum) -> QuantumStatus | None:
        """How to report ``quantum`` if acceptable outputs of it exist now (best effort), else None.

        SUCCEEDED if this execution wrote them, MEMOIZED if an identical
        quantum of another execution did (memoization on).
        """
        if self.factory is None:
            return None
        try:
            decision = check_memo(self.factory.make().registry, quantum, self.graph.tasks[quantum.task_label],
                                  memoize=self.memoize, execution_id=self.execution_id)
        except Exception:  # noqa: BLE001 - the original failure is what gets reported
            return None
        return {"done": QuantumStatus.SUCCEEDED, "reuse": QuantumStatus.MEMOIZED}.get(decision.action)

    def _task(self, node: TaskNode, butler: Butler | None) -> PipelineTask:
        task = self._tasks.get(node.label)
        if task is None:
            task = self._tasks[node.label] = _make_task(node, self.graph, butler)
        return task

    def _execute(self, quantum: Quantum) -> tuple[QuantumStatus, int, int]:
        node = self.graph.tasks[quantum.task_label]
        butler = self.factory.make() if self.factory is not None else None
        if butler is not None:
            decision = check_memo(butler.registry, quantum, node, memoize=self.memoize,
                                  execution_id=self.execution_id)
            if decision.action == "reuse":
                _log.debug("memoized: %s", decision.reason)
                return QuantumStatus.MEMOIZED, 0, len(quantum.output_refs())
            if decision.action == "done":
                _log.info("%s: not run again: %s", quantum.describe(), decision.reason)
                return QuantumStatus.SUCCEEDED, decision.n_actual_inputs, len(quantum.output_refs())
        task = self._task(node, butler)
        ctx = QuantumContext(quantum, node, butler, deferred_timeout=self.deferred_timeout)
        t0 = time.time()
        try:
            task.run_quantum(ctx)
        except PipelineError:
            raise
        except Exception as exc:
            raise QuantumExecutionError(f"task raised {type(exc).__name__}: {exc}", task_label=node.label,
                                        data_id=quantum.data_id) from exc
        t1 = time.time()
        if butler is None:
            return QuantumStatus.SUCCEEDED, len(ctx.actual_inputs), len(ctx.pending)
        written = self._write(butler, quantum, node, ctx, t0, t1)
        return QuantumStatus.SUCCEEDED, len(ctx.actual_inputs), len(written)

    def _write(self, butler: Butler, quantum: Quantum, node: TaskNode, ctx: QuantumContext, t0: float,
               t1: float) -> list[DatasetRef]:
        """Write outputs + metadata and record provenance, all or nothing."""
        missing = [c.name for c in node.of_kind("output") if c.name not in ctx.pending]
        if missing:
            _log.warning("%s produced no %s", quantum.describe(), missing)
        metadata = {
            "quantum_id": str(quantum.id), "execution_id": self.execution_id, "task_label": node.label,
            "data_id": dict(quantum.data_id),
            "host": HOST, "pid": os.getpid(), "start": t0, "end": t1, "seconds": t1 - t0,
            "config_hash": node.config_hash, "code_version": node.code_version,
            "nightshift_version": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "actual_inputs": [str(i) for i in ctx.actual_inputs], "predicted_inputs": len(quantum.input_refs()),
        }
        items = [(ctx.pending[c.name], ctx.output_ref(c.name)) for c in node.of_kind("output") if c.name in ctx.pending]
        items.append((metadata, ctx.metadata_ref))
        # the files carry their parents and raw ancestors too, readable without the registry (REQ-0096)
        provenance = FileProvenance.from_quantum(butler.registry, ctx.actual_inputs.values(), task_label=node.label,
                                                 quantum_id=str(quantum.id))
        with removing_on_failure(butler.datastore) as written, butler.registry.transaction():
            for obj, predicted in items:
                ref = butler.put(obj, predicted.dataset_type, dict(predicted.data_id), run=predicted.run,
                                 provenance=provenance)
                written.append(ref)
                if ref.id != predicted.id:
                    raise QuantumExecutionError(
                        f"output {predicted.dataset_type.name} got id {ref.id}, predicted {predicted.id}",
                        task_label=node.label, data_id=quantum.data_id)
            butler.registry.record_quantum(
                node.label, config_hash=node.config_hash, code_version=node.code_version,
                data_id=quantum.data_id, predicted_inputs=quantum.input_refs(),
                actual_inputs=list(ctx.actual_inputs.values()), outputs=written, run=quantum_run(quantum),
                quantum_id=quantum.id, execution_id=self.execution_id,
            )
        return written


def quantum_run(quantum: Quantum) -> str:
    """The RUN collection a quantum writes to."""
    return quantum.outputs[METADATA_CONNECTION][0].run
