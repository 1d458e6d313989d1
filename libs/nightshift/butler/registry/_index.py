"""The repository index: names -> locations, so users refer to repositories by name (REQ-0024)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from .._registry_exceptions import ConflictingDefinitionError, MissingCollectionError, RegistryError

__all__ = ["INDEX_ENV", "RepositoryIndex"]

#: Environment variable naming the index file.
INDEX_ENV = "NIGHTSHIFT_REPOSITORY_INDEX"


class RepositoryIndex:
    """A YAML file mapping repository names to locations (root directory or database URL + schema).

    Example file::

        dp1: /data/repos/dp1
        shared: {location: "postgresql://butler@db/butler", schema: dp1}

    Parameters
    ----------
    path : str or os.PathLike, optional
        Index file; defaults to ``$NIGHTSHIFT_REPOSITORY_INDEX``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            env = os.environ.get(INDEX_ENV)
            if not env:
                raise RegistryError(f"no repository index given and ${INDEX_ENV} is not set")
            path = env
        self.path = Path(path)

    def entries(self) -> dict[str, dict[str, str | None]]:
        """All names -> ``{"location": ..., "schema": ...}``."""
        if not self.path.exists():
            return {}
        data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, Mapping):
            raise RegistryError(f"repository index {self.path} must be a mapping of name -> location")
        out: dict[str, dict[str, str | None]] = {}
        for name, value in data.items():
            if isinstance(value, str):
                out[str(name)] = {"location": value, "schema": None}
            elif isinstance(value, Mapping) and "location" in value:
                out[str(name)] = {"location": str(value["location"]), "schema": value.get("schema")}
            else:
                raise RegistryError(f"repository index {self.path}: entry {name!r} needs a location")
        return out

    def get(self, name: str) -> tuple[str, str | None]:
        """(location, schema) of a repository name.

        Raises
        ------
        MissingCollectionError
            If the name is not in the index (a LookupError).
        """
        entries = self.entries()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise MissingCollectionError(f"repository {name!r} is not in the index {self.path} (known: {known})")
        e = entries[name]
        return str(e["location"]), e["schema"]

    def register(self, name: str, location: str, schema: str | None = None, *, replace: bool = False) -> None:
        """Add a name (atomically rewriting the file).

        Raises
        ------
        ConflictingDefinitionError
            If the name maps to another location and ``replace`` is false.
        """
        entries = self.entries()
        new = {"location": location, "schema": schema}
        if name in entries and entries[name] != new and not replace:
            raise ConflictingDefinitionError(
                f"repository name {name!r} already maps to {entries[name]['location']!r}; pass replace=True"
            )
        entries[name] = new
        raw = {k: (v["location"] if v["schema"] is None else dict(v)) for k, v in sorted(entries.items())}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".index-")
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            yaml.safe_dump(raw, stream, sort_keys=True)
        os.replace(tmp, self.path)
