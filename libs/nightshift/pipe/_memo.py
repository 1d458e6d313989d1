"""Memoization (REQ-0031): reuse a quantum's outputs made from the same inputs, config and code.

Predicted output ids are deterministic (uuid5 of type, data ID and run), so
"do the outputs exist?" is one registry lookup by id. Who made them is in
their provenance record:

- the *same execution* (its ``execution_id``): an earlier attempt of this
  very quantum in this run of the graph wrote them — a redelivered Kafka
  event after the runner died, a Dask task retried after its worker was
  lost, or a concurrent copy that committed first. The quantum has run: it
  is ``done`` (reported SUCCEEDED), with or without memoization.
- an *earlier execution* with the same task config hash, code version and
  input datasets: the outputs are reused (reported MEMOIZED) when
  memoization is on.

Anything else — memoization off, other inputs/config/code, outputs without a
complete provenance record — is an :class:`OutputExistsError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._exceptions import OutputExistsError
from ._graph import METADATA_CONNECTION, Quantum

if TYPE_CHECKING:
    from ..butler.registry import Registry
    from ._pipeline import TaskNode

__all__ = ["MemoDecision", "check_memo"]


@dataclass(frozen=True)
class MemoDecision:
    """What to do with a quantum whose outputs may exist.

    Attributes
    ----------
    action : {"run", "reuse", "done"}
        ``run``: nothing exists. ``reuse``: identical outputs of an earlier
        execution exist (MEMOIZED). ``done``: this same execution wrote the
        outputs already (SUCCEEDED).
    reason : str
        Which quantum made the outputs, for the log.
    n_actual_inputs : int
        For ``done``: the inputs the quantum actually read, per its provenance.
    """

    action: Literal["run", "reuse", "done"]
    reason: str = ""
    n_actual_inputs: int = 0


def check_memo(registry: Registry, quantum: Quantum, node: TaskNode, *, memoize: bool,
               execution_id: str | None = None) -> MemoDecision:
    """Decide whether a quantum must run.

    Parameters
    ----------
    registry : Registry
    quantum : Quantum
    node : TaskNode
        The quantum's task.
    memoize : bool
        Reuse identical outputs of an earlier execution.
    execution_id : str, optional
        The current execution; outputs its provenance attributes to it are
        ``done`` (None: no execution is known, nothing is ``done``).

    Raises
    ------
    OutputExistsError
        Outputs of an earlier execution exist and memoization is off, or they
        were made with other inputs, config or code, or only some outputs exist.
    """
    predicted = quantum.output_refs()
    existing = registry.get_datasets([r.id for r in predicted])
    if not existing:
        return MemoDecision("run")
    where: dict[str, Any] = dict(task_label=node.label, data_id=quantum.data_id)
    prov = registry.get_provenance(quantum.outputs[METADATA_CONNECTION][0])
    complete = prov is not None and len(existing) == len(predicted)
    if complete and execution_id is not None and prov is not None and prov.execution_id == execution_id:
        return MemoDecision("done", f"outputs written by quantum {prov.quantum_id} earlier in this execution",
                            len(prov.actual_inputs))
    if not memoize:
        raise OutputExistsError(
            f"{len(existing)} output(s) exist already in run {predicted[0].run!r} "
            f"(e.g. {existing[0].dataset_type.name}) "
            "and memoization is off; write to a new run", **where)
    if prov is None or not complete:
        raise OutputExistsError(
            f"{len(existing)} of {len(predicted)} outputs exist without a complete provenance record; "
            "they were not made by this framework's quantum — write to a new run", **where)
    changed = []
    if prov.config_hash != node.config_hash:
        changed.append(f"config hash {prov.config_hash} -> {node.config_hash}")
    if prov.code_version != node.code_version:
        changed.append(f"code version {prov.code_version} -> {node.code_version}")
    if {r.id for r in prov.predicted_inputs} != {r.id for r in quantum.input_refs()}:
        changed.append("input datasets differ")
    if changed:
        raise OutputExistsError("outputs exist but were made differently (" + "; ".join(changed) +
                                "); write to a new run", **where)
    return MemoDecision("reuse", f"outputs made by quantum {prov.quantum_id} with identical inputs, config and code")
