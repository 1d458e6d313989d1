"""The Kafka runner fleet beyond the executor conformance suite: crashes, redelivery, bad events, timeouts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from kafka_fleet import RunnerFleet
from pipe_support import COLLECTIONS

from nightshift.butler._butler import Butler
from nightshift.events import AsyncProducer, KafkaSettings, QuantumPlanned, decode, dlq_topic
from nightshift.pipe import Pipeline, QuantumStatus, build_quantum_graph
from nightshift.pipe.examples import EXAMPLE_PIPELINE
from nightshift.pipe.executors import KafkaExecutor, QuantumTopics

pytestmark = pytest.mark.integration
RUN = "u/kafka/run"


@pytest.fixture
def fleet(kafka_bootstrap: str, tmp_path: Path) -> Iterator[RunnerFleet]:
    log_dir = tmp_path / "runner-logs"
    log_dir.mkdir()
    fleet = RunnerFleet(kafka_bootstrap, log_dir).start(2)
    yield fleet
    fleet.stop()


def test_a_runner_killed_mid_quantum_loses_nothing(repo: Butler, fleet: RunnerFleet, tmp_path: Path) -> None:
    """SIGKILL inside a quantum: its event is redelivered to the other runner; every quantum ends once."""
    marker = tmp_path / "crash-once"
    marker.write_text("x")
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_config_override("calibrate", "crash_detectors", [1])
    pipe.add_config_override("calibrate", "crash_once_marker", str(marker))
    graph = build_quantum_graph(repo.registry, pipe, collections=COLLECTIONS, run=RUN)
    report = KafkaExecutor(repo.root, bootstrap=fleet.bootstrap, topics=fleet.topics, quantum_timeout=120).run(graph)
    assert not marker.exists(), "no runner ran the crashing quantum"
    assert sum(p.poll() is not None for p in fleet.procs) == 1, "exactly one runner died"
    report.raise_for_failures()
    # a quantum finished before the crash but answered again after redelivery was still run by this execution
    assert report.counts()["succeeded"] == len(graph) == 16
    with Butler(repo.root, collections=[RUN]) as out:
        assert out.get("survey_summary", {"instrument": "Cam"})["n_visits"] == 3
        assert_written_once_by(out, report.execution_id, {"calexp": 12, "visit_summary": 3, "survey_summary": 1})


def test_successive_visits_are_served_by_the_same_persistent_runners(repo: Butler, fleet: RunnerFleet) -> None:
    """Level-1 mode (REQ-0019): each visit is one execution submitted to long-running runner services as
    events; no process starts per visit, and each visit's outputs land with provenance. (Latency:
    loadtests/kafka_executor_bench.py, not asserted here.)"""
    executor = KafkaExecutor(repo.root, bootstrap=fleet.bootstrap, topics=fleet.topics, quantum_timeout=120)
    fleet_pids = {p.pid for p in fleet.procs}
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    served: list[set[int]] = []
    for visit in (0, 1, 2):
        graph = build_quantum_graph(repo.registry, pipe, collections=COLLECTIONS, run=f"{RUN}/{visit}",
                                    where=f"visit = {visit}")
        report = executor.run(graph)
        report.raise_for_failures()
        assert report.counts()["succeeded"] == len(graph) == 6  # 4 detectors, the visit, the survey
        served.append({q.pid for q in report.quanta if q.pid is not None})
        with Butler(repo.root, collections=[f"{RUN}/{visit}"]) as out:
            ref = out.find("visit_summary", {"instrument": "Cam", "visit": visit})
            assert out.registry.get_provenance(ref) is not None
    assert set().union(*served) <= fleet_pids  # every quantum ran in one of the fleet's services ...
    assert all(p.poll() is None for p in fleet.procs)  # ... which are all still up, waiting for the next visit


def test_a_quantum_that_always_kills_its_runner_is_failed_not_retried_forever(
        repo: Butler, kafka_bootstrap: str, tmp_path: Path) -> None:
    """Crash-loop guard: after max_attempts starts that each killed a runner, the quantum is answered FAILED."""
    log_dir = tmp_path / "runner-logs"
    log_dir.mkdir()
    fleet = RunnerFleet(kafka_bootstrap, log_dir, max_attempts="2").start(2)
    stop = threading.Event()

    def supervise() -> None:  # restart dead runners, as a real deployment would
        while not stop.wait(0.5):
            fleet.restart_dead()

    supervisor = threading.Thread(target=supervise)
    supervisor.start()
    try:
        pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
        pipe.add_config_override("calibrate", "crash_detectors", [1])
        graph = build_quantum_graph(repo.registry, pipe, collections=COLLECTIONS, run=RUN, where="visit = 0")
        report = KafkaExecutor(repo.root, bootstrap=fleet.bootstrap, topics=fleet.topics,
                               quantum_timeout=180).run(graph)
    finally:
        stop.set()
        supervisor.join()
        fleet.stop()
    failed = report.failures()
    assert len(failed) == 1 and failed[0].error_type == "crash_loop", [(q.error_type, q.error) for q in failed]
    assert failed[0].data_id["detector"] == 1 and "started 2 times" in (failed[0].error or "")
    downstream = graph.descendants(failed[0].index)
    assert {graph.quanta[i].task_label for i in downstream} == {"visit_summary", "survey_summary"}
    for q in report.quanta:  # its descendants are blocked; every other quantum ran in this execution
        expected = QuantumStatus.FAILED if q.index == failed[0].index else \
            QuantumStatus.BLOCKED if q.index in downstream else QuantumStatus.SUCCEEDED
        assert q.status is expected, (q.task_label, q.data_id, q.status, q.error)
    with Butler(repo.root, collections=[RUN]) as out:  # detectors 0, 2, 3: each output once, with provenance
        assert_written_once_by(out, report.execution_id, {"calexp": 3, "visit_summary": 0, "survey_summary": 0})
        assert not out.exists("calexp", {"instrument": "Cam", "visit": 0, "detector": 1})


def assert_written_once_by(out: Butler, execution_id: str, expected: dict[str, int]) -> None:
    """Each dataset type has the expected number of datasets in RUN, each with provenance naming the execution."""
    for name, n in expected.items():
        refs = out.registry.query_datasets(name, RUN)
        assert len(refs) == len({tuple(sorted(r.data_id.items())) for r in refs}) == n, [r.data_id for r in refs]
        for ref in refs:
            prov = out.registry.get_provenance(ref)
            assert prov is not None and prov.execution_id == execution_id, (name, ref.data_id, prov)
            assert out.exists(ref), f"{name} {ref.data_id} is registered but its file is missing"


def test_an_event_without_a_graph_pointer_goes_to_the_dead_letter_topic(fleet: RunnerFleet) -> None:
    """A v1-style quantum (no graph_uri) cannot be run here: dead-lettered with the reason, runners go on."""
    event = QuantumPlanned(quantum_id=uuid.uuid4(), task_label="isr", instrument="Cam", visit=1, detector=2,
                           data_id={"instrument": "Cam", "visit": "1", "detector": "2"}, inputs=[], outputs=[],
                           config_hash="a" * 64, code_version="1")

    def produce() -> None:
        async def go() -> None:
            async with AsyncProducer(fleet.bootstrap) as producer:
                await producer.send_event(event, topic=fleet.topics.planned)
        asyncio.run(go())  # in a thread: never on the test session's event loop

    t = threading.Thread(target=produce)
    t.start()
    t.join(120)
    assert not t.is_alive(), "publishing the event did not finish"
    consumer = Consumer({"bootstrap.servers": fleet.bootstrap, "group.id": f"dlq-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([dlq_topic(fleet.topics.planned)])
    try:
        msg = None
        deadline = time.monotonic() + 120  # a deadlock guard: the loop ends at the first dead letter
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None, "nothing reached the dead-letter topic"
        assert decode(msg.value()).event_id == event.event_id
        headers = dict(msg.headers() or [])
        assert headers["dlq.error_type"] == b"unrunnable_quantum"
        assert b"graph_uri" in headers["dlq.error_message"]
    finally:
        consumer.close()
    assert all(p.poll() is None for p in fleet.procs), "a runner died on a bad event"


def test_no_runner_means_a_timeout_not_a_hang(repo: Butler, kafka_bootstrap: str) -> None:
    topics = QuantumTopics.with_prefix(f"t{uuid.uuid4().hex[:8]}.nobody.")
    graph = build_quantum_graph(repo.registry, Pipeline.from_yaml(EXAMPLE_PIPELINE), collections=COLLECTIONS,
                                run=RUN, where="visit = 0 AND detector = 0")
    report = KafkaExecutor(repo.root, bootstrap=kafka_bootstrap, topics=topics, quantum_timeout=2).run(graph)
    first = [q for q in report.quanta if q.status is QuantumStatus.FAILED]
    assert len(first) == 1 and first[0].error_type == "quantum_timeout" and "no runner answered" in first[0].error
    assert report.counts()["blocked"] == len(graph) - 1


def test_the_fleet_runs_over_sasl_scram(repo: Butler, kafka_sasl: KafkaSettings, tmp_path: Path) -> None:
    """Executor and runner services authenticate with SCRAM-SHA-512 (runners get NIGHTSHIFT_KAFKA_*)."""
    graph = build_quantum_graph(repo.registry, Pipeline.from_yaml(EXAMPLE_PIPELINE), collections=COLLECTIONS,
                                run=RUN, where="visit = 0")
    with RunnerFleet(kafka_sasl, tmp_path).start(1) as fleet:
        report = KafkaExecutor(repo.root, bootstrap=kafka_sasl, topics=fleet.topics, quantum_timeout=120).run(graph)
        runner_pids = {p.pid for p in fleet.procs}
    report.raise_for_failures()
    assert report.counts()["succeeded"] == len(graph) == 6
    assert {q.pid for q in report.quanta} <= runner_pids  # the quanta ran in the runner service


def test_cli_runs_on_the_fleet(repo: Butler, fleet: RunnerFleet, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nightshift.cli import cli
    from nightshift.pipe.examples import EXAMPLE_PIPELINE as PIPE

    report = tmp_path / "r.json"
    args = ["pipeline", "run", str(repo.root), "-p", str(PIPE), "-i", "raw/all", "-i", "calib/bias", "-o", RUN,
            "-d", "visit = 0", "--executor", "kafka", "--kafka-bootstrap", fleet.bootstrap,
            "--topic-prefix", fleet.prefix, "--quantum-timeout", "120", "--report", str(report)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "6 succeeded" in result.output
    hosts = {q["pid"] for q in json.loads(report.read_text())["quanta"]}
    assert hosts <= {p.pid for p in fleet.procs}  # the quanta ran in the runner services


def test_argument_validation(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        KafkaExecutor(None, bootstrap=kafka_bootstrap, max_in_flight=0)
    with pytest.raises(ValueError, match="quantum_timeout"):
        KafkaExecutor(None, bootstrap=kafka_bootstrap, quantum_timeout=0)
