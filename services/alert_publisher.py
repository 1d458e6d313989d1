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

A (visit, detector) is published once, even when its ``dia.results`` comes again (a
runner's replay after a crash between ``dia.results`` and ``quantum.completed``): step 2
also writes a record keyed ``"{instrument}/{visit}/{detector}"`` to the compacted topic
``{input topic}.published`` in the same transaction, and a later event for a recorded key
is skipped (its offset committed, ``nightshift_alert_publisher_duplicates_total``). The
records of the last ``NIGHTSHIFT_DEDUP_WINDOW_S`` are read back (``read_committed``) at
start and at each partition assignment, and tailed between transactions
(:class:`nightshift.alerts.PublishedLedger`; docs/operations.md).

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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # the stubs omit them
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
    PublishedLedger,
    PublishedRecord,
    PublishError,
    Verdict,
    alert_topic,
    dia_sources_digest,
    published_key,
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
    skip_consumer_error,
)
from nightshift.service import Service, ServiceConsumer, ServiceSettings, ThreadedLoop, setup_logging

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
DUPLICATES = Counter("nightshift_alert_publisher_duplicates_total",
                     "dia.results events skipped: their (visit, detector) was already published", ["detector"])
LEDGER_SIZE = Gauge("nightshift_alert_publisher_published_keys", "(visit, detector)s in the dedup window")
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
    #: The compacted record of published (visit, detector)s; default ``{input_topic}.published``.
    published_topic: str | None = None
    #: How long a published (visit, detector) is remembered (and kept in the compacted topic).
    dedup_window_s: float = Field(default=86_400.0, gt=0)
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
    duplicate: bool = False


def _retry_in_transaction(err: KafkaError) -> bool:
    """True if a failed transactional call should be called again (retriable, and no abort required)."""
    return bool(err.retriable()) and not err.txn_requires_abort()


def _shutter_close_unix(event: DiaResults, default_exposure: float) -> float:
    exposure = event.exposure_time_s or default_exposure
    unix_tai = (event.visit_time_mjd_tai - _MJD_UNIX0) * 86400.0
    return unix_tai - _TAI_UTC + exposure / 2


class TransactionalAlertLoop(ThreadedLoop):
    """The consume-build-produce loop, one Kafka transaction per batch of events (see the module docstring).

    ``close`` finishes the transaction in flight, then stops.
    """

    def __init__(self, settings: AlertPublisherSettings) -> None:
        super().__init__()
        self.settings = settings
        self.encoder = AlertEncoder(settings.alert_schema)
        self.topic = settings.alert_topic or alert_topic(self.encoder.schema.major)
        self.archive = (AlertArchive(settings.archive_bucket, settings.archive_prefix, settings.s3_endpoint_url)
                        if settings.archive_bucket else None)
        self._s3: Any = None  # one client for every bundle read (a boto3 client is slow to make)
        self._produced = 0
        self.published_topic = settings.published_topic or f"{settings.input_topic}.published"
        self.ledger = PublishedLedger(settings.dedup_window_s)
        self._pending: dict[str, PublishedRecord] = {}  # recorded in the open transaction
        self._tail: Consumer | None = None

    # -- the loop (a worker thread) ---------------------------------------------------------------------------
    def _prepare(self) -> None:
        s = self.settings
        checker = AlertPublisher(s.kafka, topic=self.topic, partitions=s.alert_partitions, replication=s.replication,
                                 dlq_topic=s.alert_dlq_topic, registry_url=s.schema_registry_url,
                                 timeout=s.kafka_timeout_s)
        checker.check_registry(self.encoder.schema.schema_id)  # no alert carries an id the registry cannot serve
        checker.ensure_topics(self.topic, s.alert_dlq_topic, dlq_topic(s.input_topic))
        self._ensure_published_topic()

    def _ensure_published_topic(self) -> None:
        """Create the compacted dedup topic (one partition, read whole by every replica) unless it exists."""
        s = self.settings
        admin = AdminClient(dict(s.kafka.librdkafka_config()))
        config = {"cleanup.policy": "compact,delete", "retention.ms": str(int(s.dedup_window_s * 1000)),
                  "min.compaction.lag.ms": "0"}
        topic = NewTopic(self.published_topic, num_partitions=1, replication_factor=s.replication, config=config)
        for name, future in admin.create_topics([topic], operation_timeout=s.kafka_timeout_s).items():
            try:
                future.result(timeout=s.kafka_timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise PublishError(f"could not create the dedup topic {name!r}: {exc}; create it compacted "
                                       "or set NIGHTSHIFT_PUBLISHED_TOPIC") from exc

    # -- the published (visit, detector)s ------------------------------------------------------------------------
    def _rebuild(self) -> None:
        """Read the dedup topic whole (read_committed) into a new ledger, and keep tailing it."""
        s = self.settings
        if self._tail is not None:
            self._tail.close()
        tail = Consumer({
            **dict(s.kafka.librdkafka_config()), "group.id": f"{s.transactional_id}.ledger",
            "enable.auto.commit": False, "isolation.level": "read_committed", "enable.partition.eof": True,
        })
        meta = tail.list_topics(self.published_topic, timeout=s.kafka_timeout_s).topics[self.published_topic]
        tail.assign([TopicPartition(self.published_topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        ledger = PublishedLedger(s.dedup_window_s)
        now = time.time()
        at_end: set[int] = set()
        deadline = time.monotonic() + s.kafka_timeout_s
        while len(at_end) < len(meta.partitions):
            if time.monotonic() > deadline:
                tail.close()
                raise PublishError(f"could not read the dedup topic {self.published_topic!r} to its end "
                                   f"within {s.kafka_timeout_s} s")
            msg = tail.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if is_transient(err):  # a broker restart: librdkafka reconnects; the deadline guards
                    continue
                if err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                at_end.add(msg.partition() or 0)
                continue
            at_end.discard(msg.partition() or 0)
            self._load(ledger, msg, now)
        self.ledger, self._tail = ledger, tail
        LEDGER_SIZE.set(len(ledger))
        log.info("%d published (visit, detector)s in the last %.0f s read from %s", len(ledger),
                 s.dedup_window_s, self.published_topic)

    def _load(self, ledger: PublishedLedger, msg: Message, now: float) -> None:
        stamp = msg.timestamp()[1] / 1000.0 if msg.timestamp()[1] > 0 else now
        if msg.value() is None or stamp < now - ledger.window_s:
            return
        ledger.add((msg.key() or b"").decode(), PublishedRecord.decode(msg.value() or b""), stamp)

    def _follow(self) -> None:
        """Take in what the other replicas committed since (no wait)."""
        if self._tail is None:
            return
        now = time.time()
        while (msg := self._tail.poll(0)) is not None:
            err = msg.error()
            if err is None:
                self._load(self.ledger, msg, now)
            elif err.code() != KafkaError._PARTITION_EOF and not is_transient(err):
                raise KafkaException(err)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # committed() with read_committed waits for a previous owner's pending transactional offsets
        # (KIP-447), so its last transaction is decided before the dedup topic is read again.
        if partitions:
            retry_kafka(lambda: consumer.committed(partitions, timeout=self.settings.kafka_timeout_s),
                        "fetching the committed offsets", timeout_s=self.settings.broker_outage_s)
        self._rebuild()

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
        # The ledger is read in on_assign, before any event of the assigned partitions: after
        # init_transactions, so a killed predecessor's open transaction is aborted by then.
        consumer.subscribe([s.input_topic], on_assign=self._on_assign)
        self._running = True
        log.info("publishing %s alerts to %s as %s", self.encoder.schema.version, self.topic, s.transactional_id)
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(s.max_batch, timeout=0.5)
                msgs = [m for m in msgs if not skip_consumer_error(m)]
                if msgs:
                    self._transaction(consumer, producer, msgs)
                    self._lag(consumer)
        finally:
            self._running = False
            consumer.close()
            if self._tail is not None:
                self._tail.close()
            producer.flush(s.kafka_timeout_s)

    def _transaction(self, consumer: Consumer, producer: Producer, msgs: list[Message]) -> None:
        s = self.settings
        started = time.monotonic()
        self._follow()
        producer.begin_transaction()
        self._pending.clear()
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
            self._pending.clear()
            retry_kafka(lambda: producer.abort_transaction(s.kafka_timeout_s), "aborting the transaction",
                        timeout_s=s.broker_outage_s)
            self._rewind(consumer)
            self._stop.wait(1.0)  # back off before consuming the same events again
            return
        TRANSACTIONS.labels("committed").inc()
        TXN_SECONDS.observe(time.monotonic() - started)
        now = time.time()
        for published, record in self._pending.items():
            self.ledger.add(published, record, now)
        self._pending.clear()
        self.ledger.prune(now)
        LEDGER_SIZE.set(len(self.ledger))
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
        if d.duplicate:
            DUPLICATES.labels(det).inc()
            EVENTS.labels("duplicate").inc()
            log.info("dia.results of an already published (visit, detector) skipped",
                     extra={"visit": d.visit, "detector": d.detector})
            return
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
        key = published_key(event.instrument, event.visit, event.detector)
        record = PublishedRecord(event.event_id, dia_sources_digest(event.dia_source_ids), len(event.dia_source_ids))
        pending = self._pending.get(key)
        verdict = (self.ledger.verdict(key, record.ids_sha256) if pending is None
                   else Verdict.DUPLICATE if pending.ids_sha256 == record.ids_sha256 else Verdict.CONFLICT)
        if verdict is Verdict.DUPLICATE:
            return _Done(event.visit, event.detector, 0, 0, None, duplicate=True)
        if verdict is Verdict.CONFLICT:
            return self._dead_event(producer, msg, ValueError(
                f"(visit {event.visit}, detector {event.detector}) of {event.instrument} was already published "
                "with other DiaSource ids; its alerts are not published twice"), "conflicting_duplicate", event)
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
        # The record first: librdkafka then adds its partition to the transaction with the alerts'
        # partitions, not in a round trip of its own before the commit. Atomic with them either way.
        self._produce(producer, self.published_topic, key.encode(), record.encode())
        self._pending[key] = record
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
