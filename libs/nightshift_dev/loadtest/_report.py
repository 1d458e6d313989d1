"""The operator's report of a load test: an HTML page with PNG plots (matplotlib), next to ``result.json``.

Plots: a latency histogram per budget (target line drawn), a Gantt-style timeline of
each of the first visits (one row per detector, one colour per stage), throughput and
lag over time, and CPU and memory of each process over time.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the non-interactive backend

from ._results import LoadTestResult, Span  # noqa: E402

__all__ = ["write_report"]

_STAGE_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                  "tab:gray", "tab:olive", "tab:cyan"]
_MAX_GANTT_VISITS = 3


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _histograms(result: LoadTestResult, out: Path) -> list[tuple[str, str]]:
    figures = []
    for b in result.budgets:
        if not b.samples:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.6))
        ax.hist(b.samples, bins=min(40, max(5, len(b.samples) // 2)), color="tab:blue", alpha=0.8)
        ax.axvline(b.target_s, color="tab:red", ls="--", label=f"budget {b.target_s:g} s")
        ax.axvline(b.p95, color="black", ls=":", label=f"p95 {b.p95:.3f} s")
        ax.set_xlabel("seconds")
        ax.set_ylabel("count")
        ax.set_title(f"{b.name} [{b.mode}]")
        ax.legend()
        fig.tight_layout()
        name = f"hist-{_slug(b.name)}.png"
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        figures.append((name, f"Latency histogram: {b.name}"))
    return figures


def _gantt(result: LoadTestResult, out: Path) -> list[tuple[str, str]]:
    visits = sorted({s.visit for s in result.timeline})[:_MAX_GANTT_VISITS]
    stages = list(dict.fromkeys(s.stage for s in result.timeline))
    colour = {st: _STAGE_COLOURS[i % len(_STAGE_COLOURS)] for i, st in enumerate(stages)}
    figures = []
    for v in visits:
        spans: list[Span] = [s for s in result.timeline if s.visit == v]
        t0 = min(s.start for s in spans)
        dets = sorted({s.detector for s in spans})
        row = {d: i for i, d in enumerate(dets)}
        fig, ax = plt.subplots(figsize=(9, max(3.0, min(14.0, 0.06 * len(dets) + 2))))
        for st in stages:
            mine = [s for s in spans if s.stage == st]
            if mine:
                ax.barh([row[s.detector] for s in mine], [s.end - s.start for s in mine],
                        left=[s.start - t0 for s in mine], height=0.8, color=colour[st], label=st)
        ax.set_xlabel(f"seconds since the visit's first span (visit {v})")
        ax.set_ylabel("detector (row)")
        if len(dets) <= 20:
            ax.set_yticks(range(len(dets)), [str(d) for d in dets])
        ax.set_title(f"visit {v}: per-detector timeline")
        ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        name = f"timeline-visit-{v}.png"
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        figures.append((name, f"Timeline of visit {v} (Gantt, one row per detector)"))
    return figures


def _series(result: LoadTestResult, out: Path) -> list[tuple[str, str]]:
    if not result.series:
        return []
    n = len(result.series)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.6 * n), sharex=True, squeeze=False)
    for ax, (name, points) in zip(axes[:, 0], result.series.items(), strict=True):
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], ".-", ms=3)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("seconds since the run started")
    fig.suptitle("throughput and lag over time")
    fig.tight_layout()
    fig.savefig(out / "series.png", dpi=90)
    plt.close(fig)
    return [("series.png", "Throughput and lag over time")]


def _resources(result: LoadTestResult, out: Path) -> list[tuple[str, str]]:
    if not any(result.resources.values()):
        return []
    fig, (cpu, mem) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    for name, points in result.resources.items():
        if points:
            cpu.plot([p[0] for p in points], [p[1] for p in points], label=name, lw=1)
            mem.plot([p[0] for p in points], [p[2] for p in points], label=name, lw=1)
    cpu.set_ylabel("CPU %")
    mem.set_ylabel("RSS MB")
    mem.set_xlabel("seconds since the run started")
    cpu.legend(fontsize="small", ncol=2)
    cpu.grid(alpha=0.3)
    mem.grid(alpha=0.3)
    fig.suptitle("resource use per process")
    fig.tight_layout()
    fig.savefig(out / "resources.png", dpi=90)
    plt.close(fig)
    return [("resources.png", "CPU and memory of each process over time")]


def _fmt(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.3f}"


def write_report(result: LoadTestResult, directory: Path) -> Path:
    """Write ``report.html`` and its PNG plots (and ``result.json``) into ``directory``; returns the HTML path."""
    directory.mkdir(parents=True, exist_ok=True)
    result.save(directory)
    figures = _histograms(result, directory) + _gantt(result, directory) + _series(result, directory) \
        + _resources(result, directory)
    e = html.escape
    rows = "".join(
        f"<tr class='{'met' if b.met else 'missed'}'><td>{e(b.name)}</td><td>{e(b.mode)}</td>"
        f"<td>{b.target_s:g}</td><td>{'' if b.seed_s is None else f'{b.seed_s:g}'}</td><td>{len(b.samples)}</td>"
        f"<td>{_fmt(b.p50)}</td><td>{_fmt(b.p95)}</td><td>{_fmt(b.max)}</td><td>{_fmt(b.margin_s)}</td>"
        f"<td>{'met' if b.met else 'MISSED'}</td></tr>"
        for b in result.budgets)
    machine = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in result.machine.items())
    extra = "".join(f"<tr><th>{e(k)}</th><td><code>{e(str(v))}</code></td></tr>" for k, v in result.extra.items())
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    imgs = "".join(f"<figure><img src='{e(name)}' alt='{e(caption)}'><figcaption>{e(caption)}</figcaption></figure>"
                   for name, caption in figures)
    failed = f"<p class='missed'><b>The run failed:</b> {e(result.failed)}</p>" if result.failed else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nightshift loadtest {e(result.kind)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
tr.missed td:last-child, p.missed {{ color: #b00; font-weight: bold; }} tr.met td:last-child {{ color: #070; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head><body>
<h1>nightshift loadtest {e(result.kind)}</h1>
<p>Command: <code>{e(result.command)}</code></p>
<p class="summary">{e(result.summary_line())}</p>
{failed}
<h2>Budgets (seconds)</h2>
<table><tr><th>budget</th><th>mode</th><th>target</th><th>seed ceiling</th><th>n</th><th>p50</th><th>p95</th>
<th>max</th><th>margin (target − p95)</th><th>verdict</th></tr>{rows}</table>
<h2>Plots</h2>{imgs}
<h2>Figures</h2><table>{extra}</table>
<h2>Notes</h2><ul>{notes}</ul>
<h2>Machine</h2><table>{machine}</table>
</body></html>
"""
    path = directory / "report.html"
    path.write_text(page)
    return path
