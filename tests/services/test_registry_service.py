"""The registry service against the real Kafka and PostgreSQL: batches, redelivery, dead letters, crashes, reads.

The service runs as a subprocess (``python -m nightshift_services.registry``).
A test plays the datastore-writer: it puts each dataset's file and record into
the repository's datastore (no registry row), then produces ``dataset.stored``
v2. The registry is checked directly, and through the remote butler with the
token. The crash cases use the service's test hook (``os._exit`` inside the
registry transaction, or after its commit and before the offset commit) and a
restart: every dataset ends registered exactly once and nothing is dead-lettered.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from nightshift.butler import Butler, DatasetRef, DatasetType
from nightshift.butler.registry import Registry
from nightshift.butler.remote import RemoteAuthenticationError
from nightshift.events import DatasetStored, encode

pytestmark = pytest.mark.integration

GUARD = 180.0  # seconds: only stops a hung test; every wait is on a condition
TOKEN = "registry-service-test-token"
INSTRUMENT = "Cam"
METRIC = DatasetType("visit_metric", ["instrument", "visit", "detector"], "StructuredDataDict")


def _populate(reg: Registry, visits: int, detectors: int) -> None:
    """The dimension records the raw ingest would have written before any output of these visits."""
    reg.insert_dimension_records("instrument", [{"name": INSTRUMENT, "visit_max": 10**6, "detector_max": 1000}])
    reg.insert_dimension_records("band", [{"name": "r"}], skip_existing=True)
    reg.insert_dimension_records("physical_filter", [{"instrument": INSTRUMENT, "name": "r_01", "band": "r"}])
    reg.insert_dimension_records("day_obs", [{"instrument": INSTRUMENT, "id": 20260101}])
    reg.insert_dimension_records("detector", [
        {"instrument": INSTRUMENT, "id": d, "full_name": f"R00_S{d}", "purpose": "SCIENCE"} for d in range(detectors)])
    reg.insert_dimension_records("visit", [
        {"instrument": INSTRUMENT, "id": v, "physical_filter": "r_01", "day_obs": 20260101} for v in range(visits)])


@pytest.fixture
def repo(tmp_path: Path, pg_dsn: str, unique_name: str) -> Iterator[Path]:
    Butler.create(tmp_path / "repo", registry_db=pg_dsn, registry_schema=unique_name).close()
    with Butler(tmp_path / "repo") as b:
        _populate(b.registry, visits=4, detectors=8)
    yield tmp_path / "repo"


def _event(visit: int, detector: int, run: str, *, dataset_type: str = METRIC.name,
           storage_class: str | None = "StructuredDataDict", dataset_id: uuid.UUID | None = None) -> DatasetStored:
    data_id = {"instrument": INSTRUMENT, "visit": visit, "detector": detector}
    ref_id = dataset_id or DatasetRef(METRIC, data_id, run).id
    return DatasetStored(dataset_id=ref_id, dataset_type=dataset_type, run=run, uri=f"file:///x/{ref_id}",
                         data_id={k: str(v) for k, v in data_id.items()}, storage_class=storage_class)


def _write_files(repo: Path, events: list[DatasetStored]) -> None:
    """What the datastore-writer does before emitting dataset.stored: the file and its datastore record."""
    with Butler(repo) as b:
        for e in events:
            typed = {"instrument": INSTRUMENT, "visit": int(e.data_id["visit"]), "detector": int(e.data_id["detector"])}
            b.datastore.put({"visit": typed["visit"], "detector": typed["detector"]},
                            DatasetRef(METRIC, typed, e.run, e.dataset_id))


def _produce(bootstrap: str, topic: str, events: list[DatasetStored]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for e in events:
        producer.produce(topic, value=encode(e), key=str(e.dataset_id).encode())
    assert producer.flush(60) == 0


class Service:
    """One registry service process; ``port``/``api_port`` from its READY line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "nightshift_services.registry"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until READY, or EOF if it died
        match = re.search(r"READY port=(\d+) api_port=(\d+)", line)
        if match is None:
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"service did not start: {line!r} {err}")
        self.port, self.api_port = int(match.group(1)), int(match.group(2))

    def metric(self, name: str, label: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10).read().decode()
        found = re.search(rf'^{name}\{{{label}\}} (\S+)$', text, flags=re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def wait_exit(self) -> int:
        return self.proc.wait(GUARD)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def service_env(repo: Path, kafka_bootstrap: str, unique_name: str) -> dict[str, str]:
    return {
        **os.environ, "NIGHTSHIFT_KAFKA_BOOTSTRAP": kafka_bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": f"{unique_name}.",
        "NIGHTSHIFT_CONSUMER_GROUP": f"registry-{unique_name}", "NIGHTSHIFT_BUTLER_REPO": str(repo),
        "NIGHTSHIFT_REGISTRY_TOKEN": TOKEN, "NIGHTSHIFT_HTTP_PORT": "0", "NIGHTSHIFT_API_PORT": "0",
        "NIGHTSHIFT_PARTITIONS": "4", "NIGHTSHIFT_LOG_LEVEL": "WARNING", "NIGHTSHIFT_MAX_BATCH": "50",
        "NIGHTSHIFT_DRAIN_TIMEOUT_S": "20", "NIGHTSHIFT_SESSION_TIMEOUT_MS": "6000",
    }


@contextmanager
def running(env: dict[str, str]) -> Iterator[Service]:
    svc = Service(env)
    try:
        yield svc
    finally:
        svc.stop()


def _wait(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def _count(repo: Path, run: str) -> int:
    with Butler(repo) as b:
        if run not in b.registry.query_collections():
            return 0
        return len(b.registry.query_datasets(METRIC.name, run))


def _dlq(bootstrap: str, topic: str, expected: int) -> list[dict[str, str]]:
    """The first ``expected`` DLQ messages' headers (waits for them), then checks nothing more is there."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})
    consumer.subscribe([topic])
    out: list[dict[str, str]] = []
    deadline = time.monotonic() + GUARD
    eofs: set[int] = set()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    eofs.add(msg.partition() or 0)
                    if len(out) >= expected and len(eofs) == 4:
                        break
                continue
            out.append({k: (v or b"").decode() for k, v in (msg.headers() or [])})
    finally:
        consumer.close()
    return out


def test_batches_are_registered_once_bad_events_dead_lettered_and_readable_remotely(
        repo: Path, service_env: dict[str, str], kafka_bootstrap: str, unique_name: str) -> None:
    run = f"{INSTRUMENT}/prompt/{unique_name}"
    topic = f"{unique_name}.dataset.stored"
    good = [_event(v, d, run) for v in range(3) for d in range(8)]
    _write_files(repo, good)
    conflict = _event(0, 1, run, dataset_id=good[0].dataset_id)  # a registered id with another data ID
    late_good = _event(3, 7, run)  # registered in the same batch as the three bad ones
    missing = _event(0, 0, run, dataset_id=uuid.uuid4())
    missing = missing.model_copy(update={"data_id": {**missing.data_id, "visit": "77"}})  # no visit 77 record
    untyped = _event(1, 1, run, dataset_type="no_such_type", storage_class=None)
    with running(service_env) as svc:
        _produce(kafka_bootstrap, topic, good + good[:5])  # redelivered duplicates
        _wait("24 datasets registered", lambda: _count(repo, run) == 24)
        _produce(kafka_bootstrap, topic, [conflict, missing, untyped, late_good])
        dead = _dlq(kafka_bootstrap, topic + ".dlq", expected=3)
        _write_files(repo, [late_good])
        _wait("the good event of the second batch", lambda: _count(repo, run) == 25)
        reasons = sorted((h["dlq.error_type"], h["dlq.error_message"]) for h in dead)
        assert [r[0] for r in reasons] == ["conflict", "missing_dimension_record", "unknown_dataset_type"]
        assert "visit=77" in reasons[1][1] and "insert the visit record" in reasons[1][1]
        assert "storage_class" in reasons[2][1]

        url = f"http://127.0.0.1:{svc.api_port}"
        with Butler.from_url(url, token=TOKEN, collections=run) as remote:
            refs = remote.registry.query_datasets(METRIC.name, run, where="visit = 2 AND detector IN (3, 5)")
            assert sorted(r.data_id["detector"] for r in refs) == [3, 5]
            assert remote.get(refs[0]) == {"visit": 2, "detector": refs[0].data_id["detector"]}
        with pytest.raises(RemoteAuthenticationError, match="not accepted"):
            Butler.from_url(url, token="not-the-token")
        with pytest.raises(RemoteAuthenticationError, match="no bearer token"):
            Butler.from_url(url, token="")
        assert svc.metric("nightshift_registry_events_total", 'outcome="existing"') >= 5


def test_an_output_stored_by_the_datastore_writers_library_is_registered_and_readable(
        repo: Path, service_env: dict[str, str], kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """The contract with the datastore-writer: its ``store_staged_file`` record plus its dataset.stored
    (an AP data ID with implied keys: band, physical_filter, day_obs) is all the registry service needs."""
    import hashlib

    from nightshift.butler.datastores import datastore_from_config, staged_dataset_ref, store_staged_file

    run = f"{INSTRUMENT}/prompt/{unique_name}"
    data_id = {"instrument": INSTRUMENT, "visit": "2", "detector": "6", "physical_filter": "r_01", "band": "r",
               "day_obs": "20260101"}
    dataset_id = uuid.uuid4()
    # the runner's staged file: written by the formatter the datastore will read it with
    scratch = datastore_from_config({"cls": "posix", "root": str(tmp_path / "staging")})
    ref = staged_dataset_ref("ap_metrics", "StructuredDataDict", data_id, run, dataset_id)
    scratch.put({"n_dia_sources": 42}, ref)
    staged = scratch.backend.local_path(scratch.record(ref).path)
    checksum = hashlib.sha256(staged.read_bytes()).hexdigest()
    with Butler(repo) as b:
        stored = store_staged_file(b.datastore, ref, str(staged), checksum)
    event = DatasetStored(dataset_id=dataset_id, dataset_type="ap_metrics", run=run, uri=stored.uri,
                          data_id=data_id, storage_class="StructuredDataDict", size_bytes=stored.size_bytes,
                          checksum=stored.checksum)
    with running(service_env) as svc:
        _produce(kafka_bootstrap, f"{unique_name}.dataset.stored", [event])
        url = f"http://127.0.0.1:{svc.api_port}"

        def found() -> bool:
            with Butler.from_url(url, token=TOKEN) as remote:
                return run in remote.registry.query_collections() and bool(
                    remote.registry.query_datasets("ap_metrics", run))

        _wait("the writer's output registered", found)
        with Butler.from_url(url, token=TOKEN, collections=run) as remote:
            assert remote.registry.get_dataset_type("ap_metrics").dimensions == ("detector", "instrument", "visit")
            assert remote.get("ap_metrics", instrument=INSTRUMENT, visit=2, detector=6) == {"n_dia_sources": 42}
            (ref_back,) = remote.registry.query_datasets("ap_metrics", run, where="band = 'r'")
            assert ref_back.id == dataset_id


@pytest.mark.parametrize("crash_point", ["in_transaction", "before_offsets"])
def test_a_service_killed_mid_batch_and_restarted_registers_every_dataset_exactly_once(
        repo: Path, service_env: dict[str, str], kafka_bootstrap: str, unique_name: str, crash_point: str) -> None:
    run = f"{INSTRUMENT}/prompt/{unique_name}"
    topic = f"{unique_name}.dataset.stored"
    events = [_event(v, d, run) for v in range(4) for d in range(8)]
    crashing = {**service_env, "NIGHTSHIFT_CRASH_IN_BATCH": "1", "NIGHTSHIFT_CRASH_POINT": crash_point}
    svc = Service(crashing)  # creates the topics; its first batch is where it dies
    try:
        _produce(kafka_bootstrap, topic, events)
        assert svc.wait_exit() == 137
    finally:
        svc.stop()
    with Butler(repo) as b:
        committed = len(b.registry.query_datasets(METRIC.name, run)) if run in b.registry.query_collections() else 0
    if crash_point == "in_transaction":
        assert committed == 0  # the transaction died with the process
    else:
        assert committed > 0  # committed, but the offsets were not: the batch comes again
    with running(service_env) as svc:
        _wait("32 datasets registered", lambda: _count(repo, run) == 32)
        if crash_point == "before_offsets":
            _wait("the redelivered batch seen as already registered",
                  lambda: svc.metric("nightshift_registry_events_total", 'outcome="existing"') >= committed)
    with Butler(repo) as b:
        refs = b.registry.query_datasets(METRIC.name, run)
        assert sorted(r.id for r in refs) == sorted(e.dataset_id for e in events)
    assert _dlq(kafka_bootstrap, topic + ".dlq", expected=0) == []
