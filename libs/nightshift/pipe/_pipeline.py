"""Pipelines: labelled tasks in order, grouped into steps, with recorded config overrides.

YAML form (the Python API builds the same object)::

    description: single-frame processing then per-visit summary
    tasks:
      calibrate:
        class: nightshift.pipe.examples:CalibrateTask
        config: {threshold: 4.0, connections: {raw: raw}}
        config_files: [overrides/calibrate.yaml]      # relative to this file
      summarize:
        class: nightshift.pipe.examples:VisitSummaryTask
    steps:                                             # optional; each with its own data grouping
      - {label: single_frame, tasks: [calibrate], dimensions: [instrument, visit, detector]}
      - {label: per_visit, tasks: [summarize], dimensions: [instrument, visit]}

:meth:`Pipeline.resolve` checks it (importable tasks, connection
consistency, output dimensions, cycles, steps) and returns the tasks as
:class:`TaskNode` objects in an execution order.
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ..butler import DatasetType
from ._config import (
    ConfigOverride,
    PipelineTaskConfig,
    apply_overrides,
    config_hash,
    load_override_file,
    parse_override,
)
from ._connections import Connection, ConnectionKind, PrerequisiteLookup
from ._exceptions import ConfigOverrideError, PipelineDefinitionError
from ._task import PipelineTask, code_version_of

__all__ = [
    "CONFIG_SUFFIX",
    "METADATA_SUFFIX",
    "Pipeline",
    "ResolvedConnection",
    "Step",
    "TaskNode",
    "TaskSpec",
    "import_task_class",
]

#: Init-output written per task per run holding the config snapshot (REQ-0016, REQ-0026).
CONFIG_SUFFIX = "_config"
#: Output written per quantum with host, timing and actual inputs (REQ-0024, REQ-0026).
METADATA_SUFFIX = "_metadata"


def import_task_class(path: str) -> type[PipelineTask]:
    """Import ``package.module:Class`` (or ``package.module.Class``) and check it is a PipelineTask.

    Raises
    ------
    PipelineDefinitionError
        If it cannot be imported or is not a :class:`PipelineTask` subclass.
    """
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise PipelineDefinitionError(f"cannot import task class {path!r}: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, PipelineTask)):
        raise PipelineDefinitionError(f"{path!r} is not a PipelineTask subclass")
    return obj


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


@dataclass
class TaskSpec:
    """A task as declared in a pipeline (before validation)."""

    label: str
    task_class: str
    config: dict[str, Any] = field(default_factory=dict)
    overrides: list[ConfigOverride] = field(default_factory=list)
    inserted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of this task (class, config, overrides, inserted)."""
        out: dict[str, Any] = {"class": self.task_class}
        if self.config:
            out["config"] = copy.deepcopy(self.config)
        if self.overrides:
            out["overrides"] = [o.to_dict() for o in self.overrides]
        if self.inserted:
            out["inserted"] = True
        return out


@dataclass(frozen=True)
class Step:
    """An ordered group of tasks sharing a data grouping (sharding dimensions)."""

    label: str
    tasks: tuple[str, ...]
    dimensions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of this step."""
        return {"label": self.label, "tasks": list(self.tasks), "dimensions": list(self.dimensions)}


@dataclass(frozen=True)
class ResolvedConnection:
    """A connection with its final dataset type (config overrides applied)."""

    name: str
    kind: ConnectionKind
    dataset_type: DatasetType
    multiple: bool = False
    min_count: int = 1
    lookup: PrerequisiteLookup | None = field(default=None, compare=False)
    deferred: bool = False


@dataclass(frozen=True)
class TaskNode:
    """A validated task of a pipeline: class, final config and resolved connections.

    Attributes
    ----------
    label : str
    task_class_name : str
        ``module:Class`` import path.
    config : PipelineTaskConfig
    config_hash, code_version : str
    dimensions : tuple of str
        Quantum dimensions (the data grouping).
    connections : dict of str to ResolvedConnection
    step : str or None
    overrides : tuple of ConfigOverride
    """

    label: str
    task_class_name: str
    config: PipelineTaskConfig
    config_hash: str
    code_version: str
    dimensions: tuple[str, ...]
    connections: dict[str, ResolvedConnection]
    step: str | None = None
    overrides: tuple[ConfigOverride, ...] = ()

    @cached_property
    def task_class(self) -> type[PipelineTask]:
        """The task class (imported on first use)."""
        return import_task_class(self.task_class_name)

    def of_kind(self, *kinds: ConnectionKind) -> list[ResolvedConnection]:
        """Resolved connections of the given kinds, in declaration order."""
        return [c for c in self.connections.values() if c.kind in kinds]

    @property
    def config_dataset_type(self) -> DatasetType:
        """Dataset type of the per-run config snapshot of this task."""
        return DatasetType(self.label + CONFIG_SUFFIX, (), "StructuredDataDict")

    @property
    def metadata_dataset_type(self) -> DatasetType:
        """Dataset type of the per-quantum metadata (host, timing, actual inputs)."""
        return DatasetType(self.label + METADATA_SUFFIX, self.dimensions, "StructuredDataDict")

    def config_snapshot(self) -> dict[str, Any]:
        """What is written as the ``<label>_config`` dataset."""
        return {
            "label": self.label, "task_class": self.task_class_name, "config": self.config.model_dump(mode="json"),
            "config_hash": self.config_hash, "code_version": self.code_version,
            "overrides": [o.to_dict() for o in self.overrides],
        }


class Pipeline:
    """An ordered set of labelled tasks with configs and optional steps (REQ-0001, 0003, 0004, 0017).

    Parameters
    ----------
    description : str
        What the pipeline does.
    """

    def __init__(self, description: str = "") -> None:
        self.description = description
        self._tasks: dict[str, TaskSpec] = {}
        self._steps: list[Step] = []
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ building
    @property
    def labels(self) -> tuple[str, ...]:
        """Task labels in declaration order."""
        return tuple(self._tasks)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The declared steps (empty: one implicit step)."""
        return tuple(self._steps)

    def task_spec(self, label: str) -> TaskSpec:
        """The declared task of ``label``.

        Raises
        ------
        PipelineDefinitionError
            If there is no such label.
        """
        try:
            return self._tasks[label]
        except KeyError:
            raise PipelineDefinitionError(
                f"pipeline has no task labelled {label!r} (labels: {', '.join(self._tasks) or 'none'})"
            ) from None

    def add_task(self, label: str, task_class: type[PipelineTask] | str,
                 config: Mapping[str, Any] | None = None) -> None:
        """Append a task.

        Raises
        ------
        PipelineDefinitionError
            If the label is taken or invalid.
        """
        self._insert(label, task_class, config, position=len(self._tasks), inserted=False)

    def insert_task(self, label: str, task_class: type[PipelineTask] | str, *,
                    config: Mapping[str, Any] | None = None, after: str | None = None,
                    step: str | None = None) -> None:
        """Insert an extra task (e.g. QA) into an existing pipeline before pre-flight (REQ-0015).

        The insertion is recorded in :attr:`history` and in the task spec
        (``inserted: true``), so the graph and provenance show it.

        Parameters
        ----------
        after : str, optional
            Insert right after this label (default: at the end).
        step : str, optional
            Add the task to this step.
        """
        position = len(self._tasks) if after is None else self.labels.index(self.task_spec(after).label) + 1
        self._insert(label, task_class, config, position=position, inserted=True)
        if step is not None:
            for i, s in enumerate(self._steps):
                if s.label == step:
                    self._steps[i] = Step(s.label, (*s.tasks, label), s.dimensions)
                    break
            else:
                raise PipelineDefinitionError(f"pipeline has no step {step!r}")
        self.history.append({"action": "insert_task", "label": label, "after": after, "step": step,
                             "class": self._tasks[label].task_class})

    def _insert(self, label: str, task_class: type[PipelineTask] | str, config: Mapping[str, Any] | None,
                *, position: int, inserted: bool) -> None:
        if not label or not label.replace("_", "a").isalnum() or label[0].isdigit():
            raise PipelineDefinitionError(f"task label {label!r} must be an identifier (letters, digits, '_')")
        if label in self._tasks:
            raise PipelineDefinitionError(f"pipeline already has a task labelled {label!r}")
        path = task_class if isinstance(task_class, str) else _class_path(task_class)
        spec = TaskSpec(label, path, copy.deepcopy(dict(config or {})), inserted=inserted)
        items = list(self._tasks.items())
        items.insert(position, (label, spec))
        self._tasks = dict(items)

    def remove_task(self, label: str) -> None:
        """Remove a task (and from its step)."""
        self.task_spec(label)
        del self._tasks[label]
        self._steps = [Step(s.label, tuple(t for t in s.tasks if t != label), s.dimensions) for s in self._steps]
        self.history.append({"action": "remove_task", "label": label})

    def add_step(self, label: str, tasks: Sequence[str], dimensions: Sequence[str] = ()) -> None:
        """Append a step: tasks run together, sharded by ``dimensions`` (REQ-0006/0007)."""
        if any(s.label == label for s in self._steps):
            raise PipelineDefinitionError(f"pipeline already has a step {label!r}")
        if isinstance(tasks, str) or isinstance(dimensions, str):
            raise PipelineDefinitionError(f"step {label!r}: tasks and dimensions are lists of names")
        self._steps.append(Step(label, tuple(tasks), tuple(dimensions)))

    def add_config_override(self, label: str, key: str, value: Any, source: str = "python") -> None:
        """Override one config field of a task (dotted path), recorded with its source (REQ-0016)."""
        self.task_spec(label).overrides.append(ConfigOverride(key, value, source))

    def add_override_string(self, text: str, source: str = "command line") -> None:
        """Apply ``label:field.path=value`` (the command-line form).

        Raises
        ------
        ConfigOverrideError
            If the text has no ``label:`` prefix or no ``=``.
        """
        label, sep, rest = text.partition(":")
        if not sep or "=" in label:
            raise ConfigOverrideError(f"config override {text!r} must be of the form label:field.path=value")
        ov = parse_override(rest, source)
        self.task_spec(label).overrides.append(ov)

    def add_config_file(self, label: str, path: str | os.PathLike[str]) -> None:
        """Apply the overrides of a YAML file to a task."""
        self.task_spec(label).overrides.extend(load_override_file(path))

    # ------------------------------------------------------------------ YAML
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> Pipeline:
        """Build from the YAML structure (see the module docstring).

        Raises
        ------
        PipelineDefinitionError
            If the structure is wrong (unknown keys, missing ``class``).
        """
        if not isinstance(data, Mapping):
            raise PipelineDefinitionError("a pipeline document must be a mapping")
        unknown = set(data) - {"description", "tasks", "steps", "history"}
        if unknown:
            raise PipelineDefinitionError(
                f"unknown pipeline keys {sorted(unknown)} (allowed: description, tasks, steps)"
            )
        pipe = cls(str(data.get("description", "")))
        tasks = data.get("tasks") or {}
        if not isinstance(tasks, Mapping):
            raise PipelineDefinitionError("'tasks' must map labels to task definitions")
        for label, body in tasks.items():
            if isinstance(body, str):
                body = {"class": body}
            if not isinstance(body, Mapping) or "class" not in body:
                raise PipelineDefinitionError(f"task {label!r} needs a 'class' (module:Class)")
            extra = set(body) - {"class", "config", "config_files", "overrides", "inserted"}
            if extra:
                raise PipelineDefinitionError(f"task {label!r} has unknown keys {sorted(extra)}")
            pipe._insert(str(label), str(body["class"]), body.get("config") or {}, position=len(pipe._tasks),
                         inserted=bool(body.get("inserted", False)))
            for f in body.get("config_files") or []:
                path = Path(f)
                if base_dir is not None and not path.is_absolute():
                    path = base_dir / path
                pipe.add_config_file(str(label), path)
            for ov in body.get("overrides") or []:
                pipe.add_config_override(str(label), ov["key"], ov["value"], ov.get("source", "pipeline"))
        for step in data.get("steps") or []:
            if not isinstance(step, Mapping) or "label" not in step or "tasks" not in step:
                raise PipelineDefinitionError(f"a step needs 'label' and 'tasks', got {step!r}")
            pipe.add_step(str(step["label"]), list(step["tasks"]), list(step.get("dimensions") or []))
        pipe.history = list(data.get("history") or [])
        return pipe

    @classmethod
    def from_yaml(cls, source: str | os.PathLike[str]) -> Pipeline:
        """Read a pipeline from a YAML file (a path) or YAML text (a str containing a newline).

        Raises
        ------
        PipelineDefinitionError
            If the file is missing or not valid YAML.
        """
        base_dir = None
        if isinstance(source, str) and "\n" in source:
            text = source
        else:
            path = Path(source)
            try:
                text = path.read_text()
            except OSError as exc:
                raise PipelineDefinitionError(f"cannot read pipeline file {path}: {exc}") from exc
            base_dir = path.parent
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PipelineDefinitionError(f"pipeline is not valid YAML: {exc}") from exc
        return cls.from_dict(data or {}, base_dir=base_dir)

    def to_dict(self) -> dict[str, Any]:
        """The YAML structure, overrides and insertions included (what provenance records)."""
        out: dict[str, Any] = {"description": self.description,
                               "tasks": {label: spec.to_dict() for label, spec in self._tasks.items()}}
        if self._steps:
            out["steps"] = [s.to_dict() for s in self._steps]
        if self.history:
            out["history"] = copy.deepcopy(self.history)
        return out

    def to_yaml(self) -> str:
        """YAML text of :meth:`to_dict` (reads back with :meth:`from_yaml`)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ------------------------------------------------------------------ validation
    def resolve(self, *, known_dimensions: Iterable[str] | None = None) -> list[TaskNode]:
        """Validate and return the tasks in execution (topological) order.

        Parameters
        ----------
        known_dimensions : iterable of str, optional
            Dimension names of the universe; unknown names in connections are errors.

        Raises
        ------
        PipelineDefinitionError
            Unknown task class, inconsistent dataset type definitions, output
            dimensions outside the quantum's, two producers of one dataset
            type, a cycle, or inconsistent steps.
        ConfigOverrideError
            If an override names a missing field or a connection that does not exist.
        """
        if not self._tasks:
            raise PipelineDefinitionError("pipeline has no tasks")
        known = set(known_dimensions) if known_dimensions is not None else None
        step_of = self._check_steps()
        nodes = {label: self._resolve_task(spec, step_of.get(label), known) for label, spec in self._tasks.items()}
        self._check_consistency(nodes)
        order = self._toposort(nodes)
        self._check_step_order(nodes, order)
        return [nodes[label] for label in order]

    def _resolve_task(self, spec: TaskSpec, step: str | None, known: set[str] | None) -> TaskNode:
        cls = import_task_class(spec.task_class)
        config = apply_overrides(cls.ConfigClass, spec.config, spec.overrides, label=spec.label)
        if not isinstance(config, PipelineTaskConfig):
            raise PipelineDefinitionError(f"task {spec.label!r}: ConfigClass must derive from PipelineTaskConfig")
        declared = cls.ConnectionsClass.connections
        bad = sorted(set(config.connections) - set(declared))
        if bad:
            raise ConfigOverrideError(
                f"task {spec.label!r}: config.connections names unknown connection(s) {bad} "
                f"(connections: {', '.join(declared) or 'none'})"
            )
        quantum_dims = tuple(cls.ConnectionsClass.dimensions)
        resolved: dict[str, ResolvedConnection] = {}
        for name, conn in declared.items():
            resolved[name] = self._resolve_connection(spec.label, name, conn, config.connections.get(name),
                                                      quantum_dims, known)
        if known is not None:
            unknown = [d for d in quantum_dims if d not in known]
            if unknown:
                raise PipelineDefinitionError(f"task {spec.label!r}: unknown quantum dimension(s) {unknown}")
        return TaskNode(
            label=spec.label, task_class_name=spec.task_class, config=config, config_hash=config_hash(config),
            code_version=code_version_of(cls), dimensions=quantum_dims, connections=resolved, step=step,
            overrides=tuple(spec.overrides),
        )

    @staticmethod
    def _resolve_connection(label: str, name: str, conn: Connection, override: str | None,
                            quantum_dims: tuple[str, ...], known: set[str] | None) -> ResolvedConnection:
        type_name = override or conn.dataset_type
        try:
            dt = DatasetType(type_name, conn.dimensions, conn.storage_class)
        except ValueError as exc:
            raise PipelineDefinitionError(f"task {label!r}, connection {name!r}: {exc}") from exc
        if known is not None:
            unknown = [d for d in conn.dimensions if d not in known]
            if unknown:
                raise PipelineDefinitionError(
                    f"task {label!r}, connection {name!r} ({type_name}): unknown dimension(s) {unknown}"
                )
        if conn.kind == "output" and not set(conn.dimensions) <= set(quantum_dims):
            raise PipelineDefinitionError(
                f"task {label!r}: output {name!r} ({type_name}) has dimensions {list(conn.dimensions)} that are not "
                f"all among the quantum dimensions {list(quantum_dims)}"
            )
        if conn.kind == "output" and conn.multiple:
            raise PipelineDefinitionError(f"task {label!r}: output {name!r} cannot be multiple")
        return ResolvedConnection(name, conn.kind, dt, conn.multiple, conn.min_count,
                                  getattr(conn, "lookup", None), conn.deferred)

    @staticmethod
    def _check_consistency(nodes: Mapping[str, TaskNode]) -> None:
        seen: dict[str, tuple[DatasetType, str]] = {}
        producers: dict[str, str] = {}
        for label, node in nodes.items():
            extra = [node.config_dataset_type, node.metadata_dataset_type]
            for dt, where in [*((c.dataset_type, f"{label}.{c.name}") for c in node.connections.values()),
                              *((d, f"{label} (framework)") for d in extra)]:
                prev = seen.get(dt.name)
                if prev is None:
                    seen[dt.name] = (dt, where)
                elif (prev[0].dimensions, prev[0].storage_class) != (dt.dimensions, dt.storage_class):
                    raise PipelineDefinitionError(
                        f"dataset type {dt.name!r} is defined two ways: {prev[1]} says dimensions "
                        f"{list(prev[0].dimensions)}, storage class {prev[0].storage_class}; {where} says "
                        f"{list(dt.dimensions)}, {dt.storage_class}"
                    )
            for c in node.of_kind("output", "init_output"):
                if c.dataset_type.name in producers:
                    raise PipelineDefinitionError(
                        f"dataset type {c.dataset_type.name!r} is produced by both {producers[c.dataset_type.name]!r} "
                        f"and {label!r}"
                    )
                producers[c.dataset_type.name] = label
        for label, node in nodes.items():
            for c in node.of_kind("prerequisite"):
                if c.dataset_type.name in producers:
                    raise PipelineDefinitionError(
                        f"task {label!r}: prerequisite input {c.name!r} ({c.dataset_type.name}) is produced by task "
                        f"{producers[c.dataset_type.name]!r}; prerequisites must exist before pre-flight"
                    )

    @staticmethod
    def _toposort(nodes: Mapping[str, TaskNode]) -> list[str]:
        producer = {
            c.dataset_type.name: label for label, n in nodes.items() for c in n.of_kind("output", "init_output")
        }
        deps: dict[str, set[str]] = {}
        for label, node in nodes.items():
            deps[label] = {producer[c.dataset_type.name] for c in node.of_kind("input", "init_input")
                           if c.dataset_type.name in producer}
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(label: str, path: list[str]) -> None:
            if state.get(label) == 2:
                return
            if state.get(label) == 1:
                cycle = path[path.index(label):] + [label]
                raise PipelineDefinitionError(f"pipeline has a cycle: {' -> '.join(cycle)}")
            state[label] = 1
            for dep in sorted(deps[label], key=list(nodes).index):
                visit(dep, [*path, label])
            state[label] = 2
            order.append(label)

        for label in nodes:
            visit(label, [])
        return order

    def _check_steps(self) -> dict[str, str]:
        if not self._steps:
            return {}
        step_of: dict[str, str] = {}
        for step in self._steps:
            for label in step.tasks:
                self.task_spec(label)
                if label in step_of:
                    raise PipelineDefinitionError(f"task {label!r} is in steps {step_of[label]!r} and {step.label!r}")
                step_of[label] = step.label
        missing = [label for label in self._tasks if label not in step_of]
        if missing:
            raise PipelineDefinitionError(f"tasks {missing} are in no step; every task must be in one step")
        return step_of

    def _check_step_order(self, nodes: Mapping[str, TaskNode], order: list[str]) -> None:
        if not self._steps:
            return
        index = {s.label: i for i, s in enumerate(self._steps)}
        dims = {s.label: s.dimensions for s in self._steps}
        producer = {
            c.dataset_type.name: label for label, n in nodes.items() for c in n.of_kind("output", "init_output")
        }
        for label in order:
            node = nodes[label]
            step = node.step or ""
            if not set(dims[step]) <= set(node.dimensions):
                raise PipelineDefinitionError(
                    f"task {label!r} (quantum dimensions {list(node.dimensions)}) cannot be in step {step!r} "
                    f"sharded by {list(dims[step])}"
                )
            for c in node.of_kind("input", "init_input"):
                up = producer.get(c.dataset_type.name)
                if up is not None and index[nodes[up].step or ""] > index[step]:
                    raise PipelineDefinitionError(
                        f"task {label!r} in step {step!r} reads {c.dataset_type.name!r} made by {up!r} in the later "
                        f"step {nodes[up].step!r}"
                    )
