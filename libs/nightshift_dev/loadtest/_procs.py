"""Service processes a load test starts, kills and restarts (``python -m nightshift_services.<module>``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ._errors import LoadTestError

__all__ = ["ServiceProcess"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """One service subprocess with its own HTTP port and log file; restartable with the same settings.

    Parameters
    ----------
    name : str
        Label in the report (``alert-publisher-0``).
    module : str
        Module of ``nightshift_services`` (``alert_publisher``).
    env : dict
        ``NIGHTSHIFT_*`` settings added to this process's environment.
    log_dir : Path
        The process's output goes to ``<log_dir>/<name>.log`` (appended across restarts).
    """

    def __init__(self, name: str, module: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.module = module
        self.port = _free_port()
        self.env = {**os.environ, **env, "NIGHTSHIFT_HTTP_PORT": str(self.port)}
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def pid(self) -> int:
        return -1 if self.proc is None else self.proc.pid

    def start(self) -> ServiceProcess:
        """Start the process (not waiting for it)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", f"nightshift_services.{self.module}"], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, guard: float) -> None:
        """Until ``/readyz`` answers 200; :class:`LoadTestError` with the log's tail if it exits or ``guard`` passes."""
        deadline = time.monotonic() + guard
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.proc is None or self.proc.poll() is not None:
                raise LoadTestError(f"{self.name} exited before it was ready:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise LoadTestError(f"{self.name} not ready after {guard:.0f} s:\n{self.tail()}")
            time.sleep(0.2)  # poll interval of a readiness probe

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would (no drain)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(60)

    def restart(self, guard: float) -> None:
        """Start again with the same settings (same transactional id: it fences its predecessor) and wait ready."""
        self.restarts += 1
        self.start()
        self.wait_ready(guard)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (the service drains), SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"
