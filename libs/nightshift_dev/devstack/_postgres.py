"""A private PostgreSQL cluster (initdb + pg_ctl) on a non-default port.

The data directory and the Unix socket live in ``.stack/postgres``. When run as
root, the server runs as the unprivileged system user ``nightshift`` (created
on first use), since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import subprocess
from pathlib import Path

from ._errors import StackError
from ._process import check_port_free, port_open, run_checked, which
from ._settings import StackSettings

NAME = "postgres"
DB = "nightshift"
ROLE = "nightshift"
SERVER_USER = "nightshift"


def _pg_bin_dirs() -> list[Path]:
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return []
    versions = sorted(
        (d for d in root.iterdir() if (d / "bin" / "initdb").is_file()),
        key=lambda d: int(d.name) if d.name.isdigit() else 0,
    )
    return [d / "bin" for d in reversed(versions)]


def _others_can_enter(folder: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in folder.parents if p.exists())


def _base_dir(s: StackSettings) -> Path:
    base = s.state_dir / NAME
    if os.geteuid() == 0 and not _others_can_enter(base):
        # A checkout under a private folder (e.g. mktemp -d, mode 700): the unprivileged
        # server user could not reach it, so the cluster lives in a system folder keyed
        # by the checkout instead.
        key = hashlib.sha256(str(s.state_dir).encode()).hexdigest()[:12]
        base = Path("/var/lib/nightshift-dev") / key / NAME
    return base


def _paths(s: StackSettings) -> dict[str, Path]:
    base = _base_dir(s)
    return {"base": base, "data": base / "data", "socket": base / "socket", "log": base / "server.log"}


def dsn(s: StackSettings) -> str:
    return f"postgresql://{ROLE}@{s.host}:{s.pg_port}/{DB}"


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", SERVER_USER, "--", *argv]


def _ensure_server_user(paths: dict[str, Path]) -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        run_checked(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
            what=f"creating the unprivileged user '{SERVER_USER}' that runs PostgreSQL",
        )
    entry = pwd.getpwnam(SERVER_USER)
    paths["base"].mkdir(parents=True, exist_ok=True)
    for parent in paths["base"].parents:
        if not parent.stat().st_mode & 0o001:
            raise StackError(
                f"PostgreSQL runs as '{SERVER_USER}', which cannot enter {parent}. "
                f"Run `chmod o+x {parent}` or set NIGHTSHIFT_STACK_DIR to a folder it can reach."
            )
    for folder in (paths["base"], paths["socket"]):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, entry.pw_uid, entry.pw_gid)


def _pg_ctl(s: StackSettings, *args: str) -> list[str]:
    p = _paths(s)
    return _as_server_user([which("pg_ctl", _pg_bin_dirs()), "-D", str(p["data"]), *args])


def start(s: StackSettings, timeout: float = 60.0) -> None:
    p = _paths(s)
    if ready(s):
        return
    initdb = which("initdb", _pg_bin_dirs())
    _ensure_server_user(p)
    p["socket"].mkdir(parents=True, exist_ok=True)
    if not (p["data"] / "PG_VERSION").is_file():
        run_checked(
            _as_server_user(
                [initdb, "-D", str(p["data"]), "-U", ROLE, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]
            ),
            what="initialising the PostgreSQL cluster",
        )
    check_port_free("PostgreSQL", s.host, s.pg_port, "NIGHTSHIFT_PG_PORT")
    options = " ".join(
        [
            f"-p {s.pg_port}",
            f"-k {p['socket']}",
            f"-c listen_addresses={s.host}",
            "-c max_connections=200",
            "-c shared_buffers=512MB",
            "-c work_mem=32MB",
            "-c maintenance_work_mem=256MB",
            "-c max_wal_size=4GB",
        ]
    )
    try:
        run_checked(
            _pg_ctl(s, "-l", str(p["log"]), "-o", options, "-w", "-t", str(int(timeout)), "start"),
            what="starting PostgreSQL",
        )
    except StackError as exc:
        from ._process import log_tail

        raise StackError(f"{exc}\nLast lines of {p['log']}:\n{log_tail(p['log'])}") from exc
    _ensure_database(s)


def _ensure_database(s: StackSettings) -> None:
    p = _paths(s)
    psql = which("psql", _pg_bin_dirs())
    base = [psql, "-h", str(p["socket"]), "-p", str(s.pg_port), "-U", ROLE, "-v", "ON_ERROR_STOP=1", "-tA"]
    exists = run_checked(
        [*base, "-d", "postgres", "-c", f"SELECT 1 FROM pg_database WHERE datname = '{DB}'"],
        what="checking the database",
    )
    if exists.strip() != "1":
        run_checked([*base, "-d", "postgres", "-c", f"CREATE DATABASE {DB}"], what="creating the database")


def ready(s: StackSettings) -> bool:
    p = _paths(s)
    if not port_open(s.host, s.pg_port):
        return False
    try:
        pg_isready = which("pg_isready", _pg_bin_dirs())
    except StackError:
        return True
    result = subprocess.run(
        [pg_isready, "-h", s.host, "-p", str(s.pg_port), "-d", DB, "-U", ROLE],
        capture_output=True, check=False,
    )
    return result.returncode == 0 and (p["data"] / "PG_VERSION").is_file()


def running(s: StackSettings) -> bool:
    return (_paths(s)["data"] / "postmaster.pid").is_file() and port_open(s.host, s.pg_port)


def stop(s: StackSettings) -> bool:
    p = _paths(s)
    if not (p["data"] / "postmaster.pid").is_file():
        return False
    run_checked(_pg_ctl(s, "-m", "fast", "-w", "stop"), what="stopping PostgreSQL")
    return True


def env(s: StackSettings) -> dict[str, str]:
    return {"PG_DSN": dsn(s)}


def log_file(s: StackSettings) -> Path:
    return _paths(s)["log"]
