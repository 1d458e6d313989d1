"""A fleet of runner services on this machine, for the demo, benchmarks and tests.

Production fleets are started by their deployment (``docker-compose.yml``,
Kubernetes); this starts ``python -m nightshift_services.runner`` processes
sharing one consumer group on topics of their own, waits until each is
serving, and stops them with SIGTERM (the services drain).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from types import TracebackType

from nightshift import NightshiftError
from nightshift.events import KafkaSettings, kafka_settings
from nightshift.pipe.executors import QuantumTopics

__all__ = ["LocalRunnerFleet", "RunnerStartError"]


class RunnerStartError(NightshiftError, RuntimeError):
    """A runner service exited before it was serving."""

    error_type = "runner_start"


class LocalRunnerFleet:
    """Runner processes sharing one consumer group and a topic prefix of their own.

    Parameters
    ----------
    bootstrap : KafkaSettings or str
        Kafka brokers and authentication, handed to each runner as ``NIGHTSHIFT_KAFKA_*``.
    log_dir : path, optional
        Each runner's stderr (JSON logs) goes to ``runner-<i>.log`` there; discarded without it.
    prefix : str, optional
        Topic prefix (a fresh unique one by default); :attr:`topics` are the fleet's topics.
    **settings : str
        More runner settings, e.g. ``log_level="WARNING"`` → ``NIGHTSHIFT_LOG_LEVEL``.
    """

    def __init__(self, bootstrap: str | KafkaSettings, log_dir: str | os.PathLike[str] | None = None, *,
                 prefix: str | None = None, **settings: str) -> None:
        self.kafka = kafka_settings(bootstrap)
        self.bootstrap = self.kafka.bootstrap_servers
        self.prefix = prefix if prefix is not None else f"fleet{uuid.uuid4().hex[:8]}."
        self.topics = QuantumTopics.with_prefix(self.prefix)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.settings = {f"NIGHTSHIFT_{k.upper()}": v for k, v in settings.items()}
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, n: int = 2) -> LocalRunnerFleet:
        """Start ``n`` more runners; returns once each is serving."""
        for _ in range(n):
            self.procs.append(self._spawn(len(self.procs)))
        return self

    def _spawn(self, i: int) -> subprocess.Popen[str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTSHIFT_KAFKA_")}
        env = {**inherited, **self.kafka.environment(), "NIGHTSHIFT_TOPIC_PREFIX": self.prefix,
               "NIGHTSHIFT_CONSUMER_GROUP": self.prefix + "runners", "NIGHTSHIFT_HTTP_PORT": "0",
               "NIGHTSHIFT_SERVICE_NAME": f"runner-{i}", **self.settings}
        log_path = None if self.log_dir is None else self.log_dir / f"runner-{i}.log"
        with open(log_path, "a") if log_path is not None else open(os.devnull, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "nightshift_services.runner"], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=log)
        line = proc.stdout.readline() if proc.stdout is not None else ""
        if not line.startswith("READY"):
            proc.wait(10)
            self._close(proc)
            where = f"see {log_path}" if log_path is not None else \
                "run `python -m nightshift_services.runner` to see why"
            tail = ""
            if log_path is not None:  # the log may not outlive a test's temporary directory: quote its end
                with contextlib.suppress(OSError):
                    tail = "; its log ends: " + log_path.read_text(errors="replace")[-2000:]
            raise RunnerStartError(f"runner {i} did not start (exit code {proc.returncode}); {where}{tail}")
        return proc

    def kill(self, i: int) -> None:
        """SIGKILL runner ``i`` (no drain: a crash)."""
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def restart(self, i: int) -> None:
        """Replace runner ``i`` (killing it first if it still runs)."""
        if self.procs[i].poll() is None:
            self.kill(i)
        self._close(self.procs[i])
        self.procs[i] = self._spawn(i)

    def restart_dead(self) -> int:
        """Restart runners that exited (what a supervisor or compose's restart policy does); how many."""
        dead = [i for i, p in enumerate(self.procs) if p.poll() is not None]
        for i in dead:
            self.restart(i)
        return len(dead)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every runner and wait for it to drain (SIGKILL after ``timeout``)."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
            self._close(p)

    @staticmethod
    def _close(p: subprocess.Popen[str]) -> None:
        if p.stdout is not None:
            p.stdout.close()

    def __enter__(self) -> LocalRunnerFleet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
