"""The planner service against the real Kafka broker and a real (SQLite) butler repository.

The service runs as a subprocess started through the CLI (``nightshift service
planner``). Expectations come from ``tests/ap/planner_support.py``: the
simulator's per-detector WCS and a brute-force overlap with the sky map.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ap"))
from planner_support import INSTRUMENT, SKYMAP, TEMPLATE_RUN, make_repo, next_visit, truth  # noqa: E402

from nightshift.ap import ap_quantum_id  # noqa: E402
from nightshift.events import NextVisit, QuantumPlanned, decode, encode, ensure_topics  # noqa: E402

pytestmark = pytest.mark.integration

GUARD = 180.0  # seconds: only stops a hung test; every wait is on a condition


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Planner:
    """One planner subprocess, started with the CLI."""

    def __init__(self, name: str, repo: Path, tmp: Path) -> None:
        self.port = _free_port()
        self.prefix = f"{name}."
        env = {
            **os.environ, "NIGHTSHIFT_TOPIC_PREFIX": self.prefix, "NIGHTSHIFT_BUTLER_REPO": str(repo),
            "NIGHTSHIFT_SKYMAP": SKYMAP, "NIGHTSHIFT_TEMPLATE_COLLECTIONS": f'["{TEMPLATE_RUN}"]',
            "NIGHTSHIFT_CONSUMER_GROUP": f"planner-{name}", "NIGHTSHIFT_HTTP_PORT": str(self.port),
        }
        self.log = tmp / f"planner-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "nightshift"), "service", "planner"],
                                         env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + GUARD
        while "READY port=" not in self.output():
            assert self.proc.poll() is None, f"the planner exited ({self.proc.returncode}):\n{self.output()}"
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)  # poll interval of a condition wait

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(GUARD)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(GUARD)
        return int(self.proc.returncode)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def _read(bootstrap: str, topic: str, count: int, planner: Planner) -> list[Any]:
    """Read ``topic`` from the beginning until ``count`` messages arrived (the planner must stay alive)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    partitions = len(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[Any] = []
    deadline = time.monotonic() + GUARD
    try:
        while len(out) < count:
            assert planner.proc.poll() is None, f"the planner exited ({planner.proc.returncode}):\n{planner.output()}"
            assert time.monotonic() < deadline, f"{len(out)} of {count} messages on {topic}\n{planner.output()}"
            m = consumer.poll(0.5)
            if m is None:
                continue
            assert m.error() is None or m.error().code() == KafkaError._PARTITION_EOF, m.error()
            if m.error() is None:
                out.append(m)
    finally:
        consumer.close()
    return out


def _sample(text: str, name: str, labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{" + labels + "}") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_next_visits_become_one_quantum_per_detector_in_the_field_and_bad_ones_dead_letters(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    expected = truth()
    inside = {d for d, t in expected.items() if t.patches}
    repo = make_repo(tmp_path / "repo", sorted(expected[94].patches))
    planner = Planner(unique_name, repo.path, tmp_path)
    try:
        planner.wait_ready()
        prefix = planner.prefix
        ensure_topics(kafka_bootstrap, [prefix + "nextVisit"], partitions=4)
        good = next_visit(1)
        small = next_visit(2, [93, 94, 100])
        bad_instrument = next_visit(3, [1], instrument="NoSuchCam")
        bad_detector = next_visit(4, [93, 500])
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        for nv in (good, bad_instrument, good, bad_detector, small):  # `good` delivered twice
            producer.produce(prefix + "nextVisit", encode(nv), key=f"{nv.instrument}/{nv.visit}".encode())
        assert producer.flush(60) == 0

        small_inside = [d for d in small.detectors if d in inside]
        messages = _read(kafka_bootstrap, prefix + "quantum.planned", 2 * len(inside) + len(small_inside), planner)
        events = [decode(m.value(), expected_subject="quantum.planned") for m in messages]
        assert all(isinstance(e, QuantumPlanned) for e in events)
        assert [m.key().decode() for m in messages] == [f"{e.instrument}/{e.detector}" for e in events]
        by_visit: dict[int, dict[int, list[QuantumPlanned]]] = defaultdict(lambda: defaultdict(list))
        for e in events:
            assert isinstance(e, QuantumPlanned) and e.visit is not None and e.detector is not None
            by_visit[e.visit][e.detector].append(e)
        assert set(by_visit) == {good.visit, small.visit}  # nothing of the dead-lettered visits
        assert set(by_visit[good.visit]) == inside
        assert set(by_visit[small.visit]) == set(small_inside)
        # detector 94 has templates but no master calibrations: planned, naming what the runner will miss
        assert by_visit[small.visit][94][0].data_id["missing_inputs"] == "bias,flat"
        assert set(by_visit[small.visit][94][0].inputs) == {repo.templates[tp].id for tp in expected[94].patches}
        for det, twice in by_visit[good.visit].items():
            assert len(twice) == 2  # the redelivery planned the same quantum: same ids, for the runner to dedup
            a, b = twice
            assert a.quantum_id == b.quantum_id == ap_quantum_id(INSTRUMENT, good.visit, det)
            assert a.outputs == b.outputs and a.inputs == b.inputs and a.event_id == b.event_id
            assert a.footprint_deg is not None
            assert a.data_id["band"] == "r" and a.butler_repo == str(repo.path)
            if det in repo.bias and any(tp in repo.templates for tp in expected[det].patches):
                want = {repo.bias[det].id, repo.flat[det].id, *(repo.templates[tp].id for tp in expected[det].patches
                                                                  if tp in repo.templates)}
                assert set(a.inputs) == want and "missing_inputs" not in a.data_id

        dead = _read(kafka_bootstrap, prefix + "nextVisit.dlq", 2, planner)
        reasons = {}
        for m in dead:
            nv = decode(m.value(), expected_subject="nextVisit")
            assert isinstance(nv, NextVisit)
            reasons[nv.visit] = dict(m.headers())
        assert reasons[bad_instrument.visit]["dlq.error_type"] == b"obs_unknown_instrument"
        assert b"NoSuchCam" in reasons[bad_instrument.visit]["dlq.error_message"]
        assert reasons[bad_detector.visit]["dlq.error_type"] == b"obs_unknown_detector"
        assert b"[500]" in reasons[bad_detector.visit]["dlq.error_message"]

        deadline = time.monotonic() + GUARD
        while True:  # the counters move right after the produce the reads above saw
            quanta = _sample(planner.metrics(), "nightshift_planner_quanta_total", f'instrument="{INSTRUMENT}"')
            if quanta == len(events) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert quanta == len(events)
    finally:
        assert planner.stop() == 0, planner.output()  # SIGTERM drains and exits cleanly
