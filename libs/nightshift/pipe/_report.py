"""Per-quantum status, timing and errors, and the report of a whole run."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from ._exceptions import ExecutionFailedError

__all__ = ["ExecutionReport", "QuantumReport", "QuantumStatus"]


class QuantumStatus(str, Enum):  # noqa: UP042 - a StrEnum would change str() and f-string output
    """Where a quantum is."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"  # this execution wrote its outputs (perhaps in an earlier attempt that then died)
    MEMOIZED = "memoized"   # identical outputs of an earlier execution existed (REQ-0031)
    FAILED = "failed"
    BLOCKED = "blocked"     # an upstream quantum failed: not run, not silently skipped


@dataclass
class QuantumReport:
    """What happened to one quantum."""

    index: int
    task_label: str
    data_id: dict[str, Any]
    status: QuantumStatus = QuantumStatus.PENDING
    start: float | None = None
    end: float | None = None
    host: str | None = None
    pid: int | None = None
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    blocked_by: int | None = None
    n_actual_inputs: int | None = None
    n_outputs: int | None = None

    @property
    def seconds(self) -> float | None:
        """Wall time of the quantum in its worker."""
        return None if self.start is None or self.end is None else self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, with ``seconds``."""
        out = asdict(self)
        out["status"] = self.status.value
        out["seconds"] = self.seconds
        return out


@dataclass
class ExecutionReport:
    """Every quantum's report plus the run's wall time.

    ``execution_id`` identifies this execution; the provenance record of every
    output it wrote carries the same id.
    """

    quanta: list[QuantumReport]
    executor: str = ""
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    execution_id: str = ""

    def counts(self) -> dict[str, int]:
        """Number of quanta per status."""
        c = Counter(q.status.value for q in self.quanta)
        return {s.value: c.get(s.value, 0) for s in QuantumStatus}

    @property
    def ok(self) -> bool:
        """True when no quantum failed or is blocked or pending."""
        return all(q.status in (QuantumStatus.SUCCEEDED, QuantumStatus.MEMOIZED) for q in self.quanta)

    def failures(self) -> list[QuantumReport]:
        """The failed quanta."""
        return [q for q in self.quanta if q.status is QuantumStatus.FAILED]

    def raise_for_failures(self) -> None:
        """Raise :class:`ExecutionFailedError` naming the first failed quanta (label and data ID).

        Raises
        ------
        ExecutionFailedError
            If any quantum failed or was blocked.
        """
        if self.ok:
            return
        counts = self.counts()
        lines = [f"{q.task_label} {q.data_id}: {q.error_type}: {q.error}" for q in self.failures()[:5]]
        raise ExecutionFailedError(
            f"{counts['failed']} quanta failed, {counts['blocked']} blocked, {counts['pending']} not run; "
            + "; ".join(lines), self)

    def to_json(self) -> str:
        """JSON of the whole report."""
        return json.dumps({"executor": self.executor, "execution_id": self.execution_id,
                           "wall_seconds": self.wall_seconds, "counts": self.counts(), "extra": self.extra,
                           "quanta": [q.to_dict() for q in self.quanta]}, default=str)
