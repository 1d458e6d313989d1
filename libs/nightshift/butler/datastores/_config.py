"""Build a datastore from configuration (a mapping, usually read from YAML).

::

    datastore:
      cls: posix                 # posix | s3 | dav | memory | chained | rest
      name: main
      root: data                 # posix: relative to the repository root
      fsync: true
      clobber: false
      checksum: sha256           # or null
      templates: {default: "{run}/{dataset_type}/{dataset_type}_{data_id}_{run}"}
      formatters:
        storage_classes: {Exposure: {formatter: fits_exposure, options: {compression: RICE_1}}}
        dataset_types: {src: parquet}
      accept: [calexp, src]      # optional constraints
      reject: []
    # s3:    bucket, prefix, endpoint_url, max_attempts, create_bucket,
    #        cache: {directory: ..., max_bytes: ..., fetch: true}
    # dav:   url (dav://host:port/path, davs://...; default $DAV_ENDPOINT), max_attempts, timeout,
    #        readahead, cache: {...}   (bearer token from $DAV_TOKEN, never from the file)
    # chained: datastores: [ {...}, {...} ]
    # rest:    url, max_attempts, timeout   (write-only publishing, REQ-0072)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._file_templates import FileTemplates
from .._storage_class import StorageClassFactory
from ..formatters import FormatterFactory
from ._base import Constraints, Datastore
from ._cache import DatastoreCache
from ._chained import ChainedDatastore
from ._exceptions import DatastoreError
from ._file import FileDatastore
from ._memory import InMemoryDatastore
from ._posix import PosixBackend

__all__ = ["datastore_from_config"]

_COMMON = {"cls", "name", "accept", "reject", "clobber"}
_FILE = _COMMON | {"templates", "formatters", "checksum", "verify_checksums"}
_KEYS = {
    "posix": _FILE | {"root", "fsync"},
    "s3": _FILE | {"bucket", "prefix", "endpoint_url", "max_attempts", "create_bucket", "cache",
                   "connect_timeout", "read_timeout"},
    "dav": _FILE | {"url", "max_attempts", "timeout", "readahead", "cache"},
    "memory": _COMMON,
    "chained": {"cls", "name", "accept", "reject", "datastores"},
    "rest": {"cls", "name", "accept", "reject", "url", "max_attempts", "timeout"},
}


def datastore_from_config(
    config: Mapping[str, Any],
    base: str | Path | None = None,
    storage_classes: StorageClassFactory | None = None,
) -> Datastore:
    """Build the datastore described by ``config``.

    Parameters
    ----------
    config : mapping
        One datastore entry (see module docs), or ``{"datastore": {...}}``.
    base : str or Path, optional
        Directory that relative POSIX roots and cache directories are resolved
        against (the repository root), so moving the repository moves them too.
    storage_classes : StorageClassFactory, optional
        Shared storage class definitions.

    Raises
    ------
    DatastoreError
        Unknown class or keys.
    """
    if "datastore" in config and len(config) == 1:
        config = config["datastore"]
    cls = config.get("cls", "posix")
    if cls not in _KEYS:
        raise DatastoreError(f"unknown datastore class {cls!r}; use one of {sorted(_KEYS)}")
    unknown = set(config) - _KEYS[cls]
    if unknown:
        raise DatastoreError(f"{cls} datastore configuration has unknown key(s) {sorted(unknown)}")
    base_path = Path(base) if base is not None else Path.cwd()
    scf = storage_classes if storage_classes is not None else StorageClassFactory()
    constraints = Constraints(config.get("accept"), config.get("reject"))
    name = config.get("name", cls)
    if cls == "memory":
        return InMemoryDatastore(name, scf, constraints, clobber=bool(config.get("clobber", False)))
    if cls == "rest":
        from ._rest import RestPublishDatastore

        return RestPublishDatastore(config["url"], name, scf, constraints,
                                    max_attempts=int(config.get("max_attempts", 3)),
                                    timeout=float(config.get("timeout", 10.0)))
    if cls == "chained":
        children = [datastore_from_config(c, base_path, scf) for c in config.get("datastores") or []]
        return ChainedDatastore(children, name, constraints)
    common: dict[str, Any] = {
        "name": name,
        "templates": FileTemplates(config.get("templates")),
        "formatters": FormatterFactory(config.get("formatters")),
        "storage_classes": scf,
        "constraints": constraints,
        "clobber": bool(config.get("clobber", False)),
        "checksum": config.get("checksum", "sha256"),
        "verify_checksums": bool(config.get("verify_checksums", True)),
    }
    if cls == "posix":
        root = Path(config.get("root", "data"))
        return FileDatastore(PosixBackend(root if root.is_absolute() else base_path / root,
                                          fsync=bool(config.get("fsync", True))), **common)
    cache = None
    if config.get("cache"):
        cc = dict(config["cache"])
        directory = Path(cc.pop("directory", "cache"))
        cache = DatastoreCache(directory if directory.is_absolute() else base_path / directory, **cc)
    if cls == "dav":
        from ._dav import DavBackend, DavSettings

        url = config.get("url") or DavSettings().endpoint
        if not url:
            raise DatastoreError("a dav datastore needs a 'url' (dav://host:port/path), or DAV_ENDPOINT set")
        dav = DavBackend(str(url), max_attempts=int(config.get("max_attempts", 4)),
                         timeout=float(config.get("timeout", 30.0)), readahead=int(config.get("readahead", 8192)))
        return FileDatastore(dav, cache=cache, **common)
    if "bucket" not in config:
        raise DatastoreError("an s3 datastore needs a 'bucket'")
    from ._s3 import S3Backend  # boto3 (0.15 s) only for S3 repositories

    backend = S3Backend(
        config["bucket"], config.get("prefix", ""), config.get("endpoint_url"),
        max_attempts=int(config.get("max_attempts", 4)), create_bucket=bool(config.get("create_bucket", False)),
        connect_timeout=float(config.get("connect_timeout", 5.0)), read_timeout=float(config.get("read_timeout", 60.0)),
    )
    return FileDatastore(backend, cache=cache, **common)
