"""Fixed schema ids in a Confluent-compatible schema registry (Apicurio Registry 3).

Two families of schemas are registered, each under fixed ids, because the ids
are what the Confluent wire format (magic byte 0, 4-byte id, Avro body) carries:

- every nightshift event schema of ``schemas/manifest.json``, under its subject
  (= topic name) with the manifest's id and version;
- every alert schema version shipped by ``lsst-alert-packet``, under the subject
  ``alert-packet`` with Rubin's ids MAJOR*100+MINOR (1101 for v11.1), as in
  Rubin's own registry.

A Confluent registry assigns ids itself unless a subject is in IMPORT mode;
Apicurio's Confluent-compatible API ignores an explicit id. Apicurio's admin
import (``POST /apis/registry/v3/admin/import``, a ZIP in its export format)
keeps the ``contentId`` and ``globalId`` it is given, so this module writes
such a ZIP. Its Confluent-compatible API (``<root>/apis/ccompat/v7``, the URL
Confluent clients take) then serves ``/schemas/ids/1101``.

Registration is idempotent: ids already present with the same schema are left
alone, missing ones are imported, and an id held by a different schema is an
error. The registry must accept imports into a non-empty registry
(``apicurio.import.requireEmptyRegistry=false``, as the local stack sets).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import httpx

from ._errors import EventError
from ._schemas import SchemaCatalog, default_catalog

__all__ = [
    "ALERT_SUBJECT",
    "RegistrationResult",
    "RegistrySchema",
    "SchemaRegistryError",
    "SchemaRegistryUnavailableError",
    "alert_registry_schemas",
    "alert_schema_document",
    "alert_schema_versions",
    "ccompat_url",
    "check_registry",
    "event_registry_schemas",
    "register_schemas",
]

#: Subject of every alert schema version, as on Rubin's registry.
ALERT_SUBJECT = "alert-packet"
CCOMPAT_PATH = "/apis/ccompat/v7"
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class SchemaRegistryError(EventError):
    """The schema registry refused a registration, or holds a different schema under a fixed id."""

    error_type = "schema_registry"


class SchemaRegistryUnavailableError(SchemaRegistryError, ConnectionError):
    """The schema registry does not answer at the URL given."""

    error_type = "schema_registry_unavailable"
    retriable = True


@dataclass(frozen=True)
class RegistrySchema:
    """One schema version to hold under a fixed id.

    Attributes
    ----------
    subject : str
    version : int
        Version number within the subject (1, 2, ...).
    id : int
        The fixed id (Apicurio ``contentId`` and ``globalId``; Confluent's schema id).
    schema : dict
        A standalone Avro document: each named type defined once, no parser-internal keys.
    """

    subject: str
    version: int
    id: int
    schema: dict[str, Any] = field(repr=False)

    @property
    def text(self) -> str:
        """The schema as registered (compact JSON)."""
        return json.dumps(self.schema, separators=(",", ":"))


@dataclass(frozen=True)
class RegistrationResult:
    """What :func:`register_schemas` did: ids imported now, ids that were already there."""

    imported: tuple[int, ...]
    present: tuple[int, ...]


# -- the schemas -------------------------------------------------------------------------------
def event_registry_schemas(catalog: SchemaCatalog | None = None) -> list[RegistrySchema]:
    """Every version of every nightshift event subject, with the manifest's ids."""
    cat = catalog or default_catalog()
    return [
        RegistrySchema(sv.subject, sv.version, sv.id, _clean(sv.raw))
        for subject in cat.subjects
        for sv in cat.versions(subject)
    ]


def _alert_schema_root() -> Path:
    from lsst.alert.packet import get_schema_root

    return Path(get_schema_root())


def alert_schema_versions() -> list[tuple[int, int]]:
    """Every ``(major, minor)`` alert schema version shipped by ``lsst-alert-packet``, oldest first."""
    root = _alert_schema_root()
    versions = []
    for folder in root.glob("*/*"):
        if folder.parent.name.isdigit() and folder.name.isdigit():
            major, minor = int(folder.parent.name), int(folder.name)
            if (folder / f"lsst.v{major}_{minor}.alert.avsc").is_file():
                versions.append((major, minor))
    return sorted(versions)


def alert_schema_document(major: int, minor: int) -> dict[str, Any]:
    """The alert schema ``major.minor`` as one standalone document.

    ``lsst-alert-packet`` ships each version as several ``.avsc`` files that name
    each other's types (``lsst.v11_1.diaSource``). Here the first reference to
    each such type (in Avro's depth-first field order) is replaced by its
    definition and later ones stay names, so each named type is defined once.
    The result is plain JSON, free of the ``__fastavro_parsed``-style keys that
    ``fastavro.schema.load_schema`` adds (which break confluent-kafka's
    deserializer).
    """
    folder = _alert_schema_root() / str(major) / str(minor)
    prefix = f"lsst.v{major}_{minor}."
    files = {p.name[: -len(".avsc")]: p for p in folder.glob("*.avsc")}
    root_name = prefix + "alert"
    if root_name not in files:
        known = ", ".join(f"{a}.{b}" for a, b in alert_schema_versions())
        raise SchemaRegistryError(f"lsst-alert-packet has no alert schema {major}.{minor}; it ships {known}")
    definitions: dict[str, dict[str, Any]] = {}
    for name, path in files.items():
        doc = json.loads(path.read_text())
        full = doc["name"] if "." in doc["name"] else f"{doc.get('namespace', '')}.{doc['name']}".lstrip(".")
        if full != name:
            raise SchemaRegistryError(f"{path} defines {full!r}, expected {name!r} from its file name")
        definitions[full] = doc
    document: dict[str, Any] = _inline(definitions[root_name], definitions, defined=set())
    return document


def alert_registry_schemas() -> list[RegistrySchema]:
    """Every shipped alert schema version under ``alert-packet``, ids MAJOR*100+MINOR, versions 1, 2, ... by age."""
    return [
        RegistrySchema(ALERT_SUBJECT, i, major * 100 + minor, alert_schema_document(major, minor))
        for i, (major, minor) in enumerate(alert_schema_versions(), start=1)
    ]


def _full_name(node: dict[str, Any], namespace: str | None) -> str:
    name = str(node["name"])
    if "." in name:
        return name
    ns = node.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _inline(node: Any, definitions: dict[str, dict[str, Any]], defined: set[str], namespace: str | None = None) -> Any:
    """Copy of ``node`` with the first reference to each type of ``definitions`` replaced by its definition."""
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full = node if "." in node or namespace is None else f"{namespace}.{node}"
        if full in definitions and full not in defined:
            return _inline(definitions[full], definitions, defined, namespace)
        if full not in defined and node not in defined:
            raise SchemaRegistryError(f"the alert schema refers to {node!r}, which no shipped file defines")
        return node
    if isinstance(node, list):
        return [_inline(branch, definitions, defined, namespace) for branch in node]
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if not k.startswith("__")}
    kind = out.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        full = _full_name(out, namespace)
        if full in defined:
            raise SchemaRegistryError(f"named type {full!r} is defined twice")
        defined.add(full)
        inner_ns = full.rsplit(".", 1)[0] if "." in full else None
        if kind in ("record", "error"):
            out["fields"] = [
                {**{k: v for k, v in f.items() if not k.startswith("__")},
                 "type": _inline(f["type"], definitions, defined, inner_ns)}
                for f in out["fields"]
            ]
        return out
    if kind == "array":
        out["items"] = _inline(out["items"], definitions, defined, namespace)
    elif kind == "map":
        out["values"] = _inline(out["values"], definitions, defined, namespace)
    elif isinstance(kind, (dict, list)):
        out["type"] = _inline(kind, definitions, defined, namespace)
    return out


def _clean(schema: Any) -> Any:
    """``schema`` without parser-internal keys (``__fastavro_parsed``, ``__named_schemas``, ...)."""
    if isinstance(schema, dict):
        return {k: _clean(v) for k, v in schema.items() if not k.startswith("__")}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def _canonical(schema: dict[str, Any] | str) -> str:
    parsed = fastavro.parse_schema(json.loads(schema) if isinstance(schema, str) else schema, _write_hint=False)
    return str(fastavro.schema.to_parsing_canonical_form(parsed))


# -- the registry ------------------------------------------------------------------------------
def ccompat_url(url: str) -> str:
    """The Confluent-compatible API of an Apicurio registry at ``url`` (root or ccompat URL)."""
    root = _root(url)
    return root + CCOMPAT_PATH


def _root(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len(CCOMPAT_PATH)] if url.endswith(CCOMPAT_PATH) else url


def check_registry(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The registry's self-description; :class:`SchemaRegistryUnavailableError` naming ``url`` if it cannot answer."""
    root = _root(url)
    try:
        response = httpx.get(f"{root}/apis/registry/v3/system/info", timeout=timeout)
    except httpx.HTTPError as exc:
        raise SchemaRegistryUnavailableError(
            f"no schema registry answers at {url} ({type(exc).__name__}: {exc}); start the local one with "
            "`nightshift dev up registry`, or set SCHEMA_REGISTRY_URL to a running Apicurio Registry"
        ) from exc
    if response.status_code != 200:
        raise SchemaRegistryUnavailableError(
            f"{url} is not an Apicurio Registry 3 (GET /apis/registry/v3/system/info: HTTP {response.status_code}); "
            "fixed schema ids need Apicurio's admin import"
        )
    info: dict[str, Any] = response.json()
    return info


def _registered(client: httpx.Client, ccompat: str, schema: RegistrySchema) -> bool:
    """Whether ``schema.id`` already holds ``schema``; raises if it holds another schema."""
    response = client.get(f"{ccompat}/schemas/ids/{schema.id}")
    if response.status_code == 404:
        return False
    if response.status_code != 200:
        raise SchemaRegistryError(f"GET {ccompat}/schemas/ids/{schema.id}: HTTP {response.status_code} {response.text}")
    held = response.json()["schema"]
    if _canonical(held) != _canonical(schema.schema):
        raise SchemaRegistryError(
            f"schema id {schema.id} of {ccompat} holds a different schema than {schema.subject} v{schema.version}; "
            "a registry's fixed ids cannot be reused: use a fresh registry (the local one is in-memory: "
            "`nightshift dev down registry && nightshift dev up registry`)"
        )
    return True


def _existing_versions(client: httpx.Client, ccompat: str, subject: str) -> list[int]:
    response = client.get(f"{ccompat}/subjects/{subject}/versions")
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return [int(v) for v in response.json()]


def _import_zip(schemas: Sequence[RegistrySchema], existing: dict[str, list[int]]) -> bytes:
    """An Apicurio 3 export ZIP holding ``schemas`` with their ids as contentId and globalId."""
    now = int(time.time() * 1000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "manifest.Manifest.json",
            json.dumps({"systemName": "nightshift", "systemDescription": "nightshift fixed schema ids",
                        "systemVersion": "n/a", "exportVersion": "3.0", "exportedOn": now, "exportedBy": "nightshift"}),
        )
        by_subject: dict[str, list[RegistrySchema]] = {}
        for s in schemas:
            by_subject.setdefault(s.subject, []).append(s)
        for subject, versions in by_subject.items():
            base = f"groups/default/artifacts/{subject}"
            if not existing.get(subject):
                z.writestr(f"{base}/MetaData.Artifact.json", json.dumps({
                    "groupId": None, "artifactId": subject, "artifactType": "AVRO", "name": None, "description": None,
                    "labels": None, "owner": "", "createdOn": now, "modifiedBy": "", "modifiedOn": now,
                }))
            all_versions = sorted({*existing.get(subject, []), *(s.version for s in versions)})
            # The "latest" branch is what /subjects/<s>/versions/latest reads. Apicurio creates it from an
            # import only when the subject has none yet (a later import does not extend it).
            z.writestr(f"{base}/branches/latest.Branch.json", json.dumps({
                "groupId": None, "artifactId": subject, "branchId": "latest", "description": None,
                "systemDefined": True, "owner": "", "createdOn": now, "modifiedBy": "", "modifiedOn": now,
                "versions": [str(v) for v in all_versions],
            }))
            for s in versions:
                data = s.text.encode()
                digest = hashlib.sha256(data).hexdigest()
                z.writestr(f"content/{digest}.Content.json", json.dumps({
                    "contentId": s.id, "contentHash": digest, "canonicalHash": None, "artifactType": "AVRO",
                    "contentType": "application/json", "serializedReferences": None,
                }))
                z.writestr(f"content/{digest}.Content.data", data)
                z.writestr(f"{base}/versions/{s.version}.ArtifactVersion.json", json.dumps({
                    "globalId": s.id, "contentId": s.id, "groupId": None, "artifactId": subject,
                    "version": str(s.version), "versionOrder": s.version, "state": "ENABLED", "name": None,
                    "description": None, "owner": "", "labels": None, "createdOn": now, "modifiedBy": "",
                    "modifiedOn": now,
                }))
    return buffer.getvalue()


def register_schemas(
    url: str, schemas: Iterable[RegistrySchema] | None = None, timeout: float = 30.0
) -> RegistrationResult:
    """Hold every schema of ``schemas`` under its fixed id in the Apicurio registry at ``url`` (idempotent).

    Parameters
    ----------
    url : str
        The registry's root URL or its Confluent-compatible URL (``.../apis/ccompat/v7``).
    schemas : iterable of RegistrySchema, optional
        Default: :func:`event_registry_schemas` plus :func:`alert_registry_schemas`.
    timeout : float
        Seconds for each HTTP request.

    Raises
    ------
    SchemaRegistryUnavailableError
        Nothing answers at ``url`` (raised before anything else is tried).
    SchemaRegistryError
        An id holds a different schema, or the registry refused the import.
    """
    check_registry(url, timeout)
    wanted = list(schemas) if schemas is not None else [*event_registry_schemas(), *alert_registry_schemas()]
    ids = [s.id for s in wanted]
    if len(set(ids)) != len(ids):
        raise SchemaRegistryError(f"schema ids must be unique, got {sorted(ids)}")
    ccompat = ccompat_url(url)
    with httpx.Client(timeout=timeout) as client:
        present = [s for s in wanted if _registered(client, ccompat, s)]
        missing = [s for s in wanted if s not in present]
        if missing:
            subjects = {s.subject for s in missing}
            existing = {subject: _existing_versions(client, ccompat, subject) for subject in subjects}
            for s in missing:
                if s.version in existing[s.subject]:
                    raise SchemaRegistryError(
                        f"{ccompat} already has {s.subject} version {s.version} under another id than {s.id}"
                    )
            response = client.post(
                f"{_root(url)}/apis/registry/v3/admin/import", content=_import_zip(missing, existing),
                headers={"Content-Type": "application/zip", "X-Registry-Preserve-GlobalId": "true",
                         "X-Registry-Preserve-ContentId": "true"},
            )
            if response.status_code >= 300 and not all(_registered(client, ccompat, s) for s in missing):
                hint = (" (the registry only imports into an empty registry: start it with "
                        "apicurio.import.requireEmptyRegistry=false)") if response.status_code == 409 else ""
                raise SchemaRegistryError(
                    f"{_root(url)} refused the import of schema ids {[s.id for s in missing]}: "
                    f"HTTP {response.status_code} {response.text[:500]}{hint}"
                )
            unresolved = [s.id for s in missing if not _registered(client, ccompat, s)]
            if unresolved:
                raise SchemaRegistryError(
                    f"after the import, {ccompat} still does not resolve schema ids {unresolved}; Apicurio "
                    "stores each distinct schema text once, so a schema already registered under another id "
                    "cannot get a second one (see the registry's log for the rejected entities)"
                )
    return RegistrationResult(imported=tuple(s.id for s in missing), present=tuple(s.id for s in present))
