"""A fleet of real runner services (``python -m nightshift_services.runner``) for the Kafka executor tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from nightshift.pipe.executors import QuantumTopics


class RunnerFleet:
    """Runner processes sharing one consumer group and a topic prefix of their own."""

    def __init__(self, bootstrap: str, log_dir: Path, **settings: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = f"t{uuid.uuid4().hex[:8]}."
        self.topics = QuantumTopics.with_prefix(self.prefix)
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[str]] = []
        self.settings = {f"NIGHTSHIFT_{k.upper()}": v for k, v in settings.items()}

    def start(self, n: int = 2) -> RunnerFleet:
        for _ in range(n):
            self.procs.append(self._spawn(len(self.procs)))
        return self

    def _spawn(self, i: int) -> subprocess.Popen[str]:
        env = {**os.environ, "NIGHTSHIFT_KAFKA_BOOTSTRAP": self.bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": self.prefix,
               "NIGHTSHIFT_CONSUMER_GROUP": self.prefix + "runners", "NIGHTSHIFT_HTTP_PORT": "0",
               "NIGHTSHIFT_SESSION_TIMEOUT_MS": "6000", "NIGHTSHIFT_SERVICE_NAME": f"runner-{i}", **self.settings}
        log = open(self.log_dir / f"runner-{i}.log", "a")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen([sys.executable, "-m", "nightshift_services.runner"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=log)
        log.close()
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY"), f"runner did not start: {line!r}; see {self.log_dir}/runner-{i}.log"
        return proc

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def restart(self, i: int) -> None:
        if self.procs[i].poll() is None:
            self.kill(i)
        self._close(self.procs[i])
        self.procs[i] = self._spawn(i)

    def restart_dead(self) -> int:
        """Restart runners that exited (what a supervisor or compose's restart policy does)."""
        dead = [i for i, p in enumerate(self.procs) if p.poll() is not None]
        for i in dead:
            self._close(self.procs[i])
            self.procs[i] = self._spawn(i)
        return len(dead)

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.log_dir.glob("runner-*.log")))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
            self._close(p)

    @staticmethod
    def _close(p: subprocess.Popen[str]) -> None:
        if p.stdout is not None:
            p.stdout.close()
