"""Starting, finding and stopping the stack's server processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._errors import MissingToolError, StackError

INSTALL_HINTS = {
    "java": "install a JDK 17+: apt-get install -y openjdk-17-jdk-headless",
    "mvn": "install Maven: apt-get install -y maven",
    "initdb": "install PostgreSQL: apt-get install -y postgresql",
    "pg_ctl": "install PostgreSQL: apt-get install -y postgresql",
}


def which(tool: str, extra_dirs: Sequence[Path] = ()) -> str:
    """Path of ``tool`` on PATH or in ``extra_dirs``; a clear error if absent."""
    for folder in extra_dirs:
        candidate = folder / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(tool)
    if found is None:
        hint = INSTALL_HINTS.get(tool, f"install {tool}")
        raise MissingToolError(f"'{tool}' was not found on PATH; {hint} (or run `make demo`, which installs it)")
    return found


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is still alive, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A zombie of ours counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        if state == "Z":
            return None
    except (OSError, IndexError):
        pass
    return pid


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def check_port_free(name: str, host: str, port: int, env_var: str) -> None:
    if port_open(host, port):
        raise StackError(
            f"{name} cannot start: port {host}:{port} is already in use by another program. "
            f"Stop that program, or choose another port with {env_var}=<port>."
        )


def spawn(
    argv: Sequence[str],
    log_file: Path,
    pid_file: Path,
    env: dict[str, str] | None = None,
) -> Callable[[], bool]:
    """Start a server in its own session, output appended to ``log_file``.

    The server outlives this process (it is not a ``Popen`` child we must
    wait for). Returns a function telling whether it is still running, which
    also reaps it if it exited during start-up.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawn(argv[0], list(argv), dict(env if env is not None else os.environ),
                         file_actions=actions, setsid=True)
    pid_file.write_text(str(pid))

    def alive() -> bool:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return read_pid(pid_file) is not None
        return done == 0

    return alive


def wait_ready(
    name: str,
    ready: Callable[[], bool],
    timeout: float,
    log_file: Path,
    alive: Callable[[], bool],
) -> None:
    """Poll ``ready`` until true; fail with the log tail on exit or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            raise StackError(f"{name} exited during start-up. Last lines of {log_file}:\n{log_tail(log_file)}")
        time.sleep(0.25)
    raise StackError(
        f"{name} did not become ready within {timeout:.0f} s. Last lines of {log_file}:\n{log_tail(log_file)}"
    )


def stop_pid(pid_file: Path, timeout: float = 20.0) -> bool:
    """SIGTERM the process group in ``pid_file``; SIGKILL after ``timeout``."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid(pid_file) is not None:
        time.sleep(0.2)
    if read_pid(pid_file) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def run_checked(argv: Sequence[str], what: str, timeout: float = 600, **kwargs: Any) -> str:
    """Run a set-up command; raise StackError with its output if it fails."""
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what} timed out after {timeout:.0f} s: {' '.join(argv)}") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-30:]
        raise StackError(f"{what} failed (exit {result.returncode}): {' '.join(argv)}\n" + "\n".join(output))
    stdout: str = result.stdout  # text=True
    return stdout
