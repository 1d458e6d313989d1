"""The alert-publisher service: ``dia.results`` in, alerts out, effectively exactly once.

A thin shell over :mod:`nightshift.alerts`. Each batch of ``dia.results`` events
is one Kafka transaction (consume → build → produce):

1. ``begin_transaction``;
2. per event, read the alert-ready tables it points to (``alert_inputs_uri``,
   :func:`nightshift.alerts.read_alert_inputs`), build the alerts
   (:class:`nightshift.alerts.AlertEncoder`), produce them keyed by
   ``diaSourceId``, produce the rows that cannot become alerts to ``alerts.dlq``
   with the reason, and archive the alerts to the object store (idempotent:
   the same keys are overwritten with the same alerts on a retry);
3. ``send_offsets_to_transaction`` with the consumer's group metadata, so the
   input offsets commit *with* the alerts;
4. ``commit_transaction`` (or ``abort_transaction`` and rewind on an error).

Readers of the alert topic use ``isolation.level=read_committed``: a crash
anywhere leaves either a committed transaction (alerts and offsets) or an
aborted one (nothing visible, the events are consumed again). The
``transactional.id`` and the consumer's ``group.instance.id`` are the same
stable name, so a restarted publisher fences its predecessor, aborts its open
transaction at once and takes over its partitions without waiting for a
session timeout. Run one per ``transactional_id`` (``-0``, ``-1``, ...)::

    NIGHTSHIFT_KAFKA_BOOTSTRAP=127.0.0.1:19092 python -m nightshift_services.alert_publisher

Settings come from the environment (``NIGHTSHIFT_*``; see :class:`AlertPublisherSettings`),
Kafka authentication from ``NIGHTSHIFT_KAFKA_*`` (:class:`nightshift.events.KafkaSettings`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Gauge, Histogram
from pydantic import AliasChoices, Field

from nightshift.alerts import (
    DLQ_TOPIC,
    AlertArchive,
    AlertBatch,
    AlertEncoder,
    AlertInputsError,
    AlertPublisher,
    AlertSchemaError,
    alert_topic,
    read_alert_inputs,
    s3_client,
)
from nightshift.events import (
    AsyncProducer,
    DecodeError,
    DiaResults,
    EventValidationError,
    decode,
    dlq_topic,
    is_transient,
    retry_kafka,
)
from nightshift.service import Service, ServiceConsumer, ServiceSettings, setup_logging

log = logging.getLogger("nightshift.alert_publisher")

INPUT_TOPIC = "dia.results"
_MJD_UNIX0 = 40587.0
_TAI_UTC = 37.0  # seconds TAI - UTC since 2017

ALERTS = Counter("nightshift_alerts_published_total", "Alerts committed to the alert topic", ["detector"])
DEAD_ROWS = Counter("nightshift_alerts_dead_lettered_total", "DiaSources sent to alerts.dlq", ["detector"])
EVENTS = Counter("nightshift_alert_publisher_events_total", "dia.results events handled", ["outcome"])
TRANSACTIONS = Counter("nightshift_alert_publisher_transactions_total", "Kafka transactions", ["outcome"])
VISIT_ALERTS = Gauge("nightshift_alerts_visit_total", "Alerts committed per visit (the last 20 visits)", ["visit"])
DETECTOR_LAST = Gauge("nightshift_alerts_detector_last_visit", "Alerts of each detector's last visit", ["detector"])
TIMING = Histogram(
    "nightshift_alert_timing_since_shutter_close_seconds",
    "From shutter close to the commit of a (visit, detector)'s alerts (alert_timing_since_shutter_close)",
    buckets=(1, 2, 5, 10, 20, 30, 45, 60, 120, 300, 600, 1800, 3600, float("inf")),
)
TXN_SECONDS = Histogram("nightshift_alert_publisher_transaction_seconds", "Begin to commit of one transaction")
LAG = Gauge("nightshift_alert_publisher_consumer_lag", "Events of dia.results not yet consumed", ["partition"])
_VISITS_KEPT = 20


class AlertPublisherSettings(ServiceSettings):
    """Alert-publisher settings (environment ``NIGHTSHIFT_*``, plus the common ones)."""

    service_name: str = "alert-publisher"
    consumer_group: str | None = "nightshift-alert-publisher"
    #: The stable name of this instance: Kafka ``transactional.id`` and ``group.instance.id``.
    transactional_id: str = "nightshift-alert-publisher-0"
    input_topic: str = INPUT_TOPIC
    #: Default ``lsst-alerts-v{MAJOR}`` of the schema.
    alert_topic: str | None = None
    alert_dlq_topic: str = DLQ_TOPIC
    alert_schema: str | None = None  # "MAJOR.MINOR"; default the latest lsst-alert-packet ships
    alert_partitions: int = Field(default=45, ge=1)
    replication: int = Field(default=1, ge=1)
    schema_registry_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NIGHTSHIFT_SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_URL"))
    archive_bucket: str | None = None
    archive_prefix: str = "alerts"
    s3_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NIGHTSHIFT_S3_ENDPOINT_URL", "S3_ENDPOINT"))
    exposure_time_s: float = Field(default=30.0, gt=0)
    max_batch: int = Field(default=1, ge=1)  # dia.results events per transaction (1: measured, docs/operations.md)
    transaction_timeout_ms: int = Field(default=60_000, ge=1_000)
    session_timeout_ms: int = Field(default=30_000, ge=6_000)
    kafka_timeout_s: float = Field(default=60.0, gt=0)
    #: How long a broker restart is ridden out (retriable transaction commits and aborts, offset look-ups).
    broker_outage_s: float = Field(default=300.0, ge=0)
    #: Test hook: exit the process (os._exit) after this many alerts were produced inside an open
    #: transaction, before it commits, as a crash would. Never set it in production.
    crash_after_produces: int | None = Field(default=None, ge=1)


@dataclass
class _Done:
    """One handled event, recorded in the metrics only once its transaction committed."""

    visit: int
    detector: int
    alerts: int
    dead: int
    shutter_close: float | None


def _retry_in_transaction(err: KafkaError) -> bool:
    """True if a failed transactional call should be called again (retriable, and no abort required)."""
    return bool(err.retriable()) and not err.txn_requires_abort()


def _shutter_close_unix(event: DiaResults, default_exposure: float) -> float:
    exposure = event.exposure_time_s or default_exposure
    unix_tai = (event.visit_time_mjd_tai - _MJD_UNIX0) * 86400.0
    return unix_tai - _TAI_UTC + exposure / 2


class TransactionalAlertLoop:
    """The consume-build-produce loop, one Kafka transaction per batch of events (see the module docstring)."""

    def __init__(self, settings: AlertPublisherSettings) -> None:
        self.settings = settings
        self.encoder = AlertEncoder(settings.alert_schema)
        self.topic = settings.alert_topic or alert_topic(self.encoder.schema.major)
        self.archive = (AlertArchive(settings.archive_bucket, settings.archive_prefix, settings.s3_endpoint_url)
                        if settings.archive_bucket else None)
        self._s3: Any = None  # one client for every bundle read (a boto3 client is slow to make)
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._running = False
        self._produced = 0

    @property
    def running(self) -> bool:
        return self._running

    async def run(self) -> None:
        try:
            await asyncio.to_thread(self._run)
        finally:
            self._finished.set()

    async def close(self, drain_timeout_s: float = 30.0) -> None:
        """Finish the transaction in flight, then stop."""
        self._stop.set()
        await asyncio.to_thread(self._finished.wait, drain_timeout_s)

    # -- the loop (a worker thread) ---------------------------------------------------------------------------
    def _prepare(self) -> None:
        s = self.settings
        checker = AlertPublisher(s.kafka, topic=self.topic, partitions=s.alert_partitions, replication=s.replication,
                                 dlq_topic=s.alert_dlq_topic, registry_url=s.schema_registry_url,
                                 timeout=s.kafka_timeout_s)
        checker.check_registry(self.encoder.schema.schema_id)  # no alert carries an id the registry cannot serve
        checker.ensure_topics(self.topic, s.alert_dlq_topic, dlq_topic(s.input_topic))

    def _run(self) -> None:
        s = self.settings
        self._prepare()
        base = dict(s.kafka.librdkafka_config())
        producer = Producer({
            **base, "transactional.id": s.transactional_id, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "compression.type": "lz4", "partitioner": "murmur2_random",
            "transaction.timeout.ms": s.transaction_timeout_ms,
            "queue.buffering.max.kbytes": 2097151, "queue.buffering.max.messages": 1000000,
        })
        # Fences any predecessor with this transactional.id and aborts its open transaction.
        producer.init_transactions(s.kafka_timeout_s)
        consumer = Consumer({
            **base, "group.id": s.consumer_group or "nightshift-alert-publisher",
            "group.instance.id": s.transactional_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "session.timeout.ms": s.session_timeout_ms,
        })
        consumer.subscribe([s.input_topic])
        self._running = True
        log.info("publishing %s alerts to %s as %s", self.encoder.schema.version, self.topic, s.transactional_id)
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(s.max_batch, timeout=0.5)
                msgs = [m for m in msgs if not self._skip(m)]
                if msgs:
                    self._transaction(consumer, producer, msgs)
                    self._lag(consumer)
        finally:
            self._running = False
            consumer.close()
            producer.flush(s.kafka_timeout_s)

    @staticmethod
    def _skip(msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.code() == KafkaError._PARTITION_EOF:
            return True
        if is_transient(err):  # a broker restart (_TRANSPORT, _ALL_BROKERS_DOWN, ...): librdkafka reconnects
            log.warning("consumer error, waiting for the brokers: %s", err.str())
            return True
        raise KafkaException(err)

    def _transaction(self, consumer: Consumer, producer: Producer, msgs: list[Message]) -> None:
        s = self.settings
        started = time.monotonic()
        producer.begin_transaction()
        done: list[_Done] = []
        try:
            for msg in msgs:
                done.append(self._handle(producer, msg))
            offsets: dict[tuple[str, int], int] = {}
            for msg in msgs:
                key = (msg.topic() or "", msg.partition() or 0)
                offsets[key] = max(offsets.get(key, 0), (msg.offset() or 0) + 1)
            # A retriable error (broker restarting) means "call again"; txn_requires_abort() ones go to the abort.
            retry_kafka(lambda: producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()], consumer.consumer_group_metadata(),
                s.kafka_timeout_s), "sending the offsets to the transaction", timeout_s=s.broker_outage_s,
                retry_if=_retry_in_transaction)
            retry_kafka(lambda: producer.commit_transaction(s.kafka_timeout_s), "committing the transaction",
                        timeout_s=s.broker_outage_s, retry_if=_retry_in_transaction)
        except Exception as exc:
            TRANSACTIONS.labels("aborted").inc()
            fatal = isinstance(exc, KafkaException) and exc.args[0].fatal()
            log.error("transaction of %d events aborted: %s", len(msgs), exc, exc_info=not fatal)
            if fatal:  # fenced by a newer instance, or the broker lost our producer state
                raise
            # An abort that fails too leaves the transaction to the broker's timeout or to our successor's
            # init_transactions: exit, and let the restart fence and abort it.
            retry_kafka(lambda: producer.abort_transaction(s.kafka_timeout_s), "aborting the transaction",
                        timeout_s=s.broker_outage_s)
            self._rewind(consumer)
            self._stop.wait(1.0)  # back off before consuming the same events again
            return
        TRANSACTIONS.labels("committed").inc()
        TXN_SECONDS.observe(time.monotonic() - started)
        now = time.time()
        for d in done:
            self._record(d, now)

    def _rewind(self, consumer: Consumer) -> None:
        """Seek every assigned partition back to its committed offset (the aborted events come again)."""
        assigned = consumer.assignment()
        if not assigned:
            return
        committed = retry_kafka(lambda: consumer.committed(assigned, timeout=self.settings.kafka_timeout_s),
                                "reading the committed offsets", timeout_s=self.settings.broker_outage_s)
        for tp in committed:
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))

    def _lag(self, consumer: Consumer) -> None:
        for tp in consumer.position(consumer.assignment()):
            try:
                _, high = consumer.get_watermark_offsets(tp, timeout=1.0, cached=True)
            except KafkaException:
                continue
            if tp.offset >= 0:
                LAG.labels(str(tp.partition)).set(max(high - tp.offset, 0))

    def _record(self, d: _Done, now: float) -> None:
        det = str(d.detector)
        ALERTS.labels(det).inc(d.alerts)
        DEAD_ROWS.labels(det).inc(d.dead)
        DETECTOR_LAST.labels(det).set(d.alerts)
        if d.visit >= 0:
            VISIT_ALERTS.labels(str(d.visit)).inc(d.alerts)
            kept = sorted((int(v[0]) for v in _label_values(VISIT_ALERTS)), reverse=True)
            for old in kept[_VISITS_KEPT:]:
                VISIT_ALERTS.remove(str(old))
        timing = None
        if d.shutter_close is not None:
            timing = now - d.shutter_close
            TIMING.observe(timing)
        log.info("published %d alerts (%d dead-lettered)", d.alerts, d.dead,
                 extra={"visit": d.visit, "detector": d.detector, "alerts": d.alerts, "dead_lettered": d.dead,
                        "alert_timing_since_shutter_close": timing})

    # -- one event ----------------------------------------------------------------------------------------------
    def _handle(self, producer: Producer, msg: Message) -> _Done:
        try:
            event = decode(msg.value() or b"", expected_subject="dia.results")
        except (DecodeError, EventValidationError) as exc:
            return self._dead_event(producer, msg, exc, "decode")
        if not isinstance(event, DiaResults):  # pragma: no cover - expected_subject guarantees it
            return self._dead_event(producer, msg, TypeError(type(event).__name__), "decode")
        ids = {"visit": event.visit, "detector": event.detector}
        if event.alert_inputs_uri is None:
            return self._dead_event(producer, msg, ValueError(
                "the event has no alert_inputs_uri: publish dia.results v2 pointing at an alert-inputs bundle"),
                "no_alert_inputs", event)
        try:
            if self._s3 is None and event.alert_inputs_uri.startswith("s3://"):
                self._s3 = s3_client(self.settings.s3_endpoint_url)
            inputs = read_alert_inputs(event.alert_inputs_uri, s3=self._s3)
        except AlertInputsError as exc:
            if exc.permanent:
                return self._dead_event(producer, msg, exc, "alert_inputs", event)
            raise  # a fetch that failed: abort, rewind, try again
        got = set(inputs.sources.column("diaSourceId").to_numpy().tolist())
        if got != set(event.dia_source_ids):
            return self._dead_event(producer, msg, ValueError(
                f"the bundle at {event.alert_inputs_uri} holds {len(got)} DiaSources but the event lists "
                f"{len(event.dia_source_ids)} ({len(got ^ set(event.dia_source_ids))} differ)"),
                "inconsistent", event)
        try:
            batch = inputs.build(self.encoder)
        except AlertSchemaError as exc:
            return self._dead_event(producer, msg, exc, "alert_schema", event)
        self._produce_batch(producer, batch)
        if self.archive is not None:
            self.archive.store(batch)
        EVENTS.labels("published").inc()
        log.debug("built %d alerts", len(batch), extra=ids)
        return _Done(event.visit, event.detector, len(batch), len(batch.bad),
                     _shutter_close_unix(event, self.settings.exposure_time_s))

    def _produce(self, producer: Producer, topic: str, key: bytes, value: bytes,
                 headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers)
                producer.poll(0)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.05)

    def _produce_batch(self, producer: Producer, batch: AlertBatch) -> None:
        crash = self.settings.crash_after_produces
        for i, value in zip(batch.dia_source_ids.tolist(), batch.messages, strict=True):
            self._produce(producer, self.topic, str(i).encode(), value)
            self._produced += 1
            if crash is not None and self._produced >= crash:
                producer.flush(self.settings.kafka_timeout_s)  # the open transaction's alerts are in the log
                log.error("crash_after_produces=%d reached: exiting inside an open transaction", crash)
                logging.shutdown()
                os._exit(137)
        for bad in batch.bad:
            doc = {**bad.as_dict(), "schema_id": batch.schema.schema_id, "topic": self.topic}
            self._produce(producer, self.settings.alert_dlq_topic, str(bad.dia_source_id).encode(),
                          json.dumps(doc).encode(),
                          headers=[("error_type", b"invalid_alert"), ("field", bad.field.encode())])

    def _dead_event(self, producer: Producer, msg: Message, exc: BaseException, error_type: str,
                    event: DiaResults | None = None) -> _Done:
        """Send an event that can never become alerts to ``dia.results.dlq``, in the transaction."""
        topic = msg.topic() or self.settings.input_topic
        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq.error_type", error_type), ("dlq.error_message", str(exc)[:4000]),
            ("dlq.exception", type(exc).__qualname__), ("dlq.source_topic", topic),
            ("dlq.source_partition", str(msg.partition())), ("dlq.source_offset", str(msg.offset())),
        ]
        self._produce(producer, dlq_topic(topic), msg.value() or b"", msg.key() or b"", headers)
        EVENTS.labels("dead_lettered").inc()
        extra = {"visit": event.visit, "detector": event.detector} if event is not None else {}
        log.warning("dia.results event dead-lettered (%s): %s", error_type, exc, extra=extra)
        return _Done(event.visit if event else -1, event.detector if event else -1, 0,
                     len(event.dia_source_ids) if event else 0, None)


def _label_values(gauge: Gauge) -> list[tuple[str, ...]]:
    return [tuple(s.labels.values()) for m in gauge.collect() for s in m.samples]


async def main(settings: AlertPublisherSettings | None = None,
               ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run one alert publisher until SIGTERM (or ``Service.stop``)."""
    settings = settings or AlertPublisherSettings()
    setup_logging(settings.service_name, settings.log_level, settings.log_format)
    loop = TransactionalAlertLoop(settings)

    def consumers(_producer: AsyncProducer) -> list[ServiceConsumer]:
        return [loop]

    service = Service(settings, consumers)

    await service.run(ready)


if __name__ == "__main__":
    asyncio.run(main())
