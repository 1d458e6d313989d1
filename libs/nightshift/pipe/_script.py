"""Functions behind ``nightshift pipeline ...`` (the CLI is a thin shell over these)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import yaml

from ._exceptions import ConfigOverrideError
from ._graph import QuantumGraph
from ._pipeline import Pipeline
from ._preflight import build_quantum_graph
from .executors import DaskExecutor, Executor, InProcessExecutor, MultiProcessExecutor, ProgressCallback

__all__ = ["build_graph", "load_pipeline", "make_executor", "show_config", "show_graph"]


def load_pipeline(path: str | os.PathLike[str], overrides: Sequence[str] = (),
                  override_files: Sequence[str] = ()) -> Pipeline:
    """Read a pipeline and apply ``label:key=value`` overrides and ``label:file.yaml`` override files, in order."""
    pipe = Pipeline.from_yaml(path)
    for spec in override_files:
        label, sep, file = spec.partition(":")
        if not sep or not file:
            raise ConfigOverrideError(f"config file option {spec!r} must be label:path.yaml")
        pipe.add_config_file(label, file)
    for text in overrides:
        pipe.add_override_string(text)
    return pipe


def show_config(pipe: Pipeline, label: str | None = None) -> str:
    """YAML of the final config of each task (or one), with the overrides that made it."""
    out: dict[str, Any] = {}
    for node in pipe.resolve():
        if label is None or node.label == label:
            out[node.label] = node.config_snapshot()
    if label is not None and not out:
        pipe.task_spec(label)
    return yaml.safe_dump(out, sort_keys=False)


def build_graph(repo: str | os.PathLike[str], pipe: Pipeline, *, collections: Sequence[str], run: str,
                where: str = "", outputs: Sequence[str] = (), output_where: str = "",
                steps: Sequence[str] = (), log_level: str | None = None) -> QuantumGraph:
    """Pre-flight against the repository's registry (standard logging at ``log_level``, if given)."""
    from ..butler import Butler
    from ..butler.registry import Registry

    with Butler(repo) as butler:
        registry: Registry = butler.registry
        return build_quantum_graph(registry, pipe, collections=list(collections), run=run, where=where,
                                   outputs=list(outputs), output_where=output_where, steps=list(steps),
                                   log_level=log_level)


def show_graph(graph: QuantumGraph, *, list_quanta: bool = False) -> str:
    """A human summary: tasks, quanta per task, run, collections, explanation."""
    s = graph.summary()
    lines = [f"run: {s['run']}", f"input collections: {graph.metadata.get('collections')}",
             f"where: {graph.metadata.get('where') or '-'}", f"quanta: {s['quanta']}  edges: {s['edges']}  "
             f"input refs: {s['input_refs']}  output refs: {s['output_refs']}", "tasks:"]
    for label, n in s["tasks"].items():
        node = graph.tasks[label]
        lines.append(f"  {label:<24} {n:>8} quanta  dims {list(node.dimensions)}  step {node.step or '-'}  "
                     f"config {node.config_hash}")
    if s["explanation"]:
        lines.append("explanation: " + s["explanation"])
    if list_quanta:
        deps = graph.dependencies()
        for q in graph.quanta:
            lines.append(f"  [{q.index}] {q.describe()} <- {deps[q.index]}")
    return "\n".join(lines)


def make_executor(kind: str, repo: str | os.PathLike[str] | None, *, processes: int | None = None,
                  scheduler: str | None = None, memoize: bool = True, progress: ProgressCallback | None = None,
                  log_level: str | None = None, kafka_bootstrap: str | None = None, topic_prefix: str = "",
                  quantum_timeout: float | None = None, stage_dir: str | None = None) -> Executor:
    """An executor by name: ``inprocess``, ``multiprocess``, ``dask`` or ``kafka``."""
    common: dict[str, Any] = {"memoize": memoize, "progress": progress, "log_level": log_level,
                              "stage_dir": stage_dir}
    if kind == "inprocess":
        return InProcessExecutor(repo, **common)
    if kind == "multiprocess":
        return MultiProcessExecutor(repo, processes=processes, **common)
    if kind == "dask":
        if not scheduler:
            raise ValueError("the dask executor needs a scheduler address (--dask-scheduler tcp://host:8786)")
        return DaskExecutor(repo, client=scheduler, **common)
    if kind == "kafka":
        from .executors._kafka import KafkaExecutor, QuantumTopics

        if not kafka_bootstrap:
            raise ValueError("the kafka executor needs the brokers (--kafka-bootstrap host:port or KAFKA_BOOTSTRAP)")
        return KafkaExecutor(repo, bootstrap=kafka_bootstrap, topics=QuantumTopics.with_prefix(topic_prefix),
                             quantum_timeout=quantum_timeout, **common)
    raise ValueError(f"unknown executor {kind!r} (inprocess, multiprocess, dask, kafka)")
