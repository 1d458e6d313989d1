"""Publishing alert batches to Kafka: idempotent, acks=all, batched, counted per (visit, detector).

Wire contract (``docs/alerts.md``): topic ``lsst-alerts-v{MAJOR}``; value =
Confluent framing (byte 0, 4-byte big-endian schema id ``MAJOR*100+MINOR``,
Avro body); key = ``diaSourceId`` as ASCII decimal; partitioner
``murmur2_random`` (the Java client's), so a key always lands on the same
partition whichever client wrote it. Rows that could not become alerts go
to ``alerts.dlq`` as JSON with the reason.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # confluent-kafka's stubs omit them

from ..events import KafkaConnectionError as _KafkaConnectionError
from ..events import KafkaSettings, check_connection, kafka_settings
from ._errors import PublishError
from ._packet import AlertBatch, BadAlert

__all__ = ["DLQ_TOPIC", "PRODUCER_DEFAULTS", "AlertPublisher", "PublishReport", "VisitDetectorCount", "alert_topic"]

log = logging.getLogger(__name__)

#: Dead-letter topic of rows that could not become alerts (JSON with the reason).
DLQ_TOPIC = "alerts.dlq"

#: librdkafka settings of the alert producer; a caller's config overrides them (except the safety ones).
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,  # no duplicates from retries; implies acks=all
    "acks": "all",
    "linger.ms": 5,  # batches fill for 5 ms: no flush per alert
    "compression.type": "lz4",  # chosen by measurement: docs/performance.md (alerts)
    "partitioner": "murmur2_random",  # same key -> partition mapping as the Java client
    "delivery.timeout.ms": 30000,  # bound on the retries of one message
    "queue.buffering.max.kbytes": 2097151,  # a whole visit (~1 GB) may be queued at once
    "queue.buffering.max.messages": 1000000,
}


def alert_topic(major: int) -> str:
    """The alert topic of a schema major version: ``lsst-alerts-v{MAJOR}``."""
    return f"lsst-alerts-v{major}"


@dataclass
class VisitDetectorCount:
    """Alerts of one (visit, detector): how many were sent, acknowledged, failed, dead-lettered."""

    expected: int = 0
    acknowledged: int = 0
    failed: int = 0
    dead_lettered: int = 0
    last_ack: float = 0.0  # unix time of the last acknowledgement


@dataclass
class PublishReport:
    """What the broker acknowledged for one :meth:`AlertPublisher.publish` call.

    ``expected == acknowledged`` unless ``failed`` lists the alerts that were
    not (the call then raised :class:`PublishError` carrying this report).
    """

    topic: str
    schema_id: int
    expected: int = 0
    acknowledged: int = 0
    bytes: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    dead_lettered: list[BadAlert] = field(default_factory=list)
    counts: dict[tuple[int, int], VisitDetectorCount] = field(default_factory=dict)
    started: float = 0.0  # unix time of the first produce
    finished: float = 0.0  # unix time of the last acknowledgement
    alert_timing_since_shutter_close: dict[int, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.finished - self.started if self.finished else 0.0


def _mjd_tai_to_unix(mjd: float) -> float:
    from astropy.time import Time

    return float(Time(mjd, format="mjd", scale="tai").unix)


class AlertPublisher:
    """Publishes :class:`AlertBatch` es to Kafka and counts what the broker acknowledged.

    Parameters
    ----------
    kafka : KafkaSettings or str
        Brokers and authentication (SASL/SCRAM, TLS); a ``host:port`` string
        takes the rest from the ``NIGHTSHIFT_KAFKA_*`` environment.
    producer_config : mapping, optional
        librdkafka producer properties over :data:`PRODUCER_DEFAULTS`
        (``compression.type``, ``linger.ms``, ...); idempotence and ``acks=all``
        cannot be turned off.
    topic : str, optional
        Default ``lsst-alerts-v{MAJOR}`` of each batch's schema.
    partitions, replication : int
        Used when the publisher creates the topic (Rubin: 45 partitions, replication 3).
    dlq_topic : str
        Where rows that could not become alerts go.
    registry_url : str, optional
        A Confluent-compatible schema registry; :meth:`start` checks that it
        serves each schema id before anything is published.
    exposure_time : float
        Seconds; the shutter closes at ``midpoint + exposure_time / 2``.
    create_topics : bool
        Create the topics if they do not exist.
    timeout : float
        Seconds to wait for the broker at start and for the last acknowledgement.
    """

    def __init__(
        self,
        kafka: KafkaSettings | str,
        *,
        producer_config: Mapping[str, Any] | None = None,
        topic: str | None = None,
        partitions: int = 45,
        replication: int = 1,
        dlq_topic: str = DLQ_TOPIC,
        registry_url: str | None = None,
        exposure_time: float = 30.0,
        create_topics: bool = True,
        timeout: float = 60.0,
    ) -> None:
        self.settings = kafka_settings(kafka)
        self._config: dict[str, Any] = {
            **PRODUCER_DEFAULTS, **(producer_config or {}), **self.settings.librdkafka_config(),
            "enable.idempotence": True, "acks": "all",
        }
        self.bootstrap = self.settings.describe()  # for messages: never the password
        self.topic = topic
        self.partitions = partitions
        self.replication = replication
        self.dlq_topic = dlq_topic
        self.registry_url = registry_url.rstrip("/") if registry_url else None
        self.exposure_time = exposure_time
        self.create_topics = create_topics
        self.timeout = timeout
        self._producer: Producer | None = None
        self._ready_topics: set[str] = set()
        self._checked_ids: set[int] = set()
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> AlertPublisher:
        """Connect: check the broker answers (and the registry, if given); fail fast, naming the address."""
        if self._producer is not None:
            return self
        try:
            check_connection(self.settings, timeout=min(self.timeout, 15.0))
        except _KafkaConnectionError as exc:  # includes a refused login (KafkaAuthenticationError)
            raise PublishError(f"cannot publish alerts: {exc}") from exc
        self._producer = Producer(self._config)
        return self

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (up to ``timeout``) and release the client; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            remaining = producer.flush(self.timeout if timeout is None else timeout)
            if remaining:
                log.warning("closing the alert producer with %d messages undelivered", remaining)

    def __enter__(self) -> AlertPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _admin_config(self) -> dict[str, Any]:
        return dict(self.settings.librdkafka_config())

    def ensure_topics(self, *topics: str) -> None:
        """Create ``topics`` (``partitions`` each) unless they exist."""
        wanted = [t for t in topics if t not in self._ready_topics]
        if not wanted:
            return
        admin = AdminClient(self._admin_config())
        try:
            existing = set(admin.list_topics(timeout=self.timeout).topics)
        except KafkaException as exc:
            raise PublishError(f"Kafka at {self.bootstrap} did not answer: {exc.args[0]}") from exc
        new = [NewTopic(t, num_partitions=self.partitions if t != self.dlq_topic else 1,
                        replication_factor=self.replication) for t in wanted if t not in existing]
        if new:
            for name, future in admin.create_topics(new, operation_timeout=self.timeout).items():
                try:
                    future.result(timeout=self.timeout)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise PublishError(f"could not create topic {name!r} on {self.bootstrap}: {exc}") from exc
        self._ready_topics.update(wanted)

    def check_registry(self, schema_id: int) -> None:
        """Fail unless the registry serves ``schema_id`` (so no alert carries an unregistered id)."""
        if self.registry_url is None or schema_id in self._checked_ids:
            return
        url = f"{self.registry_url}/schemas/ids/{schema_id}"
        try:
            with urllib.request.urlopen(url, timeout=min(self.timeout, 10.0)) as resp:
                json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise PublishError(
                f"the schema registry at {self.registry_url} does not know schema id {schema_id} "
                f"(HTTP {exc.code}); register the alert schemas first"
            ) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PublishError(f"the schema registry at {self.registry_url} is not reachable: {exc}") from exc
        self._checked_ids.add(schema_id)

    # -- publishing ----------------------------------------------------------------------------------------------
    def publish(self, batch: AlertBatch, *, wait: bool = True) -> PublishReport:
        """Send every alert of ``batch`` and its bad rows (to the DLQ); wait for the broker's acknowledgements.

        Returns
        -------
        PublishReport
            Counts per (visit, detector), the latency metric per visit, the bytes sent.

        Raises
        ------
        PublishError
            Not every alert was acknowledged within the delivery timeout (the
            report is attached as ``exc.report``): the count is never silently short.
        """
        self.start()
        producer = self._producer
        if producer is None:  # pragma: no cover - start() sets it
            raise PublishError("the publisher is closed")
        topic = self.topic or alert_topic(batch.schema.major)
        self.check_registry(batch.schema.schema_id)
        if self.create_topics:
            self.ensure_topics(topic, *( [self.dlq_topic] if batch.bad else []))
        report = PublishReport(topic, batch.schema.schema_id)
        counts = report.counts
        visits, detectors = batch.visits.tolist(), batch.detectors.tolist()
        where: dict[bytes, tuple[int, int]] = {}
        for v, d in zip(visits, detectors, strict=True):
            counts.setdefault((v, d), VisitDetectorCount()).expected += 1
        lock = self._lock

        def delivered(err: KafkaError | None, msg: Message) -> None:
            now = time.time()
            key = msg.key() or b"-1"
            c = counts[where[key]]
            with lock:
                if err is None:
                    report.acknowledged += 1
                    c.acknowledged += 1
                    if now > c.last_ack:
                        c.last_ack = now
                    report.finished = max(report.finished, now)
                else:
                    c.failed += 1
                    report.failed.append((int(key), err.str()))

        def dead_lettered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                with lock:
                    report.failed.append((int(msg.key() or b"-1"), f"dead-letter write failed: {err.str()}"))

        report.started = time.time()
        ids = batch.dia_source_ids.tolist()
        for i, value in enumerate(batch.messages):  # framed already: no copy here
            key = str(ids[i]).encode()
            where[key] = (visits[i], detectors[i])
            report.bytes += len(value)
            self._produce(producer, topic, key, value, delivered)
        report.expected = len(batch.messages)
        for bad in batch.bad:
            key = str(bad.dia_source_id).encode()
            doc = {**bad.as_dict(), "schema_id": batch.schema.schema_id, "topic": topic}
            self._produce(producer, self.dlq_topic, key, json.dumps(doc).encode(), dead_lettered,
                          headers=[("error_type", b"invalid_alert"), ("field", bad.field.encode())])
            counts.setdefault((bad.visit or -1, bad.detector or -1), VisitDetectorCount()).dead_lettered += 1
            report.dead_lettered.append(bad)
        if not wait:
            return report
        return self.wait(report, batch)

    def wait(self, report: PublishReport, batch: AlertBatch | None = None) -> PublishReport:
        """Wait for every acknowledgement of ``report`` (see :meth:`publish`)."""
        producer = self._producer
        if producer is None:
            raise PublishError("the publisher is closed")
        deadline = time.monotonic() + self.timeout + self._config.get("delivery.timeout.ms", 30000) / 1000
        while report.acknowledged + len(report.failed) < report.expected or len(producer) > 0:
            producer.poll(0.05)
            if time.monotonic() > deadline:
                break
        missing = report.expected - report.acknowledged
        if batch is not None and report.finished:
            mids: dict[int, float] = {}
            for v, t in zip(batch.visits.tolist(), batch.midpoints.tolist(), strict=True):
                mids.setdefault(v, t)
            for v, mjd in mids.items():
                last = max((c.last_ack for (vv, _), c in report.counts.items() if vv == v), default=0.0)
                if last:
                    close = _mjd_tai_to_unix(mjd) + self.exposure_time / 2
                    report.alert_timing_since_shutter_close[v] = last - close
        if missing:
            reasons = sorted({r for _, r in report.failed})[:3]
            raise PublishError(
                f"Kafka at {self.bootstrap} acknowledged {report.acknowledged} of {report.expected} alerts on "
                f"{report.topic}; {missing} not delivered ({'; '.join(reasons) or 'timed out'})",
                report=report,
            )
        return report

    def _produce(
        self, producer: Producer, topic: str, key: bytes, value: bytes, callback: Any,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=callback, headers=headers)
                producer.poll(0)  # serve the acknowledgements that have arrived
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.05)
            except KafkaException as exc:
                raise PublishError(f"could not queue an alert for {topic} on {self.bootstrap}: {exc}") from exc

