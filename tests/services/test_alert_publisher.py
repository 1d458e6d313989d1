"""The alert-publisher service against the real Kafka, S3 server and schema registry: every alert exactly once.

The service runs as a subprocess (``python -m nightshift_services.alert_publisher``).
Alerts are read with ``isolation.level=read_committed`` and decoded through the
registry (confluent-kafka's ``AvroDeserializer``), as a community broker reads them.
The crash case kills the publisher inside an open transaction (the
``NIGHTSHIFT_CRASH_AFTER_PRODUCES`` hook: ``os._exit`` after the Nth alert is in the
log, before the commit), restarts it, and counts again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from nightshift.alerts import AlertInputs, read_alert_inputs, simulated_cutouts, write_alert_inputs
from nightshift.apdb import SkyField
from nightshift.events import DiaResults, encode, ensure_topics

pytestmark = pytest.mark.integration

GUARD = 180.0  # seconds: only stops a hung test; every wait is on a condition
DETECTORS = (0, 1, 2)
VISITS = 3


@dataclass
class Night:
    """The dia.results events published to the input topic, and what the alert topic must hold."""

    topic: str
    bucket: str
    expected: set[int]  # diaSourceIds that must become alerts, once each
    bad_rows: set[int]  # diaSourceIds that must go to alerts.dlq
    per_detector: Counter[int]
    pairs: int  # (visit, detector)s with alerts
    missing_bundle_event: str  # event_id of the event whose bundle does not exist
    events: list[DiaResults] = field(default_factory=list)  # the good events, in the order sent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bundles(bucket: str) -> Iterator[tuple[DiaResults, set[int], set[int]]]:
    """(event, good ids, bad ids) of VISITS visits x DETECTORS detectors, bundles written to ``bucket``."""
    sky = SkyField(centres=1, density=400, sources_per_visit=189 * 3, forced_per_visit=189 * 3)
    rng = np.random.default_rng(7)
    history: list[pa.Table] = []
    for i in range(VISITS):
        v = sky.visit(i)
        for det in DETECTORS:
            mask = pa.array(v.sources.column("detector").to_numpy() == det)
            src, obj = v.sources.filter(mask), v.objects.filter(mask)
            bad: set[int] = set()
            if i == 1 and det == 1:  # one row that cannot become a valid alert
                col = src.column("psfNdata").to_pylist()
                col[0] = None
                src = src.set_column(src.schema.get_field_index("psfNdata"), "psfNdata", pa.array(col, pa.int32()))
                bad = {int(src.column("diaSourceId")[0].as_py())}
            fmask = pa.array(v.forced_sources.column("detector").to_numpy() == det)
            ids = src.column("diaSourceId").to_numpy().tolist()
            inputs = AlertInputs(
                sources=src, objects=obj, forced_sources=v.forced_sources.filter(fmask),
                preload_sources=pa.concat_tables(history) if history else None,
                cutouts=AlertInputs.cutout_table(ids, simulated_cutouts(src, rng)),
            )
            uri = write_alert_inputs(inputs, f"s3://{bucket}/dia/visit={v.visit}/detector={det}.arrow")
            event = DiaResults(instrument="LSSTCam", visit=v.visit, detector=det, visit_time_mjd_tai=v.mjd,
                               n_dia_sources=len(ids), n_dia_objects=obj.num_rows, dia_source_ids=ids,
                               results_uri=uri, alert_inputs_uri=uri, exposure_time_s=30.0)
            yield event, set(ids) - bad, bad
        history.append(v.sources.filter(pa.array(np.isin(v.sources.column("detector").to_numpy(), DETECTORS))))


@pytest.fixture
def night(kafka_bootstrap: str, s3_endpoint: str, unique_name: str) -> Night:
    bucket = f"dia-{unique_name}"
    boto3.session.Session().client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    topic = f"dia.results-{unique_name}"
    ensure_topics(kafka_bootstrap, [topic], partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    expected: set[int] = set()
    bad_rows: set[int] = set()
    per_detector: Counter[int] = Counter()
    pairs = 0
    events: list[DiaResults] = []
    for event, good, bad in _bundles(bucket):
        events.append(event)
        producer.produce(topic, encode(event), key=f"{event.visit}-{event.detector}".encode())
        expected |= good
        bad_rows |= bad
        per_detector[event.detector] += len(good)
        pairs += 1
    missing = DiaResults(instrument="LSSTCam", visit=99, detector=0, visit_time_mjd_tai=60300.0, n_dia_sources=1,
                         n_dia_objects=1, dia_source_ids=[1], results_uri="s3://x/y",
                         alert_inputs_uri=f"s3://{bucket}/no/such/bundle.arrow")
    producer.produce(topic, encode(missing), key=b"99-0")
    assert producer.flush(60) == 0
    return Night(topic, bucket, expected, bad_rows, per_detector, pairs, missing.event_id, events)


class Publisher:
    """One service subprocess."""

    def __init__(self, night: Night, name: str, registry: str, tmp: Path, crash_after: int | None = None,
                 cli: bool = False, env_extra: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.alert_topic = f"alerts-{name}"
        self.dlq = f"alerts.dlq-{name}"
        self.group = f"publisher-{name}"
        env = {
            **os.environ,
            "NIGHTSHIFT_INPUT_TOPIC": night.topic, "NIGHTSHIFT_ALERT_TOPIC": self.alert_topic,
            "NIGHTSHIFT_ALERT_DLQ_TOPIC": self.dlq, "NIGHTSHIFT_CONSUMER_GROUP": self.group,
            "NIGHTSHIFT_TRANSACTIONAL_ID": f"txn-{name}", "NIGHTSHIFT_ALERT_PARTITIONS": "3",
            "NIGHTSHIFT_HTTP_PORT": str(self.port), "NIGHTSHIFT_MAX_BATCH": "2",
            "NIGHTSHIFT_ARCHIVE_BUCKET": night.bucket, "SCHEMA_REGISTRY_URL": registry,
        }
        env.pop("NIGHTSHIFT_CRASH_AFTER_PRODUCES", None)
        env.update(env_extra or {})
        if crash_after is not None:
            env["NIGHTSHIFT_CRASH_AFTER_PRODUCES"] = str(crash_after)
        self.log = tmp / f"publisher-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            command = ([str(Path(sys.executable).parent / "nightshift"), "service", "alert-publisher"] if cli
                       else [sys.executable, "-m", "nightshift_services.alert_publisher"])
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

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
        return self.log.read_text(errors="replace")[-4000:]


def _end_offsets(bootstrap: str, topic: str) -> list[TopicPartition]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-probe"})
    try:
        parts = c.list_topics(topic, timeout=30).topics[topic].partitions
        return [TopicPartition(topic, p, c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1])
                for p in parts]
    finally:
        c.close()


def _wait_consumed(bootstrap: str, pub: Publisher, topic: str) -> None:
    """Until the publisher's committed input offsets reach the end of ``topic`` (or its process died)."""
    ends = {tp.partition: tp.offset for tp in _end_offsets(bootstrap, topic)}
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": pub.group, "enable.auto.commit": False})
    deadline = time.monotonic() + GUARD
    try:
        while True:
            committed = probe.committed([TopicPartition(topic, p) for p in ends], timeout=30)
            if all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in committed):
                return
            assert pub.proc.poll() is None, f"the publisher exited ({pub.proc.returncode}):\n{pub.output()}"
            assert time.monotonic() < deadline, f"not every dia.results committed: {committed}\n{pub.output()}"
            time.sleep(0.2)  # poll interval of a condition wait, not a synchronization
    finally:
        probe.close()


def _read_all(bootstrap: str, topic: str, isolation: str) -> list[Any]:
    """Every message of ``topic`` up to its end as ``isolation`` sees it (each partition read to EOF)."""
    config = {"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
              "auto.offset.reset": "earliest", "enable.auto.commit": False, "enable.partition.eof": True,
              "isolation.level": isolation}
    consumer = Consumer(config)
    partitions = len(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])  # offset 0: the beginning
    out: list[Any] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + GUARD
    try:
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                at_end.add(m.partition())
                continue
            at_end.discard(m.partition())
            out.append(m)
    finally:
        consumer.close()
    return out


def _assert_exactly_once(bootstrap: str, registry: str, night: Night, pub: Publisher) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    alerts = _read_all(bootstrap, pub.alert_topic, "read_committed")
    with SchemaRegistryClient({"url": registry}) as client:  # decoded through the registry, as brokers do
        deserialize = AvroDeserializer(client)
        ctx = SerializationContext(pub.alert_topic, MessageField.VALUE)
        records = [deserialize(m.value(), ctx) for m in alerts]
    ids = Counter(int(r["diaSourceId"]) for r in records)
    duplicates = {i: n for i, n in ids.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} alerts published more than once"
    assert set(ids) == night.expected
    assert all(m.key() == str(r["diaSourceId"]).encode() for m, r in zip(alerts, records, strict=True))
    assert all(r["cutoutDifference"] for r in records)


def test_every_alert_once_with_dead_letters_archive_and_metrics(
    kafka_bootstrap: str, schema_registry_url: str, night: Night, unique_name: str, tmp_path: Path
) -> None:
    pub = Publisher(night, unique_name, schema_registry_url, tmp_path)
    try:
        _wait_consumed(kafka_bootstrap, pub, night.topic)
        _assert_exactly_once(kafka_bootstrap, schema_registry_url, night, pub)

        # The bad row went to alerts.dlq with its reason; the event without a bundle to dia.results.dlq.
        dead_rows = _read_all(kafka_bootstrap, pub.dlq, "read_committed")
        assert {json.loads(m.value())["diaSourceId"] for m in dead_rows} == night.bad_rows
        assert all("psfNdata" in json.loads(m.value())["field"] for m in dead_rows)
        dead_events = _read_all(kafka_bootstrap, night.topic + ".dlq", "read_committed")
        assert len(dead_events) == 1
        headers = dict(dead_events[0].headers())
        assert headers["dlq.error_type"] == b"alert_inputs"
        assert b"no/such/bundle.arrow" in headers["dlq.error_message"]

        # Archived: every alert in the object store, by visit and detector.
        s3 = boto3.session.Session().client("s3", endpoint_url=os.environ["S3_ENDPOINT"])
        archived: set[int] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=night.bucket, Prefix="alerts/"):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".index.json"):
                    body = s3.get_object(Bucket=night.bucket, Key=obj["Key"])["Body"].read()
                    archived |= set(json.loads(body)["diaSourceId"])
        assert archived == night.expected

        # Metrics: per-detector counts and one latency observation per (visit, detector) with alerts.
        deadline = time.monotonic() + GUARD
        while True:  # the counters move right after the commit the offsets wait saw
            text = pub.metrics()
            counts = {d: _sample(text, "nightshift_alerts_published_total", f'detector="{d}"') for d in DETECTORS}
            if counts == {d: float(night.per_detector[d]) for d in DETECTORS} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert counts == {d: float(night.per_detector[d]) for d in DETECTORS}
        assert _sample(text, "nightshift_alert_timing_since_shutter_close_seconds_count", "") == night.pairs
        assert _sample(text, "nightshift_alerts_dead_lettered_total", 'detector="1"') == len(night.bad_rows)
    finally:
        assert pub.stop() == 0, pub.output()  # SIGTERM drains and exits cleanly


def test_a_publisher_killed_inside_a_transaction_still_publishes_every_alert_once(
    kafka_bootstrap: str, schema_registry_url: str, night: Night, unique_name: str, tmp_path: Path
) -> None:
    crash_after = len(night.expected) // 2 + 1  # well past the first committed transaction, mid-stream
    first = Publisher(night, unique_name, schema_registry_url, tmp_path, crash_after=crash_after)
    assert first.proc.wait(GUARD) == 137, first.output()
    # The killed transaction's alerts are in the log, but no read_committed reader sees them.
    committed_before = _read_all(kafka_bootstrap, first.alert_topic, "read_committed")
    uncommitted = _read_all(kafka_bootstrap, first.alert_topic, "read_uncommitted")
    assert len(committed_before) < crash_after <= len(uncommitted)

    # Same transactional.id and group, started the other documented way (the CLI).
    second = Publisher(night, unique_name, schema_registry_url, tmp_path, cli=True)
    try:
        _wait_consumed(kafka_bootstrap, second, night.topic)
        _assert_exactly_once(kafka_bootstrap, schema_registry_url, night, second)
        # read_uncommitted would have seen duplicates: the guarantee rests on the transaction, not on luck.
        raw = Counter(m.key() for m in _read_all(kafka_bootstrap, second.alert_topic, "read_uncommitted"))
        assert any(n > 1 for n in raw.values())
    finally:
        assert second.stop() == 0, second.output()


def test_an_object_store_that_does_not_answer_aborts_and_publishes_nothing_until_it_does(
    kafka_bootstrap: str, schema_registry_url: str, night: Night, unique_name: str, tmp_path: Path
) -> None:
    # The bundles cannot be fetched (nothing listens on port 9): a failure that may pass, so every
    # transaction aborts and its events are consumed again; nothing reaches read_committed readers.
    down = Publisher(night, unique_name, schema_registry_url, tmp_path,
                     env_extra={"NIGHTSHIFT_S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    try:
        deadline = time.monotonic() + GUARD
        while True:
            try:
                aborted = _sample(down.metrics(), "nightshift_alert_publisher_transactions_total", 'outcome="aborted"')
            except OSError:  # the HTTP endpoint is not up yet
                aborted = 0.0
            if aborted >= 2:
                break
            assert down.proc.poll() is None and time.monotonic() < deadline, down.output()
            time.sleep(0.2)  # poll interval of a condition wait
        assert _read_all(kafka_bootstrap, down.alert_topic, "read_committed") == []
        assert _read_all(kafka_bootstrap, night.topic + ".dlq", "read_committed") == []  # not dead-lettered
    finally:
        assert down.stop() == 0, down.output()
    up = Publisher(night, unique_name, schema_registry_url, tmp_path)
    try:
        _wait_consumed(kafka_bootstrap, up, night.topic)
        _assert_exactly_once(kafka_bootstrap, schema_registry_url, night, up)
    finally:
        assert up.stop() == 0, up.output()


def _send_again(bootstrap: str, night: Night, events: list[DiaResults]) -> None:
    """Send ``events`` to the input topic again, as a replaying runner does."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for event in events:
        producer.produce(night.topic, encode(event), key=f"{event.visit}-{event.detector}".encode())
    assert producer.flush(60) == 0


def _wait_sample(pub: Publisher, name: str, labels: str, want: float) -> float:
    """The metric once it reached ``want`` (counters move right after the commit), or its value at the guard."""
    deadline = time.monotonic() + GUARD
    while True:
        got = _sample(pub.metrics(), name, labels)
        if got >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)  # poll interval of a condition wait


def test_a_repeated_dia_results_is_published_once(
    kafka_bootstrap: str, schema_registry_url: str, night: Night, unique_name: str, tmp_path: Path
) -> None:
    pub = Publisher(night, unique_name, schema_registry_url, tmp_path)
    try:
        _wait_consumed(kafka_bootstrap, pub, night.topic)
        first, second, third = night.events[0], night.events[4], night.events[5]
        # A runner's replay (the same event, same event id), the same (visit, detector) under a new
        # event id, and one whose DiaSource ids differ from what was published (a conflict).
        renamed = second.model_copy(update={"event_id": "replayed-" + second.event_id})
        conflicting = third.model_copy(update={"event_id": "other-" + third.event_id,
                                               "dia_source_ids": third.dia_source_ids[1:],
                                               "n_dia_sources": third.n_dia_sources - 1})
        _send_again(kafka_bootstrap, night, [first, renamed, conflicting, first])
        _wait_consumed(kafka_bootstrap, pub, night.topic)
        _assert_exactly_once(kafka_bootstrap, schema_registry_url, night, pub)
        assert _wait_sample(pub, "nightshift_alert_publisher_duplicates_total", "", 3) == 3
        dead = {dict(m.headers())["dlq.error_type"] for m in _read_all(kafka_bootstrap, night.topic + ".dlq",
                                                                       "read_committed")}
        assert dead == {b"alert_inputs", b"conflicting_duplicate"}
        # One compacted-topic record per published (visit, detector), written in the alerts' transactions.
        records = _read_all(kafka_bootstrap, night.topic + ".published", "read_committed")
        assert sorted(m.key() for m in records) == sorted(
            f"LSSTCam/{e.visit}/{e.detector}".encode() for e in night.events)
    finally:
        assert pub.stop() == 0, pub.output()


def test_a_repeated_dia_results_after_a_restart_is_published_once(
    kafka_bootstrap: str, schema_registry_url: str, night: Night, unique_name: str, tmp_path: Path
) -> None:
    before = Publisher(night, unique_name, schema_registry_url, tmp_path)
    try:
        _wait_consumed(kafka_bootstrap, before, night.topic)
    finally:
        assert before.stop() == 0, before.output()
    # The publisher is down when the runner replays; the restarted one only knows what the topic says.
    replayed = night.events[:2] + [night.events[2].model_copy(update={"event_id": "new-" + night.events[2].event_id})]
    _send_again(kafka_bootstrap, night, replayed)
    after = Publisher(night, unique_name, schema_registry_url, tmp_path)
    try:
        _wait_consumed(kafka_bootstrap, after, night.topic)
        _assert_exactly_once(kafka_bootstrap, schema_registry_url, night, after)
        assert _wait_sample(after, "nightshift_alert_publisher_duplicates_total", "", 3) == 3
        assert _sample(after.metrics(), "nightshift_alerts_published_total", "") == 0
    finally:
        assert after.stop() == 0, after.output()


def test_two_replicas_in_one_group_publish_a_repeated_dia_results_once(
    kafka_bootstrap: str, schema_registry_url: str, night: Night, unique_name: str, tmp_path: Path
) -> None:
    from confluent_kafka.admin import AdminClient

    first = Publisher(night, unique_name, schema_registry_url, tmp_path)
    second: Publisher | None = None
    try:
        _wait_consumed(kafka_bootstrap, first, night.topic)
        # A second replica joins the group (its own transactional id): the partitions are split, and the
        # one that takes over partitions it never published must know them from the compacted topic.
        shared = {"NIGHTSHIFT_CONSUMER_GROUP": first.group, "NIGHTSHIFT_ALERT_TOPIC": first.alert_topic,
                  "NIGHTSHIFT_ALERT_DLQ_TOPIC": first.dlq}
        second = Publisher(night, unique_name + "-b", schema_registry_url, tmp_path, env_extra=shared)
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        deadline = time.monotonic() + GUARD
        while True:  # until both members hold partitions
            group = admin.describe_consumer_groups([first.group])[first.group].result(timeout=30)
            if len(group.members) == 2 and all(m.assignment.topic_partitions for m in group.members):
                break
            assert second.proc.poll() is None and time.monotonic() < deadline, second.output()
            time.sleep(0.2)  # poll interval of a condition wait
        # Every event again, to every partition: each replica gets repeats of (visit, detector)s the
        # other one published (the compacted topic is read whole, so the input's keying does not matter).
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        for event in night.events:
            for partition in range(3):
                producer.produce(night.topic, encode(event), key=f"{event.visit}-{event.detector}".encode(),
                                 partition=partition)
        assert producer.flush(60) == 0
        _wait_consumed(kafka_bootstrap, first, night.topic)
        _assert_exactly_once(kafka_bootstrap, schema_registry_url, night, first)
        name = "nightshift_alert_publisher_duplicates_total"
        deadline = time.monotonic() + GUARD
        while True:  # the counters move right after the commit the offsets wait saw
            counts = [_sample(p.metrics(), name, "") for p in (first, second)]
            if sum(counts) >= 3 * len(night.events) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sum(counts) == 3 * len(night.events)
        assert all(n > 0 for n in counts), counts  # each replica skipped the repeats of its partitions
    finally:
        assert first.stop() == 0, first.output()
        if second is not None:
            assert second.stop() == 0, second.output()


def test_alert_inputs_round_trip_through_a_file_and_refuse_garbage(tmp_path: Path) -> None:
    sky = SkyField(centres=1, density=300, sources_per_visit=20, forced_per_visit=20)
    v = sky.visit(0)
    ids = v.sources.column("diaSourceId").to_numpy().tolist()
    rng = np.random.default_rng(1)
    inputs = AlertInputs(v.sources, v.objects, v.forced_sources,
                         cutouts=AlertInputs.cutout_table(ids, simulated_cutouts(v.sources, rng)))
    path = str(tmp_path / "b" / "bundle.arrow")
    back = read_alert_inputs(write_alert_inputs(inputs, path))
    assert back.sources.equals(v.sources) and back.objects is not None and back.objects.equals(v.objects)
    assert back.preload_sources is None
    from nightshift.alerts import AlertEncoder

    enc = AlertEncoder()
    assert back.build(enc).messages == inputs.build(enc).messages
    (tmp_path / "junk.arrow").write_bytes(b"not arrow")
    from nightshift.alerts import AlertInputsError

    with pytest.raises(AlertInputsError, match="not a readable Arrow IPC") as info:
        read_alert_inputs(str(tmp_path / "junk.arrow"))
    assert info.value.permanent
    with pytest.raises(AlertInputsError, match="no alert inputs") as info2:
        read_alert_inputs(str(tmp_path / "missing.arrow"))
    assert info2.value.permanent


def _sample(text: str, name: str, labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (labels in line) and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            if head.split("{")[0] == name:
                total += float(value)
    return total
