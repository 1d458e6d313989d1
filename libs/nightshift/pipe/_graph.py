"""The quantum graph: the result of pre-flight (REQ-0011, REQ-0021).

Each node is a :class:`Quantum` — one task applied to one data ID, with its
resolved inputs (prerequisites included) and predicted outputs. Edges are
implied: quantum B depends on quantum A when B reads a dataset A writes.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..butler import DatasetRef
from ._pipeline import TaskNode

__all__ = ["QUANTUM_ID_NAMESPACE", "Quantum", "QuantumGraph"]

QUANTUM_ID_NAMESPACE = uuid.UUID("0c5a7a39-7d52-5b0e-9a51-9a3f0b2a6f10")
METADATA_CONNECTION = "_metadata"


@dataclass
class Quantum:
    """One unit of work: a task label, a data ID, its inputs and predicted outputs.

    Attributes
    ----------
    index : int
        Position in the graph (stable across serialization).
    task_label : str
    data_id : dict
        Values of the task's quantum dimensions.
    inputs : dict of str to list of DatasetRef
        Resolved inputs by connection name, prerequisite inputs included.
    outputs : dict of str to list of DatasetRef
        Predicted outputs by connection name (``_metadata``: the framework's
        per-quantum metadata dataset).
    """

    index: int
    task_label: str
    data_id: dict[str, int | str]
    inputs: dict[str, list[DatasetRef]] = field(default_factory=dict)
    outputs: dict[str, list[DatasetRef]] = field(default_factory=dict)

    @property
    def id(self) -> uuid.UUID:
        """Deterministic id: uuid5 of the task label, data ID and the metadata output's id."""
        meta = self.outputs.get(METADATA_CONNECTION)
        run = meta[0].run if meta else ""
        key = ";".join([self.task_label, run, *(f"{k}={self.data_id[k]!r}" for k in sorted(self.data_id))])
        return uuid.uuid5(QUANTUM_ID_NAMESPACE, key)

    def input_refs(self) -> list[DatasetRef]:
        """Every input ref (all connections), in connection order."""
        return [r for refs in self.inputs.values() for r in refs]

    def output_refs(self) -> list[DatasetRef]:
        """Every predicted output ref."""
        return [r for refs in self.outputs.values() for r in refs]

    def describe(self) -> str:
        """``label {data id}`` for messages."""
        return f"{self.task_label} {self.data_id}"


class QuantumGraph:
    """A DAG of quanta, with the tasks that make them and what produced it.

    Parameters
    ----------
    tasks : sequence of TaskNode
        The pipeline's tasks in execution order.
    quanta : sequence of Quantum
        Ordered so every quantum comes after the quanta it depends on.
    init_inputs, init_outputs : mapping of label to (connection -> DatasetRef)
        Per-task datasets read/written once per run (``_config`` included in outputs).
    metadata : mapping
        Run, input collections, query, pipeline definition with overrides,
        creation time, versions, and — for an empty graph — ``explanation``.
    """

    def __init__(
        self,
        tasks: Sequence[TaskNode],
        quanta: Sequence[Quantum],
        *,
        init_inputs: Mapping[str, Mapping[str, DatasetRef]] | None = None,
        init_outputs: Mapping[str, Mapping[str, DatasetRef]] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.tasks: dict[str, TaskNode] = {t.label: t for t in tasks}
        self.quanta: list[Quantum] = list(quanta)
        for i, q in enumerate(self.quanta):
            q.index = i
        self.init_inputs = {k: dict(v) for k, v in (init_inputs or {}).items()}
        self.init_outputs = {k: dict(v) for k, v in (init_outputs or {}).items()}
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._deps: list[list[int]] | None = None

    # ------------------------------------------------------------------ structure
    def __len__(self) -> int:
        return len(self.quanta)

    def __iter__(self) -> Iterator[Quantum]:
        return iter(self.quanta)

    @property
    def explanation(self) -> str | None:
        """Why the graph is empty (or partial), when pre-flight dropped data IDs."""
        return self.metadata.get("explanation")

    @property
    def run(self) -> str | None:
        """The output RUN collection."""
        return self.metadata.get("run")

    def quanta_for(self, label: str) -> list[Quantum]:
        """The quanta of one task."""
        return [q for q in self.quanta if q.task_label == label]

    def counts(self) -> dict[str, int]:
        """Number of quanta per task label, in task order."""
        c = Counter(q.task_label for q in self.quanta)
        return {label: c.get(label, 0) for label in self.tasks}

    def dependencies(self) -> list[list[int]]:
        """For each quantum index, the indices of the quanta it depends on (cached)."""
        if self._deps is None:
            producer: dict[uuid.UUID, int] = {}
            for q in self.quanta:
                for refs in q.outputs.values():
                    for r in refs:
                        producer[r.id] = q.index
            deps: list[list[int]] = []
            for q in self.quanta:
                found = {producer[r.id] for refs in q.inputs.values() for r in refs if r.id in producer}
                found.discard(q.index)
                deps.append(sorted(found))
            self._deps = deps
        return self._deps

    def start_dependencies(self) -> list[list[int]]:
        """Like :meth:`dependencies`, without links made only by deferred inputs.

        A quantum may start once these have finished; it waits for its
        deferred inputs while running (REQ-0030).
        """
        deferred = {label: {c.name for c in node.of_kind("input") if c.deferred} for label, node in self.tasks.items()}
        if not any(deferred.values()):
            return self.dependencies()
        producer: dict[uuid.UUID, int] = {}
        for q in self.quanta:
            for r in q.output_refs():
                producer[r.id] = q.index
        out: list[list[int]] = []
        for q in self.quanta:
            soft = deferred.get(q.task_label, set())
            found = {producer[r.id] for name, refs in q.inputs.items() if name not in soft
                     for r in refs if r.id in producer}
            found.discard(q.index)
            out.append(sorted(found))
        return out

    def dependents(self) -> list[list[int]]:
        """For each quantum index, the indices of the quanta that depend on it."""
        out: list[list[int]] = [[] for _ in self.quanta]
        for i, deps in enumerate(self.dependencies()):
            for d in deps:
                out[d].append(i)
        return out

    def descendants(self, index: int) -> set[int]:
        """Every quantum that (transitively) depends on quantum ``index``."""
        children = self.dependents()
        seen: set[int] = set()
        todo = [index]
        while todo:
            for c in children[todo.pop()]:
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        return seen

    def subset(self, indices: Sequence[int]) -> QuantumGraph:
        """A graph of some quanta (e.g. a campaign's), with the same tasks and metadata."""
        keep = sorted(set(indices))
        quanta = [Quantum(0, q.task_label, q.data_id, q.inputs, q.outputs) for q in (self.quanta[i] for i in keep)]
        return QuantumGraph(list(self.tasks.values()), quanta, init_inputs=self.init_inputs,
                            init_outputs=self.init_outputs, metadata=self.metadata)

    def summary(self) -> dict[str, Any]:
        """Counts for humans and logs: quanta per task, datasets, edges."""
        deps = self.dependencies()
        n_in = sum(len(q.input_refs()) for q in self.quanta)
        return {"quanta": len(self.quanta), "tasks": self.counts(), "edges": sum(len(d) for d in deps),
                "input_refs": n_in, "output_refs": sum(len(q.output_refs()) for q in self.quanta),
                "run": self.run, "explanation": self.explanation}

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the compact versioned file (see :mod:`._graph_io`); returns its size in bytes."""
        from ._graph_io import write_graph

        return write_graph(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QuantumGraph:
        """Read a file written by :meth:`save` (in any process).

        Raises
        ------
        GraphFormatError
            If the file is not a quantum graph or its version is not supported.
        """
        from ._graph_io import read_graph

        return read_graph(path)

    def to_bytes(self) -> bytes:
        """The serialized graph in memory."""
        from ._graph_io import graph_to_bytes

        return graph_to_bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantumGraph:
        """Inverse of :meth:`to_bytes`."""
        from ._graph_io import graph_from_bytes

        return graph_from_bytes(data)

    def plot(self, path: str | os.PathLike[str], *, max_quanta: int = 150) -> None:
        """Draw the graph as a PNG (quanta if at most ``max_quanta``, else tasks)."""
        from ._graph_plot import plot_graph

        plot_graph(self, path, max_quanta=max_quanta)
