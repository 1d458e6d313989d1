"""Errors of the pipeline framework.

::

    NightshiftError
    └── PipelineError                                  (root of this package)
        ├── PipelineDefinitionError (ValueError)       bad pipeline: unknown task class, cycle,
        │   │                                          dimension mismatch between connections
        │   └── ConfigOverrideError                    an override names a missing field / bad value
        ├── PreflightError                             the quantum graph could not be built
        │   └── UnknownDatasetTypeError (LookupError)  a connection names an unregistered dataset type
        ├── GraphFormatError (ValueError)              not a quantum graph file / unsupported version
        ├── QuantumExecutionError                      a quantum failed (names task label and data ID)
        │   └── OutputExistsError                      outputs exist and memoization is off  [non-retriable]
        └── ExecutionFailedError                       a run finished with failed or blocked quanta

Every class carries ``retriable`` and a stable ``error_type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._exceptions import NightshiftError

__all__ = [
    "ConfigOverrideError",
    "ExecutionFailedError",
    "GraphFormatError",
    "OutputExistsError",
    "PipelineDefinitionError",
    "PipelineError",
    "PreflightError",
    "QuantumExecutionError",
    "UnknownDatasetTypeError",
]


class PipelineError(NightshiftError):
    """Base class of the pipeline framework's errors."""

    error_type = "pipeline"


class PipelineDefinitionError(PipelineError, ValueError):
    """The pipeline (or a task's connections) is not valid."""

    error_type = "pipeline_definition"


class ConfigOverrideError(PipelineDefinitionError):
    """A config override names a field that does not exist, or gives an invalid value."""

    error_type = "config_override"


class PreflightError(PipelineError):
    """Pre-flight could not build a quantum graph."""

    error_type = "preflight"


class UnknownDatasetTypeError(PreflightError, LookupError):
    """A connection names a dataset type that is neither registered nor produced by the pipeline."""

    error_type = "unknown_dataset_type"


class GraphFormatError(PipelineError, ValueError):
    """A file is not a quantum graph this version can read."""

    error_type = "graph_format"


class QuantumExecutionError(PipelineError):
    """One quantum failed.

    Parameters
    ----------
    message : str
        What went wrong.
    task_label : str
        Label of the task in the pipeline.
    data_id : mapping
        The quantum's data ID.
    """

    error_type = "quantum_execution"

    def __init__(self, message: str, *, task_label: str, data_id: Mapping[str, Any]) -> None:
        self.task_label = task_label
        self.data_id = dict(data_id)
        super().__init__(f"{task_label} {self.data_id}: {message}")


class OutputExistsError(QuantumExecutionError):
    """Outputs of a quantum exist already and memoization is off (or they came from other inputs/config)."""

    error_type = "output_exists"


class ExecutionFailedError(PipelineError):
    """A run ended with failed or blocked quanta; ``report`` holds every quantum's status."""

    error_type = "execution_failed"

    def __init__(self, message: str, report: Any) -> None:
        self.report = report
        super().__init__(message)


_codes = [c.error_type for c in (PipelineError, PipelineDefinitionError, ConfigOverrideError, PreflightError,
                                  UnknownDatasetTypeError, GraphFormatError, QuantumExecutionError,
                                  OutputExistsError, ExecutionFailedError)]
if len(set(_codes)) != len(_codes):  # pragma: no cover - import-time check
    raise RuntimeError(f"duplicate error_type codes in nightshift.pipe: {_codes}")
