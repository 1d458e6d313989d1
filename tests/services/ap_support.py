"""Helpers for the ingest-side service tests: a service subprocess and a reader of topics from the beginning."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

GUARD = 180.0  # seconds: only stops a hung test; every wait is on a condition


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """``nightshift service NAME`` as a subprocess, its output in a log file."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.log = log_dir / f"{name}-{time.monotonic_ns()}.log"
        full = {**os.environ, "NIGHTSHIFT_HTTP_PORT": str(self.port), "NIGHTSHIFT_LOG_FORMAT": "text", **env}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "nightshift"), "service", name],
                                         env=full, stdout=out, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def get(self, path: str) -> str:
        """The body of ``GET path`` on the service's HTTP endpoint."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as resp:
            return str(resp.read().decode())

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(GUARD)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(GUARD)
        return int(self.proc.returncode)


class TopicReader:
    """Reads ``topics`` from their beginning; :meth:`until` polls until a condition on what was read holds."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        parts = []
        for topic in topics:
            meta = self.consumer.list_topics(topic, timeout=30).topics[topic]
            parts += [TopicPartition(topic, p, 0) for p in meta.partitions]
        self.consumer.assign(parts)
        self.messages: dict[str, list[Message]] = {t: [] for t in topics}

    def until(self, done: Callable[[dict[str, list[Message]]], bool], what: str,
              alive: Callable[[], bool] = lambda: True, context: Callable[[], Any] = lambda: "") -> None:
        deadline = time.monotonic() + GUARD
        while not done(self.messages):
            assert alive(), f"the service exited while waiting for {what}:\n{context()}"
            assert time.monotonic() < deadline, f"no {what} within {GUARD:.0f} s; read {self.counts()}:\n{context()}"
            m = self.consumer.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            self.messages[m.topic() or ""].append(m)

    def counts(self) -> dict[str, int]:
        return {t: len(v) for t, v in self.messages.items()}

    def close(self) -> None:
        self.consumer.close()


def header(msg: Message, name: str) -> str:
    """One header of a consumed message, as text ('' if absent)."""
    for key, value in msg.headers() or []:
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""
