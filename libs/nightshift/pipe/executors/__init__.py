"""Executors: one core that walks the quantum graph, several places to run quanta (REQ-0018..0020)."""

from ._core import Executor, ProgressCallback, WorkerSetup, run_quantum_in_worker
from ._dask import DaskExecutor
from ._inprocess import InProcessExecutor
from ._multiprocess import MultiProcessExecutor

__all__ = [
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "MultiProcessExecutor",
    "ProgressCallback",
    "WorkerSetup",
    "run_quantum_in_worker",
]
