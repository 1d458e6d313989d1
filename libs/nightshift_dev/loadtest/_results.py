"""Load-test results: budgets with their samples, the timeline, series over time, the machine, JSON on disk."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Budget", "LoadTestResult", "Span", "machine_description"]


@dataclass
class Budget:
    """One time budget and the samples measured against it.

    Parameters
    ----------
    name : str
        What is timed, e.g. ``"timeToIssueAlerts per detector"``.
    target_s : float
        The target on this machine (issue 16), in seconds; the margin is measured against it.
    mode : str
        How the figure was made (``"catalogue"``: simulated DIA catalogues, no pixels; ``"services"``; ...).
    seed_s : float, optional
        The seed's own ceiling (LDM-556), for reference.
    samples : list of float
        Seconds, one per measured unit (detector, visit, round trip).
    """

    name: str
    target_s: float
    mode: str
    seed_s: float | None = None
    samples: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float:
        """The ``q``-th percentile of the samples (NaN without samples)."""
        return float(np.percentile(self.samples, q)) if self.samples else float("nan")

    @property
    def p50(self) -> float:
        return self.quantile(50)

    @property
    def p95(self) -> float:
        return self.quantile(95)

    @property
    def max(self) -> float:
        return float(max(self.samples)) if self.samples else float("nan")

    @property
    def margin_s(self) -> float:
        """Target minus p95: positive inside the budget, negative over it."""
        return self.target_s - self.p95

    @property
    def met(self) -> bool:
        return bool(self.samples) and self.p95 <= self.target_s

    def summary(self) -> str:
        """``name [mode]: budget T s, p95 P s, margin M s (met|MISSED)``."""
        if not self.samples:
            return f"{self.name} [{self.mode}]: budget {self.target_s:g} s, no samples"
        verdict = "met" if self.met else "MISSED"
        return (f"{self.name} [{self.mode}]: budget {self.target_s:g} s, p95 {self.p95:.3f} s, "
                f"margin {self.margin_s:+.3f} s ({verdict}, n={len(self.samples)})")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(p50=self.p50, p95=self.p95, max=self.max, margin_s=self.margin_s, met=self.met)
        return out


@dataclass
class Span:
    """One stage of one unit of work on the timeline (seconds since the run started)."""

    visit: int
    detector: int
    stage: str
    start: float
    end: float

    def __post_init__(self) -> None:
        self.start, self.end = round(self.start, 4), round(self.end, 4)


def machine_description() -> dict[str, Any]:
    """CPU model and count, memory, OS, Python and load average of this machine, now."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        import psutil

        mem = int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil is a dependency
        pass
    return {
        "cpu_model": model, "cpus": os.cpu_count(), "memory_gb": round(mem / 2**30, 1),
        "os": platform.platform(), "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class LoadTestResult:
    """Everything one load-test run measured; :meth:`save` writes ``result.json`` into its directory.

    Parameters
    ----------
    kind : str
        ``visit``, ``roundtrip``, ``night``.
    command : str
        The command line that made it (recorded with the figures).
    """

    kind: str
    command: str
    started: float = field(default_factory=time.time)
    machine: dict[str, Any] = field(default_factory=machine_description)
    budgets: list[Budget] = field(default_factory=list)
    timeline: list[Span] = field(default_factory=list)
    #: name -> [(seconds since start, value)], e.g. "alerts/s", "consumer lag (events)"
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: process name -> [(seconds since start, CPU %, RSS MB)]
    resources: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    #: free-form figures (counts, stage breakdown, reconciliation)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failed: str | None = None

    def budget(self, name: str) -> Budget:
        """The budget called ``name`` (KeyError if none)."""
        for b in self.budgets:
            if b.name == name:
                return b
        raise KeyError(name)

    def summary_line(self) -> str:
        """One line: each budget with its p95 and margin."""
        parts = [b.summary() for b in self.budgets]
        head = f"loadtest {self.kind}"
        if self.failed:
            head += f" FAILED ({self.failed})"
        return head + ": " + "; ".join(parts) + f" (load {self.machine['load_average'][0]})"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "command": self.command, "started": self.started, "machine": self.machine,
            "budgets": [b.to_json() for b in self.budgets], "timeline": [asdict(s) for s in self.timeline],
            "series": self.series, "resources": self.resources, "extra": self.extra, "notes": self.notes,
            "failed": self.failed, "summary": self.summary_line(),
        }

    def save(self, directory: Path) -> Path:
        """Write ``result.json`` into ``directory`` (created); returns its path."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "result.json"
        path.write_text(json.dumps(self.to_json(), separators=(",", ":"), default=float))  # compact: runs are large
        return path

    @classmethod
    def load(cls, path: Path) -> LoadTestResult:
        """A result read back from ``result.json``."""
        d = json.loads(path.read_text())
        budgets = [Budget(b["name"], b["target_s"], b["mode"], b.get("seed_s"), list(b["samples"]))
                   for b in d["budgets"]]
        return cls(kind=d["kind"], command=d["command"], started=d["started"], machine=d["machine"],
                   budgets=budgets, timeline=[Span(**s) for s in d["timeline"]],
                   series={k: [(p[0], p[1]) for p in v] for k, v in d["series"].items()},
                   resources={k: [(p[0], p[1], p[2]) for p in v] for k, v in d["resources"].items()},
                   extra=d["extra"], notes=d["notes"], failed=d.get("failed"))
