"""Task configuration: pydantic models, nested for sub-tasks, with recorded overrides.

Overrides are dotted field paths with YAML values (``isr.do_bias=false``,
``connections.calexp=calexp_v2``), from the command line or from YAML files,
applied to a pipeline before pre-flight (REQ-0016). Every applied override
is kept as a :class:`ConfigOverride` (with where it came from) so that the
graph and the provenance record exactly how the final config was reached.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import pydantic
import yaml

from ._exceptions import ConfigOverrideError

__all__ = [
    "ConfigOverride",
    "PipelineTaskConfig",
    "TaskConfig",
    "apply_overrides",
    "config_hash",
    "load_override_file",
    "parse_override",
]


class TaskConfig(pydantic.BaseModel):
    """Base of every task config: a pydantic model that rejects unknown fields.

    Sub-task configs are fields whose type is another :class:`TaskConfig`
    (hierarchical configuration, REQ-0005/0008)::

        class IsrConfig(TaskConfig):
            do_bias: bool = True

        class CalibrateConfig(PipelineTaskConfig):
            isr: IsrConfig = IsrConfig()
            threshold: float = 5.0
    """

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)


class PipelineTaskConfig(TaskConfig):
    """Config of a :class:`PipelineTask`.

    Attributes
    ----------
    connections : dict of str to str
        Dataset type name per connection attribute, replacing the declared
        default (REQ-0014): ``connections.calexp=calexp_v2``.
    """

    connections: dict[str, str] = pydantic.Field(default_factory=dict)


@dataclass(frozen=True)
class ConfigOverride:
    """One override: dotted field path, value, and where it came from (file or "command line")."""

    key: str
    value: Any
    source: str = "python"

    def to_dict(self) -> dict[str, Any]:
        """``{"key", "value", "source"}`` (as recorded in graphs and config snapshots)."""
        return {"key": self.key, "value": self.value, "source": self.source}


def parse_override(text: str, source: str = "command line") -> ConfigOverride:
    """Parse ``key.path=value`` (value is YAML: ``5``, ``true``, ``[1, 2]``, ``abc``).

    Raises
    ------
    ConfigOverrideError
        If there is no ``=`` or the key is empty.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigOverrideError(f"config override {text!r} is not of the form field.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigOverrideError(f"config override {text!r}: value is not valid YAML: {exc}") from exc
    return ConfigOverride(key, value, source)


def _flatten(prefix: str, data: Mapping[str, Any], out: list[tuple[str, Any]]) -> None:
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            _flatten(path, value, out)
        else:
            out.append((path, value))


def load_override_file(path: str | os.PathLike[str]) -> list[ConfigOverride]:
    """Read a YAML file of overrides: nested mappings or ``dotted.key: value`` entries.

    Raises
    ------
    ConfigOverrideError
        If the file cannot be read or is not a mapping.
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigOverrideError(f"cannot read config override file {path}: {exc}") from exc
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise ConfigOverrideError(f"config override file {path} must hold a mapping of field -> value")
    flat: list[tuple[str, Any]] = []
    _flatten("", data, flat)
    return [ConfigOverride(k, v, f"file {path}") for k, v in flat]


def _field_model(annotation: Any) -> type[pydantic.BaseModel] | None:
    """The pydantic model class behind a field annotation (through Optional), if any."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, pydantic.BaseModel):
            return arg
    return None


def _is_mapping(annotation: Any) -> bool:
    origin = get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, Mapping)


def apply_overrides(
    config_class: type[TaskConfig],
    base: Mapping[str, Any] | TaskConfig | None,
    overrides: Iterable[ConfigOverride],
    *,
    label: str = "",
) -> TaskConfig:
    """Build a config from ``base`` values plus overrides, in order.

    Raises
    ------
    ConfigOverrideError
        If an override names a field that does not exist (naming the task
        label and the fields that do) or the result fails validation.
    """
    if isinstance(base, pydantic.BaseModel):
        data: dict[str, Any] = base.model_dump(mode="python")
    else:
        data = json.loads(json.dumps(dict(base or {})))  # deep copy of plain data
    where = f"task {label!r}: " if label else ""
    for ov in overrides:
        model: type[pydantic.BaseModel] | None = config_class
        parts = ov.key.split(".")
        node = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if model is not None:
                fields = model.model_fields
                if part not in fields:
                    raise ConfigOverrideError(
                        f"{where}config override {ov.key}={ov.value!r} ({ov.source}) names no field: "
                        f"{model.__name__} has no field {part!r} (fields: {', '.join(sorted(fields))})"
                    )
                annotation = fields[part].annotation
                sub_model = _field_model(annotation)
                is_map = _is_mapping(annotation)
                if not last and sub_model is None and not is_map:
                    raise ConfigOverrideError(
                        f"{where}config override {ov.key} ({ov.source}): field {part!r} of "
                        f"{model.__name__} has no sub-fields"
                    )
                next_model = sub_model
            else:
                next_model = None  # inside a free mapping (e.g. connections)
            if last:
                node[part] = ov.value
            else:
                child = node.get(part)
                if isinstance(child, pydantic.BaseModel):
                    child = child.model_dump(mode="python")
                if not isinstance(child, dict):
                    child = {}
                node[part] = child
                node = child
                model = next_model
    try:
        return config_class.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigOverrideError(f"{where}invalid config for {config_class.__name__}: {problems}") from exc


def config_hash(config: pydantic.BaseModel) -> str:
    """A stable hash of a config's values (sha256 of canonical JSON, 16 hex chars)."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
