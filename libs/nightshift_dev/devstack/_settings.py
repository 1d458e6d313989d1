"""Where the local stack lives and which loopback ports it uses.

Everything is overridable from the environment (``NIGHTSHIFT_STACK_DIR``,
``NIGHTSHIFT_KAFKA_PORT``, ...), so two checkouts can run side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def project_root(start: Path | None = None) -> Path:
    """The nearest folder above ``start`` (default: cwd) holding ``pyproject.toml``.

    Falls back to the folder of this source tree, then to the current directory.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "deploy").is_dir():
            return folder
    source = Path(__file__).resolve().parents[3]
    if (source / "deploy").is_dir():
        return source
    return here


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not an integer port number") from exc


@dataclass(frozen=True)
class StackSettings:
    """Paths and ports of the local stack.

    Attributes
    ----------
    root : Path
        The project root (holds ``deploy/``).
    state_dir : Path
        Ignored folder with server data, logs and pid files (``.stack/``).
    cache_dir : Path
        Ignored folder with jars resolved from Maven Central (``.cache/``).
    host : str
        Interface every server listens on; loopback by default.
    """

    root: Path = field(default_factory=project_root)
    host: str = field(default_factory=lambda: os.environ.get("NIGHTSHIFT_STACK_HOST", "127.0.0.1"))
    kafka_port: int = field(default_factory=lambda: _env_int("NIGHTSHIFT_KAFKA_PORT", 19092))
    kafka_controller_port: int = field(
        default_factory=lambda: _env_int("NIGHTSHIFT_KAFKA_CONTROLLER_PORT", 19093)
    )
    kafka_sasl_port: int = field(default_factory=lambda: _env_int("NIGHTSHIFT_KAFKA_SASL_PORT", 19094))
    pg_port: int = field(default_factory=lambda: _env_int("NIGHTSHIFT_PG_PORT", 15433))
    s3_port: int = field(default_factory=lambda: _env_int("NIGHTSHIFT_S3_PORT", 19000))
    registry_port: int = field(default_factory=lambda: _env_int("NIGHTSHIFT_REGISTRY_PORT", 18081))
    dav_port: int = field(default_factory=lambda: _env_int("NIGHTSHIFT_DAV_PORT", 19080))

    @property
    def state_dir(self) -> Path:
        env = os.environ.get("NIGHTSHIFT_STACK_DIR")
        return Path(env).resolve() if env else self.root / ".stack"

    @property
    def cache_dir(self) -> Path:
        env = os.environ.get("NIGHTSHIFT_CACHE_DIR")
        return Path(env).resolve() if env else self.root / ".cache"

    @property
    def deploy_dir(self) -> Path:
        return self.root / "deploy"
