"""Connections: the datasets a task reads and writes, declared next to its code.

A task's connections class lists each connection as a class attribute and
states the task's *quantum dimensions* (its data grouping: one quantum per
distinct value of these dimensions, REQ-0006/0007)::

    class CoaddConnections(PipelineTaskConnections, dimensions=("instrument", "visit")):
        calexps = Input("calexp", "Exposure", ("instrument", "visit", "detector"), multiple=True)
        bias = PrerequisiteInput("bias", "Exposure", ("instrument", "detector"), multiple=True)
        summary = Output("visitSummary", "StructuredDataDict", ("instrument", "visit"))

The dataset type in a declaration is only a default: every name can be
replaced through the task config's ``connections`` mapping (REQ-0014), so
no dataset type name is a string constant in the code that does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ._exceptions import PipelineDefinitionError

__all__ = [
    "Connection",
    "ConnectionKind",
    "InitInput",
    "InitOutput",
    "Input",
    "Output",
    "PipelineTaskConnections",
    "PrerequisiteInput",
]

ConnectionKind = Literal["input", "prerequisite", "init_input", "init_output", "output"]

#: Signature of a custom prerequisite lookup: (registry, dataset type, collections, quantum data ID) -> refs.
PrerequisiteLookup = Callable[[Any, Any, Sequence[str], dict[str, Any]], list[Any]]


@dataclass(frozen=True)
class Connection:
    """One declared dataset of a task.

    Parameters
    ----------
    dataset_type : str
        Default dataset type name (overridable by ``config.connections[<attribute>]``).
    storage_class : str
        Storage class of the in-memory object.
    dimensions : sequence of str
        Dimensions of the dataset type (empty for init-inputs/outputs).
    doc : str
        What the dataset is.
    multiple : bool
        Whether the task receives a list of datasets (N:1 grouping) instead of one.
    min_count : int
        Minimum number of datasets for a quantum to exist (0 makes the input optional).
    deferred : bool
        Inputs only: the quantum may start before the dataset exists; reading it
        waits until the producing quantum, running in parallel, has written it
        (cooperating tasks, REQ-0030).
    """

    dataset_type: str
    storage_class: str
    dimensions: tuple[str, ...] = ()
    doc: str = ""
    multiple: bool = False
    min_count: int = 1
    deferred: bool = False
    kind: ClassVar[ConnectionKind] = "input"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        if not self.dataset_type or not self.storage_class:
            raise PipelineDefinitionError("a connection needs a dataset type name and a storage class")
        if self.deferred and self.kind != "input":
            raise PipelineDefinitionError(f"only regular inputs can be deferred, not a {self.kind}")
        if self.min_count < 0:
            raise PipelineDefinitionError(f"min_count must be >= 0, got {self.min_count}")


@dataclass(frozen=True)
class Input(Connection):
    """A regular input: found in the input collections or produced by an upstream task."""

    kind: ClassVar[ConnectionKind] = "input"


@dataclass(frozen=True)
class PrerequisiteInput(Connection):
    """An "implied input" (calibration, template, reference catalog shard, REQ-0012).

    It must exist before pre-flight (no task of the pipeline makes it) and is
    resolved to concrete datasets at pre-flight. ``lookup`` replaces the
    default resolution (data IDs that agree with the quantum's; calibration
    datasets valid at the quantum's observation time).
    """

    lookup: PrerequisiteLookup | None = field(default=None, compare=False)
    kind: ClassVar[ConnectionKind] = "prerequisite"


@dataclass(frozen=True)
class InitInput(Connection):
    """A dataset read once when the task is constructed (e.g. an upstream schema)."""

    kind: ClassVar[ConnectionKind] = "init_input"


@dataclass(frozen=True)
class InitOutput(Connection):
    """A dataset written once per run when the task is constructed."""

    kind: ClassVar[ConnectionKind] = "init_output"


@dataclass(frozen=True)
class Output(Connection):
    """A dataset the task's ``run`` returns, one per quantum (its dimensions within the quantum's)."""

    kind: ClassVar[ConnectionKind] = "output"


class PipelineTaskConnections:
    """Base of a task's connections class; subclass with ``dimensions=(...)``.

    Class attributes
    ----------------
    dimensions : tuple of str
        The quantum dimensions of the task.
    connections : dict of str to Connection
        Every declared connection, by attribute name, in declaration order.
    """

    dimensions: ClassVar[tuple[str, ...]] = ()
    connections: ClassVar[dict[str, Connection]] = {}

    def __init_subclass__(cls, dimensions: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Connection] = {}
        for base in reversed(cls.__mro__[1:]):
            found.update(getattr(base, "connections", {}) or {})
        for name, value in vars(cls).items():
            if isinstance(value, Connection):
                found[name] = value
        cls.connections = found
        if dimensions is not None:
            if isinstance(dimensions, str):
                raise PipelineDefinitionError(
                    f"{cls.__name__}: dimensions must be a sequence of names, not the string {dimensions!r}"
                )
            cls.dimensions = tuple(dimensions)
        for name, conn in found.items():
            if conn.kind in ("init_input", "init_output") and conn.dimensions:
                raise PipelineDefinitionError(
                    f"{cls.__name__}.{name}: init-inputs/outputs have no dimensions, got {conn.dimensions}"
                )

    @classmethod
    def of_kind(cls, *kinds: ConnectionKind) -> Iterator[tuple[str, Connection]]:
        """(attribute name, connection) pairs of the given kinds."""
        for name, conn in cls.connections.items():
            if conn.kind in kinds:
                yield name, conn
