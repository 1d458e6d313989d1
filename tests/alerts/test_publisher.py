"""Publishing through the real Kafka broker: counts, framing, keys, dead letters, clear failures."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Consumer
from pydantic import SecretStr

from nightshift.alerts import AlertEncoder, AlertPublisher, Cutouts, LocalWcs, PublishError, unframe, write_cutout
from nightshift.apdb import SkyField
from nightshift.events import KafkaSettings

pytestmark = pytest.mark.integration


def drain(bootstrap: str, topic: str, n: int, guard: float = 120.0) -> list[Any]:
    """Every message of ``topic`` once ``n`` have arrived (the guard only stops a hung test)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"drain-{topic}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + guard
    try:
        while len(out) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                out.append(m)
        extra = c.poll(1.0)  # nothing beyond n
        if extra is not None and extra.error() is None:
            out.append(extra)
    finally:
        c.close()
    return out


def visit_batch(bad_rows: bool = False) -> Any:
    sky = SkyField(centres=1, density=300, sources_per_visit=120, forced_per_visit=120)
    v0, v = sky.visit(0), sky.visit(3)
    src = v.sources
    if bad_rows:
        col = src.column("psfNdata").to_pylist()
        col[4] = None
        src = src.set_column(src.schema.get_field_index("psfNdata"), "psfNdata", pa.array(col, pa.int32()))
    rng = np.random.default_rng(0)
    img = rng.normal(size=(30, 30)).astype(np.float32)
    cut = write_cutout(img, img**2, img > 2, np.ones((15, 15)), LocalWcs.around(1.0, 1.0, 30))
    return AlertEncoder().build(src, v.objects, preload=(None, v0.sources, v0.forced_sources),
                                cutouts=[Cutouts(cut, cut, cut)] * src.num_rows)


def test_a_visit_is_published_acknowledged_and_decodable(kafka_bootstrap: str, unique_name: str) -> None:
    batch = visit_batch(bad_rows=True)
    topic, dlq = f"alerts-{unique_name}", f"dlq-{unique_name}"
    with AlertPublisher(kafka_bootstrap, topic=topic, dlq_topic=dlq, partitions=3) as pub:
        report = pub.publish(batch)
    assert report.expected == report.acknowledged == len(batch) == 119
    assert report.failed == []
    assert sum(c.expected for c in report.counts.values()) == 119
    assert all(c.acknowledged == c.expected for c in report.counts.values())
    assert len(report.counts) > 50  # the visit's sources are spread over detectors
    assert set(report.alert_timing_since_shutter_close) == set(batch.visits.tolist())

    messages = drain(kafka_bootstrap, topic, len(batch))
    assert len(messages) == len(batch)
    by_key = {}
    for m in messages:
        schema_id, body = unframe(m.value())
        assert schema_id == 1101
        buf = io.BytesIO(body)
        rec = fastavro.schemaless_reader(buf, batch.schema.parsed)
        assert buf.tell() == len(body)
        assert m.key() == str(rec["diaSourceId"]).encode()
        by_key[rec["diaSourceId"]] = rec
    assert set(by_key) == set(batch.dia_source_ids.tolist())

    dead = drain(kafka_bootstrap, dlq, 1)
    assert len(dead) == 1
    doc = json.loads(dead[0].value())
    assert doc["field"] == "diaSource.psfNdata" and doc["reason"] == "required field is null"
    assert dead[0].key() == str(doc["diaSourceId"]).encode()


def test_a_broker_that_is_down_is_a_clear_error() -> None:
    pub = AlertPublisher(KafkaSettings(bootstrap_servers="127.0.0.1:9"), timeout=3)
    with pytest.raises(PublishError, match=r"no Kafka broker answered at 127\.0\.0\.1:9"):
        pub.publish(visit_batch())


def test_publishing_over_sasl_scram(kafka_sasl: KafkaSettings, unique_name: str) -> None:
    batch = visit_batch()
    topic = f"alerts-{unique_name}"
    with AlertPublisher(kafka_sasl, topic=topic, partitions=2) as pub:
        report = pub.publish(batch)
    assert report.acknowledged == report.expected == len(batch)


def test_wrong_sasl_password_is_refused_without_showing_it(kafka_sasl: KafkaSettings) -> None:
    wrong = kafka_sasl.model_copy(update={"sasl_password": SecretStr("not-the-password")})
    with pytest.raises(PublishError, match="refused the SASL login") as info:
        AlertPublisher(wrong, timeout=10).start()
    assert "not-the-password" not in str(info.value)


def test_a_registry_that_is_down_fails_before_anything_is_sent(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"alerts-{unique_name}"
    pub = AlertPublisher(kafka_bootstrap, topic=topic, registry_url="http://127.0.0.1:9/apis/ccompat/v7")
    with pytest.raises(PublishError, match=r"registry at http://127\.0\.0\.1:9/apis/ccompat/v7 is not reachable"):
        pub.publish(visit_batch())
    pub.close()
    assert drain(kafka_bootstrap, topic, 1, guard=3.0) == []


def test_undelivered_alerts_are_counted_not_lost(kafka_bootstrap: str, unique_name: str) -> None:
    """A topic the broker refuses (message too large for it): the error says how many of how many."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported, untyped

    topic = f"alerts-{unique_name}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": "1000"})])[topic].result(30)
    batch = visit_batch()
    with AlertPublisher(kafka_bootstrap, producer_config={"delivery.timeout.ms": 5000}, topic=topic,
                        create_topics=False, timeout=10) as pub, pytest.raises(PublishError) as info:
        pub.publish(batch)
    report = info.value.report
    assert report.acknowledged == 0 and report.expected == len(batch) == len(report.failed)
    assert f"acknowledged 0 of {len(batch)} alerts" in str(info.value)


def test_brokers_decode_through_the_schema_registry(
    kafka_bootstrap: str, schema_registry_url: str, unique_name: str
) -> None:
    """The way Fink reads Rubin's stream: DeserializingConsumer + AvroDeserializer against the registry."""
    from confluent_kafka import DeserializingConsumer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    batch = visit_batch()
    topic = f"alerts-{unique_name}"
    with AlertPublisher(kafka_bootstrap, topic=topic, partitions=2, registry_url=schema_registry_url) as pub:
        pub.publish(batch)
    got = {}
    with SchemaRegistryClient({"url": schema_registry_url}) as registry:
        consumer = DeserializingConsumer({
            "bootstrap.servers": kafka_bootstrap, "group.id": f"fink-{unique_name}", "auto.offset.reset": "earliest",
            "value.deserializer": AvroDeserializer(registry),
        })
        consumer.subscribe([topic])
        deadline = time.monotonic() + 120  # guard against a hung test only
        try:
            while len(got) < len(batch) and time.monotonic() < deadline:
                m = consumer.poll(0.5)
                if m is not None and m.error() is None:
                    got[m.value()["diaSourceId"]] = m.value()
        finally:
            consumer.close()
    assert set(got) == set(batch.dia_source_ids.tolist())
    expected = {r["diaSourceId"]: r for r in
                (fastavro.schemaless_reader(io.BytesIO(p), batch.schema.parsed) for p in batch.payloads)}
    assert got == expected


def test_an_unregistered_schema_id_is_refused(kafka_bootstrap: str, schema_registry_url: str) -> None:
    pub = AlertPublisher(kafka_bootstrap, registry_url=schema_registry_url)
    pub.check_registry(1101)  # Rubin's id of 11.1 resolves
    with pytest.raises(PublishError, match="does not know schema id 9999"):
        pub.check_registry(9999)
