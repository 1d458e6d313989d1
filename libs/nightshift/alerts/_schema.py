"""The Rubin alert schemas, read from the files ``lsst-alert-packet`` ships (the source of truth)."""

from __future__ import annotations

import importlib.resources
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from ._errors import AlertSchemaError

__all__ = ["AlertSchema", "latest_version", "shipped_versions"]


def _root() -> Path:
    try:
        return Path(str(importlib.resources.files("lsst.alert.packet") / "schema"))
    except ModuleNotFoundError as exc:  # pragma: no cover - dependency is pinned
        raise AlertSchemaError("the Rubin alert schemas are not installed: pip install lsst-alert-packet") from exc


@cache
def shipped_versions() -> tuple[tuple[int, int], ...]:
    """Every (major, minor) alert schema version the installed ``lsst-alert-packet`` ships, oldest first."""
    out = []
    for path in _root().glob("*/*/lsst.v*_*.alert.avsc"):
        m = re.fullmatch(r"lsst\.v(\d+)_(\d+)\.alert\.avsc", path.name)
        if m:
            out.append((int(m.group(1)), int(m.group(2))))
    return tuple(sorted(out))


def latest_version() -> tuple[int, int]:
    """The version ``lsst-alert-packet`` names as latest (``schema/latest.txt``), e.g. ``(11, 1)``."""
    major, minor = (_root() / "latest.txt").read_text().strip().split(".", 1)
    return int(major), int(minor)


def _clean(obj: Any) -> Any:
    """``obj`` without fastavro's private keys (``__fastavro_parsed``, ``__named_schemas``)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not k.startswith("__")}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


@dataclass(frozen=True)
class AlertSchema:
    """One shipped alert schema version.

    Parameters
    ----------
    major, minor : int
        The version; :meth:`load` picks the latest when omitted.

    Attributes
    ----------
    definition : dict
        The alert record as one standalone document: every named type is
        defined once (at its first use) and later referenced by its full name;
        no fastavro-internal keys. This is the JSON to register in a schema
        registry.
    parsed : dict
        ``fastavro.parse_schema(definition)``, for fastavro readers and writers.
    """

    major: int
    minor: int
    definition: dict[str, Any] = field(repr=False, compare=False)
    parsed: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def load(cls, version: tuple[int, int] | str | None = None) -> AlertSchema:
        """The schema of ``version`` (``(11, 1)``, ``"11.1"``; default: the latest shipped).

        Raises
        ------
        AlertSchemaError
            The installed ``lsst-alert-packet`` does not ship that version.
        """
        if version is None:
            version = latest_version()
        elif isinstance(version, str):
            try:
                major_s, minor_s = version.split(".", 1)
                version = (int(major_s), int(minor_s))
            except ValueError as exc:
                raise AlertSchemaError(f"alert schema version {version!r} is not MAJOR.MINOR, e.g. '11.1'") from exc
        return _load(*version)

    @property
    def schema_id(self) -> int:
        """The registry id Rubin uses: ``MAJOR*100 + MINOR`` (1101 for 11.1; ``Schema.get_schema_id``)."""
        return self.major * 100 + self.minor

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def name(self) -> str:
        """Full name of the alert record, e.g. ``lsst.v11_1.alert``."""
        return f"lsst.v{self.major}_{self.minor}.alert"

    def json(self) -> str:
        """:attr:`definition` as compact JSON text (what a schema registry stores)."""
        return json.dumps(self.definition, separators=(",", ":"))

    def record(self, field_name: str) -> dict[str, Any]:
        """The record schema of a top-level alert field (``diaSource``, ``diaObject``, ...)."""
        named = _named_records(self.definition)
        for f in self.definition["fields"]:
            if f["name"] != field_name:
                continue
            for branch in f["type"] if isinstance(f["type"], list) else [f["type"]]:
                if isinstance(branch, dict) and branch.get("type") == "array":
                    branch = branch["items"]
                if isinstance(branch, str) and branch in named:
                    return named[branch]
                if isinstance(branch, dict) and branch.get("type") == "record":
                    return branch
        raise AlertSchemaError(f"alert schema {self.version} has no record field {field_name!r}")


def _named_records(obj: Any, out: dict[str, dict[str, Any]] | None = None, ns: str = "") -> dict[str, dict[str, Any]]:
    out = {} if out is None else out
    if isinstance(obj, dict):
        if obj.get("type") == "record":
            space = obj.get("namespace", ns)
            full = obj["name"] if "." in obj["name"] else f"{space}.{obj['name']}"
            out[full] = obj
            for f in obj["fields"]:
                _named_records(f["type"], out, space)
        elif obj.get("type") == "array":
            _named_records(obj["items"], out, ns)
    elif isinstance(obj, list):
        for v in obj:
            _named_records(v, out, ns)
    return out


@cache
def _load(major: int, minor: int) -> AlertSchema:
    path = _root() / str(major) / str(minor) / f"lsst.v{major}_{minor}.alert.avsc"
    if not path.is_file():
        shipped = ", ".join(f"{a}.{b}" for a, b in shipped_versions())
        raise AlertSchemaError(f"lsst-alert-packet ships no alert schema {major}.{minor}; shipped: {shipped}")
    definition: dict[str, Any] = _clean(fastavro.schema.load_schema(str(path), _write_hint=False))
    parsed = fastavro.parse_schema(definition, _write_hint=False)
    if not isinstance(parsed, dict):  # pragma: no cover - an alert schema is one record
        raise AlertSchemaError(f"{path} is not one Avro record")
    return AlertSchema(major, minor, definition, parsed)
