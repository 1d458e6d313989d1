"""The repository index: names -> locations, so users refer to repositories by name (REQ-0024).

A site (or a user) configures one index file with ``$NIGHTSHIFT_REPOSITORY_INDEX``;
from then on every repository :meth:`Butler.create <nightshift.butler.Butler.create>`
makes is registered in it as it is created, and
:meth:`Butler.remove_repository <nightshift.butler.Butler.remove_repository>`
unregisters it. Writers serialize on an advisory lock (``<index>.lock``), so
repositories created concurrently by several processes are all recorded.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Mapping
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

    @classmethod
    def configured(cls, path: str | os.PathLike[str] | None = None) -> RepositoryIndex | None:
        """The index at ``path``, else the one ``$NIGHTSHIFT_REPOSITORY_INDEX`` names, else None (no index)."""
        if path is not None:
            return cls(path)
        return cls() if os.environ.get(INDEX_ENV) else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the index's advisory write lock (read-modify-write of the file happens inside)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, entries: Mapping[str, Mapping[str, str | None]]) -> None:
        raw = {k: (v["location"] if v["schema"] is None else dict(v)) for k, v in sorted(entries.items())}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".index-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                yaml.safe_dump(raw, stream, sort_keys=True)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def names_of(self, location: str, schema: str | None = None) -> list[str]:
        """Every name that maps to ``location`` (and ``schema``)."""
        return sorted(n for n, e in self.entries().items() if e["location"] == location and e["schema"] == schema)

    def unregister(self, location: str, schema: str | None = None) -> list[str]:
        """Remove every name that maps to ``location`` (and ``schema``); returns the names removed."""
        with self._locked():
            entries = self.entries()
            gone = sorted(n for n, e in entries.items() if e["location"] == location and e["schema"] == schema)
            if gone:
                self._write({n: e for n, e in entries.items() if n not in gone})
        return gone

    def check_free(self, name: str, location: str, schema: str | None = None) -> None:
        """Raise ``ConflictingDefinitionError`` if ``name`` already maps elsewhere."""
        taken = self.entries().get(name)
        if taken is not None and taken != {"location": location, "schema": schema}:
            raise ConflictingDefinitionError(
                f"repository name {name!r} already maps to {taken['location']!r} in the index {self.path}; "
                "choose another name"
            )

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
        """Add a name (under the index's lock, atomically rewriting the file).

        Raises
        ------
        ConflictingDefinitionError
            If the name maps to another location and ``replace`` is false.
        """
        with self._locked():
            entries = self.entries()
            new = {"location": location, "schema": schema}
            if name in entries and entries[name] != new and not replace:
                raise ConflictingDefinitionError(
                    f"repository name {name!r} already maps to {entries[name]['location']!r}; pass replace=True"
                )
            entries[name] = new
            self._write(entries)
