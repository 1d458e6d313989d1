"""In-process executor: notebooks, CI, debugging (REQ-0019)."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
from collections.abc import Iterator

from .._graph import QuantumGraph
from .._runner import QuantumRunner
from ._core import _RUNNERS, Executor, WorkerSetup, _Immediate

__all__ = ["InProcessExecutor"]


class InProcessExecutor(Executor):
    """Runs quanta one after the other in the calling thread (exceptions keep their tracebacks)."""

    name = "inprocess"
    needs_graph_file = False

    @contextlib.contextmanager
    def _pool(self, graph: QuantumGraph, setup: WorkerSetup) -> Iterator[cf.Executor]:
        runner = QuantumRunner(graph, setup.butler, memoize=setup.memoize, deferred_timeout=setup.deferred_timeout,
                               execution_id=setup.execution_id)
        _RUNNERS[setup] = runner
        try:
            yield _Immediate()
        finally:
            _RUNNERS.pop(setup, None)
            runner.close()
