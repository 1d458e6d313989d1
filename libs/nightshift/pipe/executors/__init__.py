"""Executors: one core that walks the quantum graph, several places to run quanta (REQ-0018..0020)."""

from ..._lazy import lazy_exports as _lazy_exports
from ._core import Executor, ProgressCallback, WorkerSetup, run_quantum_in_worker
from ._dask import DaskExecutor
from ._inprocess import InProcessExecutor
from ._multiprocess import MultiProcessExecutor

# the Kafka fleet needs confluent-kafka and the event schemas (~0.5 s of imports): loaded on first use
__getattr__, __dir__ = _lazy_exports(__name__, {
    **{name: "._kafka" for name in
       ("KafkaExecutor", "QuantumEventError", "QuantumEventHandler", "QuantumTopics", "ensure_fleet_topics")},
})

__all__ = [
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "KafkaExecutor",
    "MultiProcessExecutor",
    "ProgressCallback",
    "QuantumEventError",
    "QuantumEventHandler",
    "QuantumTopics",
    "WorkerSetup",
    "ensure_fleet_topics",
    "run_quantum_in_worker",
]
