"""The pipeline framework: tasks with connections, pipelines, pre-flight quantum graphs, executors.

::

    pipeline = Pipeline.from_yaml("pipeline.yaml")
    pipeline.add_override_string("calibrate:threshold=4.5")       # recorded (REQ-0016)
    graph = build_quantum_graph(butler.registry, pipeline, collections=["raw/all"], run="u/me/run1",
                                where="visit IN (1..10)")
    graph.save("run1.qg")                                          # compact, versioned (REQ-0022)
    report = MultiProcessExecutor("/repo", processes=4).run(graph)
    report.raise_for_failures()

The functions behind ``nightshift pipeline`` (``load_pipeline``, ``build_graph``,
``show_graph``, ``show_config``, ``make_executor``) are public too, for scripts
and notebooks that want what the command does.

Public names are re-exported from private ``_module.py`` files.
"""

from .._lazy import lazy_exports as _lazy_exports
from ._config import (
    ConfigOverride,
    PipelineTaskConfig,
    TaskConfig,
    apply_overrides,
    config_hash,
    load_override_file,
    parse_override,
)
from ._connections import (
    Connection,
    InitInput,
    InitOutput,
    Input,
    Output,
    PipelineTaskConnections,
    PrerequisiteInput,
)
from ._context import QuantumContext
from ._exceptions import (
    ConfigOverrideError,
    ExecutionFailedError,
    GraphFormatError,
    OutputExistsError,
    PipelineDefinitionError,
    PipelineError,
    PreflightError,
    QuantumExecutionError,
    UnknownDatasetTypeError,
)
from ._graph import Quantum, QuantumGraph
from ._graph_io import FORMAT_VERSION
from ._logging import configure_logging
from ._memo import MemoDecision, check_memo
from ._pipeline import Pipeline, ResolvedConnection, Step, TaskNode, TaskSpec
from ._preflight import DiscoveryRegistry, build_quantum_graph
from ._report import ExecutionReport, QuantumReport, QuantumStatus
from ._runner import ButlerSpec, QuantumButlerFactory, QuantumRunner, initialize_run
from ._script import build_graph, load_pipeline, make_executor, show_config, show_graph
from ._task import PipelineTask, Struct, Task
from .executors import DaskExecutor, Executor, InProcessExecutor, MultiProcessExecutor

# the Kafka runner fleet imports confluent-kafka and the event schemas: only when used
__getattr__, __dir__ = _lazy_exports(__name__, {"KafkaExecutor": ".executors._kafka"})

__all__ = [
    "FORMAT_VERSION",
    "ButlerSpec",
    "ConfigOverride",
    "ConfigOverrideError",
    "Connection",
    "DaskExecutor",
    "DiscoveryRegistry",
    "ExecutionFailedError",
    "ExecutionReport",
    "Executor",
    "GraphFormatError",
    "InProcessExecutor",
    "KafkaExecutor",
    "InitInput",
    "InitOutput",
    "Input",
    "MemoDecision",
    "MultiProcessExecutor",
    "Output",
    "OutputExistsError",
    "Pipeline",
    "PipelineDefinitionError",
    "PipelineError",
    "PipelineTask",
    "PipelineTaskConfig",
    "PipelineTaskConnections",
    "PreflightError",
    "PrerequisiteInput",
    "Quantum",
    "QuantumButlerFactory",
    "QuantumContext",
    "QuantumExecutionError",
    "QuantumGraph",
    "QuantumReport",
    "QuantumRunner",
    "QuantumStatus",
    "ResolvedConnection",
    "Step",
    "Struct",
    "Task",
    "TaskConfig",
    "TaskNode",
    "TaskSpec",
    "UnknownDatasetTypeError",
    "apply_overrides",
    "build_graph",
    "build_quantum_graph",
    "check_memo",
    "config_hash",
    "configure_logging",
    "initialize_run",
    "load_override_file",
    "load_pipeline",
    "make_executor",
    "parse_override",
    "show_config",
    "show_graph",
]
