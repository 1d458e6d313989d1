"""The Alert Production services as processes on this machine, for ``nightshift ap run-night`` and tests.

Production starts the services from its deployment (``docker-compose.yml``,
``deploy/helm/nightshift``); this starts ``python -m nightshift_services.<module>``
processes with one shared environment, waits until each prints ``READY port=...``,
and stops them with SIGTERM, so each drains its in-flight work, SIGKILL after a timeout.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from nightshift import NightshiftError

__all__ = ["SERVICE_MODULES", "LocalServices", "ServiceProcess", "ServiceStartError", "available_services"]

#: Every Alert Production service in start order (consumers of a topic before its producers): CLI name -> module.
SERVICE_MODULES: dict[str, str] = {
    "registry": "registry",
    "datastore-writer": "datastore_writer",
    "alert-publisher": "alert_publisher",
    "runner": "runner",
    "planner": "planner",
    "ingest": "ingest",
}


class ServiceStartError(NightshiftError, RuntimeError):
    """A service process exited, or said nothing, before it was serving."""

    error_type = "service_start"


def available_services(names: Sequence[str] | None = None) -> list[str]:
    """The services of ``names`` (all by default) whose module ``nightshift_services.<module>`` is installed."""
    out = []
    for name in names or SERVICE_MODULES:
        module = SERVICE_MODULES[name]
        if importlib.util.find_spec(f"nightshift_services.{module}") is not None:
            out.append(name)
    return out


@dataclass
class ServiceProcess:
    """One running service process: its name, replica index, HTTP port and log file."""

    name: str
    index: int
    proc: subprocess.Popen[str]
    port: int
    log: Path | None
    env: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}-{self.index}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class LocalServices:
    """Start, kill, restart and stop service processes sharing one environment.

    Parameters
    ----------
    env : mapping
        Environment of every service (added to this process's own, minus its ``NIGHTSHIFT_*``).
    log_dir : path, optional
        Each process's stderr (JSON logs) goes to ``<name>-<i>.log`` there; discarded without it.
    start_timeout : float
        Seconds a service may take to print ``READY`` (a deadlock guard: imports and topic creation
        take a few seconds on a loaded machine).
    """

    def __init__(self, env: Mapping[str, str], log_dir: str | os.PathLike[str] | None = None, *,
                 start_timeout: float = 180.0) -> None:
        self.env = dict(env)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.start_timeout = start_timeout
        self.procs: list[ServiceProcess] = []

    def start(self, name: str, replicas: int = 1, **settings: str) -> list[ServiceProcess]:
        """Start ``replicas`` processes of service ``name``; returns once each is serving.

        ``settings`` become ``NIGHTSHIFT_<KEY>`` of these processes only; a value may hold ``{i}``,
        replaced by the replica index (e.g. ``transactional_id="night-publisher-{i}"``).
        """
        if name not in SERVICE_MODULES:
            raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICE_MODULES)}")
        started = []
        for _ in range(replicas):
            index = sum(1 for p in self.procs if p.name == name)
            extra = {f"NIGHTSHIFT_{k.upper()}": v.replace("{i}", str(index)) for k, v in settings.items()}
            sp = self._spawn(name, index, extra)
            self.procs.append(sp)
            started.append(sp)
        return started

    def _spawn(self, name: str, index: int, extra: dict[str, str]) -> ServiceProcess:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTSHIFT_")}
        env = {**inherited, "NIGHTSHIFT_HTTP_PORT": "0", "NIGHTSHIFT_SERVICE_NAME": f"{name}-{index}",
               "NIGHTSHIFT_LOG_FORMAT": "json", **self.env, **extra}
        module = SERVICE_MODULES[name]
        log_path = None if self.log_dir is None else self.log_dir / f"{name}-{index}.log"
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") if log_path is not None else open(os.devnull, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", f"nightshift_services.{module}"], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=log)
        line = self._first_line(proc)
        if not line.startswith("READY"):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            self._close(proc)
            tail = ""
            if log_path is not None:
                with contextlib.suppress(OSError):
                    tail = "; its log ends: " + log_path.read_text(errors="replace")[-2000:]
            where = f"see {log_path}" if log_path is not None else f"run `python -m nightshift_services.{module}`"
            raise ServiceStartError(f"service {name}-{index} did not start (exit code {proc.returncode}); "
                                    f"{where}{tail}")
        port = 0
        for part in line.split():
            if part.startswith("port="):
                with contextlib.suppress(ValueError):
                    port = int(part[5:])
        # keep reading stdout so a chatty service never blocks on a full pipe
        threading.Thread(target=self._drain, args=(proc,), daemon=True).start()
        return ServiceProcess(name, index, proc, port, log_path, env)

    def _first_line(self, proc: subprocess.Popen[str]) -> str:
        """The first stdout line, or "" when the process exits or stays silent past the start timeout."""
        result: list[str] = []
        reader = threading.Thread(
            target=lambda: result.append(proc.stdout.readline() if proc.stdout is not None else ""), daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        return result[0] if result else ""

    @staticmethod
    def _drain(proc: subprocess.Popen[str]) -> None:
        if proc.stdout is None:
            return
        with contextlib.suppress(ValueError, OSError):
            for _ in proc.stdout:
                pass

    def by_name(self, name: str) -> list[ServiceProcess]:
        return [p for p in self.procs if p.name == name]

    def kill(self, sp: ServiceProcess) -> None:
        """SIGKILL one process (no drain: a crash)."""
        if sp.alive:
            sp.proc.send_signal(signal.SIGKILL)
        sp.proc.wait(30)

    def restart(self, sp: ServiceProcess) -> ServiceProcess:
        """Replace one process (killing it first if it still runs) with the same settings."""
        self.kill(sp)
        self._close(sp.proc)
        extra = {k: v for k, v in sp.env.items() if k.startswith("NIGHTSHIFT_") and k not in self.env}
        new = self._spawn(sp.name, sp.index, extra)
        self.procs[self.procs.index(sp)] = new
        return new

    def dead(self) -> list[ServiceProcess]:
        return [p for p in self.procs if not p.alive]

    def stop(self, timeout: float = 45.0) -> dict[str, int | None]:
        """SIGTERM every process (producers first) and wait for each to drain; their exit codes by label."""
        order = list(reversed(self.procs))  # started consumers-first: stop the producers of events first
        for p in order:
            if p.alive:
                p.proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for p in order:
            try:
                p.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait(10)
            codes[p.label] = p.proc.returncode
            self._close(p.proc)
        return codes

    @staticmethod
    def _close(p: subprocess.Popen[str]) -> None:
        if p.stdout is not None:
            with contextlib.suppress(OSError):
                p.stdout.close()

    def __enter__(self) -> LocalServices:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
