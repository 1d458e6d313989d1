"""The schema catalog: every Avro schema of ``schemas/``, parsed once.

The files ship inside the package as ``nightshift.events.schemas`` (``pyproject.toml`` maps the
repository's top-level ``schemas/`` folder to it), so an installed wheel finds them without a
checkout, and an editable install reads the checkout's folder.

``schemas/manifest.json`` lists, per subject (= topic name), its versions, each
with a global schema id and its ``.avsc`` file. The newest version is the one
written; any listed version can be read (resolved to the newest by Avro schema
resolution).
"""

from __future__ import annotations

import importlib.resources
import json
import os
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import fastavro

from ._errors import SchemaError, UnknownSchemaError


@dataclass(frozen=True)
class SchemaVersion:
    subject: str
    version: int
    id: int
    raw: dict[str, Any]
    parsed: Any


@cache
def _packaged_schemas() -> str:
    """Folder of the package data ``nightshift.events.schemas`` (the checkout's ``schemas/`` when editable)."""
    return str(importlib.resources.files("nightshift.events.schemas"))


def schemas_dir() -> Path:
    """``NIGHTSHIFT_SCHEMAS_DIR`` or the schemas shipped in the package (``nightshift.events.schemas``)."""
    return Path(os.environ.get("NIGHTSHIFT_SCHEMAS_DIR") or _packaged_schemas())


class SchemaCatalog:
    """All subjects and versions of one ``manifest.json``."""

    def __init__(self, root: Path) -> None:
        manifest_path = root / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError as exc:
            raise SchemaError(f"no schema manifest at {manifest_path}; set NIGHTSHIFT_SCHEMAS_DIR") from exc
        self.root = root
        self._by_id: dict[int, SchemaVersion] = {}
        self._by_subject: dict[str, list[SchemaVersion]] = {}
        for subject, entry in manifest["subjects"].items():
            versions = []
            for v in sorted(entry["versions"], key=lambda v: v["version"]):
                raw = json.loads((root / v["file"]).read_text())
                try:
                    parsed = fastavro.parse_schema(raw)
                except Exception as exc:
                    raise SchemaError(f"{v['file']} is not a valid Avro schema: {exc}") from exc
                sv = SchemaVersion(subject, v["version"], v["id"], raw, parsed)
                if sv.id in self._by_id:
                    raise SchemaError(f"schema id {sv.id} is used twice in {manifest_path}")
                self._by_id[sv.id] = sv
                versions.append(sv)
            self._by_subject[subject] = versions

    @property
    def subjects(self) -> list[str]:
        return list(self._by_subject)

    def latest(self, subject: str) -> SchemaVersion:
        try:
            return self._by_subject[subject][-1]
        except KeyError:
            raise SchemaError(f"no schema for subject {subject!r}; known: {sorted(self._by_subject)}") from None

    def versions(self, subject: str) -> list[SchemaVersion]:
        return list(self._by_subject[subject])

    def by_id(self, schema_id: int) -> SchemaVersion:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise UnknownSchemaError(
                f"schema id {schema_id} is not in {self.root / 'manifest.json'} (known ids: {sorted(self._by_id)})"
            ) from None


@lru_cache(maxsize=4)
def _catalog(root: str) -> SchemaCatalog:
    return SchemaCatalog(Path(root))


def default_catalog() -> SchemaCatalog:
    """The catalog of :func:`schemas_dir`, parsed once per process."""
    # On every encode/decode: no filesystem calls here, only a cache lookup.
    return _catalog(os.environ.get("NIGHTSHIFT_SCHEMAS_DIR") or _packaged_schemas())
