"""A WebDAV server on loopback: ``wsgidav`` (filesystem provider) in ``cheroot``, with a bearer token.

This is the server ``lsst-resources`` tests its WebDAV client against, and
WebDAV is how Rubin's Science Platform serves users their files. Files live in
``.stack/dav/data`` and survive restarts. The token is
``$NIGHTSHIFT_DAV_TOKEN`` if set, else a random one made at the first start
and kept in ``.stack/dav/token`` (mode 0600). ``env`` exports
``DAV_ENDPOINT`` (``dav://host:port``) and ``DAV_TOKEN``.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from ._process import check_port_free, port_open, read_pid, spawn, stop_pid, wait_ready
from ._settings import StackSettings

NAME = "dav"


def _paths(s: StackSettings) -> dict[str, Path]:
    base = s.state_dir / NAME
    return {"base": base, "data": base / "data", "log": base / "server.log", "pid": base / "dav.pid",
            "token": base / "token"}


def endpoint(s: StackSettings) -> str:
    """``dav://host:port`` of the server (plain HTTP on loopback)."""
    return f"dav://{s.host}:{s.dav_port}"


def token(s: StackSettings) -> str:
    """The server's bearer token (made and kept in the state folder on first use)."""
    env = os.environ.get("NIGHTSHIFT_DAV_TOKEN")
    if env:
        return env
    path = _paths(s)["token"]
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def start(s: StackSettings, timeout: float = 60.0) -> None:
    p = _paths(s)
    if read_pid(p["pid"]) is not None and ready(s):
        return
    check_port_free("the WebDAV server", s.host, s.dav_port, "NIGHTSHIFT_DAV_PORT")
    p["data"].mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NIGHTSHIFT_DAV_TOKEN": token(s)}
    argv = [sys.executable, "-m", "nightshift_dev.devstack._dav_server", "--root", str(p["data"]),
            "--host", s.host, "--port", str(s.dav_port)]
    alive = spawn(argv, p["log"], p["pid"], env=env)
    wait_ready("WebDAV server", lambda: ready(s), timeout, p["log"], alive=alive)


def ready(s: StackSettings) -> bool:
    """The server answers an authenticated OPTIONS."""
    if not port_open(s.host, s.dav_port):
        return False
    import httpx

    try:
        response = httpx.options(f"http://{s.host}:{s.dav_port}/", timeout=2.0,
                                 headers={"Authorization": f"Bearer {token(s)}"})
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def running(s: StackSettings) -> bool:
    return read_pid(_paths(s)["pid"]) is not None


def stop(s: StackSettings) -> bool:
    return stop_pid(_paths(s)["pid"])


def env(s: StackSettings) -> dict[str, str]:
    return {"DAV_ENDPOINT": endpoint(s), "DAV_TOKEN": token(s)}


def log_file(s: StackSettings) -> Path:
    return _paths(s)["log"]
