"""A small night through all six Alert Production services over the real stack.

``nightshift_dev.night.run_night`` (what ``nightshift ap run-night`` and ``make demo`` run)
starts the services as processes — ingest, registry, datastore-writer, planner, a runner,
the alert publisher — on topics, consumer groups, a registry schema and an APDB schema of
its own, and sends two visits of two 512x512 detectors through the real Kafka,
PostgreSQL, S3 server and schema registry. Then, independently of the night's own
monitor, every DIA source the APDB holds for those visits must have exactly one alert on
the alert topic, read with ``read_committed``, counted by ``diaSourceId``.
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError

from nightshift_dev.night import NightRepo, NightSpec, run_night
from nightshift_dev.services import SERVICE_MODULES, available_services

# a whole night: slow on a busy machine
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]


def _alert_keys(bootstrap: str, topic: str, group: str) -> collections.Counter[int]:
    """Every committed alert's key on ``topic``, from the beginning to the end of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    consumer.subscribe([topic])
    keys: collections.Counter[int] = collections.Counter()
    eof: set[int] = set()
    partitions: int | None = None
    deadline = time.monotonic() + 120  # a deadlock guard only
    try:
        while time.monotonic() < deadline:
            if partitions is None and consumer.assignment():
                partitions = len(consumer.assignment())
            for msg in consumer.consume(500, 1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add(msg.partition() or 0)
                        continue
                    raise AssertionError(f"alert topic {topic}: {err}")
                keys[int(msg.key() or b"-1")] += 1
            if partitions is not None and len(eof) >= partitions:
                return keys
    finally:
        consumer.close()
    raise AssertionError(f"did not reach the end of {topic} in 120 s")


def test_two_visits_through_every_service_publish_each_dia_source_once(
        kafka_bootstrap: str, pg_dsn: str, s3_endpoint: str, schema_registry_url: str, tmp_path: Path) -> None:
    missing = sorted(set(SERVICE_MODULES) - set(available_services()))
    assert not missing, f"services not installed yet (nightshift_services): {missing}"
    spec = NightSpec(visits=2, detectors=2, detector_size=512, cadence_s=5.0, lead_s=2.0, readout_s=0.5,
                     exposure_time_s=30.0, runners=1, partitions=2, timeout_s=600.0)
    lines: list[str] = []
    made: list[NightRepo] = []
    # a thread of its own: the async tests of this session share the main thread's event loop
    with ThreadPoolExecutor(1) as pool:
        summary = pool.submit(run_night, spec, echo=lines.append, live=False, workdir=tmp_path,
                              start_stack=False, keep=made.append).result(timeout=1800)
    text = "\n".join(lines)
    (night,) = made
    assert summary.visits_complete == 2, text
    assert summary.detectors_failed == 0, text
    assert all(code == 0 for code in summary.exit_codes.values()), f"a service did not drain cleanly: {text}"

    visits = [o.exposure_id for o in night.observations]
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            f'SELECT "diaSourceId", "visit" FROM "{night.apdb_schema}"."DiaSource" WHERE "visit" = ANY(%s)',
            (visits,)).fetchall()
    stored = collections.Counter(int(r[0]) for r in rows)
    assert stored, f"the night stored no DIA source in {night.apdb_schema}:\n{text}"
    assert max(stored.values()) == 1, "a DIA source was stored twice"
    assert {int(r[1]) for r in rows} == set(visits), "each visit must have stored DIA sources"

    alerts = _alert_keys(kafka_bootstrap, night.alert_topic, night.prefix + "check")
    assert set(alerts) == set(stored), (
        f"{len(set(stored) - set(alerts))} DIA sources without an alert, "
        f"{len(set(alerts) - set(stored))} alerts for no stored DIA source")
    duplicates = {k: n for k, n in alerts.items() if n != 1}
    assert not duplicates, f"alerts published more than once: {list(duplicates.items())[:5]}"
    assert summary.alerts == len(stored) and summary.duplicate_alerts == 0 and summary.missing_alerts == 0
    assert "shutter close → last alert of a visit: median" in text
