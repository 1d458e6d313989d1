"""Butler I/O around a task's ``run`` (REQ-0009, REQ-0013, REQ-0024).

A :class:`QuantumContext` is what a task's ``run_quantum`` sees: it reads
the quantum's inputs and collects its outputs. Reads go through the butler
the framework created for this quantum; each read is recorded, so the
provenance distinguishes *actual* inputs from predicted ones. Outputs are
written by the framework after ``run_quantum`` returns, all together.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..butler import DatasetRef
from ._exceptions import QuantumExecutionError
from ._graph import METADATA_CONNECTION, Quantum

if TYPE_CHECKING:
    from ..butler import Butler
    from ._pipeline import TaskNode

__all__ = ["QuantumContext"]


class QuantumContext:
    """Inputs and outputs of one quantum, read and written through a butler.

    Parameters
    ----------
    quantum : Quantum
    node : TaskNode
    butler : Butler or None
        None runs without I/O (inputs are None, outputs are discarded): the
        framework-overhead benchmark and dry runs.
    deferred_timeout : float
        Seconds to wait for a deferred input.
    """

    def __init__(self, quantum: Quantum, node: TaskNode, butler: Butler | None, *,
                 deferred_timeout: float = 300.0) -> None:
        self.quantum = quantum
        self.node = node
        self.butler = butler
        self.actual_inputs: dict[Any, DatasetRef] = {}
        self.pending: dict[str, Any] = {}
        self.deferred_timeout = deferred_timeout

    def _wait_for(self, refs: list[DatasetRef]) -> None:
        """Poll the registry until every ref exists (it is written by a cooperating quantum)."""
        butler = self.butler
        assert butler is not None  # deferred inputs are read only by quanta that do I/O
        deadline = time.monotonic() + self.deferred_timeout
        todo = {r.id for r in refs}
        delay = 0.01
        while todo:
            todo -= {r.id for r in butler.registry.get_datasets(list(todo))}
            if not todo:
                return
            if time.monotonic() > deadline:
                raise QuantumExecutionError(
                    f"deferred input(s) {sorted(map(str, todo))} did not appear within {self.deferred_timeout} s "
                    "(did the producing quantum fail?)", task_label=self.node.label, data_id=self.data_id)
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    @property
    def data_id(self) -> dict[str, int | str]:
        """The quantum's data ID."""
        return self.quantum.data_id

    def input_refs(self, name: str) -> list[DatasetRef]:
        """The resolved refs of an input connection (prerequisites included)."""
        if name not in self.node.connections or self.node.connections[name].kind not in ("input", "prerequisite"):
            raise KeyError(f"task {self.node.label!r} has no input connection {name!r}")
        return list(self.quantum.inputs.get(name, []))

    def get_ref(self, ref: DatasetRef) -> Any:
        """Read one input dataset (it must be one of this quantum's inputs)."""
        if not any(ref.id == r.id for refs in self.quantum.inputs.values() for r in refs):
            raise QuantumExecutionError(f"{ref.dataset_type.name} {dict(ref.data_id)} is not an input of this quantum",
                                        task_label=self.node.label, data_id=self.data_id)
        self.actual_inputs[ref.id] = ref
        if self.butler is None:
            return None
        return self.butler.get(ref)

    def get(self, name: str) -> Any:
        """Read an input connection: one object, or a list for ``multiple=True`` connections.

        A ``deferred`` input made by a quantum running in parallel is waited
        for (up to :attr:`deferred_timeout` seconds) before it is read.
        """
        refs = self.input_refs(name)
        if self.node.connections[name].deferred and self.butler is not None:
            self._wait_for(refs)
        objs = [self.get_ref(r) for r in refs]
        if self.node.connections[name].multiple:
            return objs
        return objs[0] if objs else None

    def get_all(self) -> dict[str, Any]:
        """Every input connection (regular and prerequisite) by name."""
        return {c.name: self.get(c.name) for c in self.node.of_kind("input", "prerequisite")}

    def put(self, name: str, obj: Any) -> None:
        """Hand over the object of one output connection (written after ``run_quantum``)."""
        conn = self.node.connections.get(name)
        if conn is None or conn.kind != "output":
            raise QuantumExecutionError(f"task returned {name!r}, which is not an output connection",
                                        task_label=self.node.label, data_id=self.data_id)
        self.pending[name] = obj

    def put_all(self, result: Any) -> None:
        """Hand over every output connection present in a :class:`Struct` or mapping result."""
        if result is None:
            return
        values: Mapping[str, Any] = result if isinstance(result, Mapping) else vars(result)
        for c in self.node.of_kind("output"):
            if c.name in values:
                self.put(c.name, values[c.name])

    def output_ref(self, name: str) -> DatasetRef:
        """The predicted ref of an output connection (or ``_metadata``)."""
        refs = self.quantum.outputs.get(name)
        if not refs:
            raise KeyError(f"no predicted output {name!r} for {self.quantum.describe()}")
        return refs[0]

    @property
    def metadata_ref(self) -> DatasetRef:
        """Where the framework writes this quantum's metadata."""
        return self.output_ref(METADATA_CONNECTION)
