"""Avro schema compatibility, following the Avro specification's resolution rules.

BACKWARD (Confluent's default): a consumer using the *new* schema can read
data written with the *old* one.
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"]) if not isinstance(schema["type"], (dict, list)) else _kind(schema["type"])
    return str(schema)


def can_read(reader: Any, writer: Any, path: str = "") -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty if it can)."""
    rk, wk = _kind(reader), _kind(writer)
    if wk == "union":
        problems: list[str] = []
        for i, branch in enumerate(writer):
            problems += can_read(reader, branch, f"{path}[writer branch {i}]")
        return problems
    if rk == "union":
        if any(not can_read(branch, writer, path) for branch in reader):
            return []
        return [f"{path or '<root>'}: writer type {wk} matches no branch of the reader's union"]
    if rk != wk and rk not in _PROMOTIONS.get(wk, set()):
        return [f"{path or '<root>'}: type changed from {wk} to {rk}, which Avro cannot promote"]
    if rk == "record":
        writer_fields = {f["name"]: f for f in writer["fields"]}
        problems = []
        for field in reader["fields"]:
            name = field["name"]
            sub = f"{path}.{name}" if path else name
            if name in writer_fields:
                problems += can_read(field["type"], writer_fields[name]["type"], sub)
            elif "default" not in field:
                problems.append(f"{sub}: field added without a default, so old data cannot be read")
        return problems
    if rk == "enum":
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            return [f"{path or '<root>'}: enum symbols {sorted(missing)} removed without a default"]
        return []
    if rk == "array":
        return can_read(reader["items"], writer["items"], f"{path}[]")
    if rk == "map":
        return can_read(reader["values"], writer["values"], f"{path}{{}}")
    if rk == "fixed" and reader.get("size") != writer.get("size"):
        return [f"{path or '<root>'}: fixed size changed"]
    return []


def backward_problems(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """Problems that stop readers of ``new`` from reading data written with ``old``."""
    return can_read(new, old)
