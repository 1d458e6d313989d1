"""Memoization (REQ-0031): reuse a quantum's outputs made from the same inputs, config and code.

Predicted output ids are deterministic (uuid5 of type, data ID and run), so
"do the outputs exist?" is one registry lookup by id. They are reused only
if the quantum that made them (its provenance record) had the same task
config hash, code version and input datasets; otherwise — or when
memoization is off — existing outputs are an :class:`OutputExistsError`.
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
    """``run`` (nothing exists) or ``reuse`` (identical outputs exist)."""

    action: Literal["run", "reuse"]
    reason: str = ""


def check_memo(registry: Registry, quantum: Quantum, node: TaskNode, *, memoize: bool) -> MemoDecision:
    """Decide whether a quantum must run.

    Raises
    ------
    OutputExistsError
        Outputs exist and memoization is off, or they were made with other
        inputs, config or code, or only some outputs exist.
    """
    predicted = quantum.output_refs()
    existing = registry.get_datasets([r.id for r in predicted])
    if not existing:
        return MemoDecision("run")
    where: dict[str, Any] = dict(task_label=node.label, data_id=quantum.data_id)
    if not memoize:
        raise OutputExistsError(
            f"{len(existing)} output(s) exist already in run {predicted[0].run!r} "
            f"(e.g. {existing[0].dataset_type.name}) "
            "and memoization is off; write to a new run", **where)
    meta = quantum.outputs[METADATA_CONNECTION][0]
    prov = registry.get_provenance(meta)
    if prov is None or len(existing) != len(predicted):
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
