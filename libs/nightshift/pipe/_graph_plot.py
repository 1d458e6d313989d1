"""A picture of a quantum graph as a PNG (matplotlib only; no graphviz binary)."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._graph import QuantumGraph

__all__ = ["plot_graph"]


def _layers(n: int, deps: list[list[int]]) -> list[int]:
    depth = [0] * n
    for i in range(n):  # quanta are stored after their dependencies
        if deps[i]:
            depth[i] = 1 + max(depth[d] for d in deps[i])
    return depth


def plot_graph(graph: QuantumGraph, path: str | os.PathLike[str], *, max_quanta: int = 150) -> None:
    """Draw quanta (small graphs) or tasks with quantum counts (large graphs), layered left to right."""
    from matplotlib.figure import Figure  # the object API: no pyplot, no backend switch in the caller's session

    labels = list(graph.tasks)
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    if 0 < len(graph) <= max_quanta:
        deps = graph.dependencies()
        depth = _layers(len(graph), deps)
        rows: dict[int, list[int]] = defaultdict(list)
        for i, d in enumerate(depth):
            rows[d].append(i)
        pos = {}
        for d, members in rows.items():
            for k, i in enumerate(members):
                pos[i] = (d, k - (len(members) - 1) / 2)
        height = max(3.0, 0.25 * max(len(m) for m in rows.values()))
        fig = Figure(figsize=(3 + 3 * len(rows), height))
        ax = fig.add_subplot()
        for i, ds in enumerate(deps):
            for d in ds:
                ax.plot([pos[d][0], pos[i][0]], [pos[d][1], pos[i][1]], color="0.7", lw=0.5, zorder=1)
        for label in labels:
            pts = [pos[q.index] for q in graph.quanta if q.task_label == label]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=40, color=colors[label], label=label, zorder=2)
        ax.set_title(f"quantum graph: {len(graph)} quanta (run {graph.run})")
    else:
        counts = graph.counts()
        producer: dict[str, str] = {}
        for label, node in graph.tasks.items():
            for c in node.of_kind("output", "init_output"):
                producer[c.dataset_type.name] = label
        tdeps = [[labels.index(producer[c.dataset_type.name]) for c in graph.tasks[lab].of_kind("input", "init_input")
                  if c.dataset_type.name in producer] for lab in labels]
        depth = _layers(len(labels), tdeps)
        fig = Figure(figsize=(3 + 3 * (max(depth, default=0) + 1), 3 + 0.5 * len(labels)))
        ax = fig.add_subplot()
        seen: dict[int, int] = defaultdict(int)
        pos = {}
        for i, d in enumerate(depth):
            pos[i] = (d, -seen[d])
            seen[d] += 1
        for i, ds in enumerate(tdeps):
            for d in set(ds):
                ax.annotate("", xy=pos[i], xytext=pos[d], arrowprops={"arrowstyle": "->", "color": "0.5"})
        for i, label in enumerate(labels):
            ax.scatter([pos[i][0]], [pos[i][1]], s=600, color=colors[label], zorder=2)
            ax.annotate(f"{label}\n{counts.get(label, 0)} quanta", pos[i], textcoords="offset points",
                        xytext=(0, 14), ha="center")
        ax.set_title(f"quantum graph by task: {len(graph)} quanta (run {graph.run})")
        ax.margins(0.3)
    ax.set_axis_off()
    if len(labels) > 1 and 0 < len(graph) <= max_quanta:
        ax.legend(loc="best", fontsize="small")
    fig.savefig(os.fspath(path), format="png", dpi=80, bbox_inches="tight")
