"""The registry service: ``dataset.stored`` (v2) in, registry rows out, in batches; and the butler's HTTP read API.

A thin shell over :mod:`nightshift.butler.remote`:

* **Writes.** A worker thread consumes ``dataset.stored`` in batches of up to
  ``max_batch`` events and registers each batch with
  :class:`~nightshift.butler.remote.BatchRegistrar`: one database transaction,
  one bulk insert (PostgreSQL ``COPY``). Events that can never be registered
  (undecodable, a conflicting id, an unknown dataset type without a storage
  class, a data ID naming a dimension without a record) go to
  ``dataset.stored.dlq`` with the reason in the headers; the DLQ messages are
  flushed, then the batch's offsets are committed. A crash anywhere before
  the offset commit redelivers the batch, and registration is idempotent on
  the dataset id, so every dataset is registered exactly once. A database
  failure rolls the batch back and retries it (nothing is committed meanwhile).
  Runners never wait on any of this: they only produce ``dataset.write``.
* **Reads.** With a token configured (``NIGHTSHIFT_REGISTRY_TOKEN``), the read
  API (:class:`~nightshift.butler.remote.ButlerReadAPI`) listens on
  ``api_host:api_port`` (loopback by default), separate from the
  ``/healthz`` ``/readyz`` ``/metrics`` port, so the user-facing port can sit
  behind an ingress with TLS while monitoring stays internal. Clients use
  ``Butler.from_url(url, token=...)``.

The datastore record that the butler needs to read a dataset back is written
by the datastore-writer with the file (``_records/<id>.json`` in the
datastore), so this service writes registry rows only::

    NIGHTSHIFT_BUTLER_REPO=/repo NIGHTSHIFT_REGISTRY_TOKEN=... python -m nightshift_services.registry
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Gauge, Histogram
from pydantic import AliasChoices, Field, SecretStr

from nightshift.butler import Butler
from nightshift.butler.registry import RegistryDatabaseError, RegistryError
from nightshift.butler.remote import BatchRegistrar, ButlerReadAPI, RegistrationResult, Rejection, StoredDataset
from nightshift.events import (
    AsyncProducer,
    DatasetStored,
    DecodeError,
    EventValidationError,
    commit_offsets,
    decode,
    dlq_topic,
    retry_kafka,
    skip_consumer_error,
)
from nightshift.events import ensure_topics as _ensure_topics
from nightshift.service import Service, ServiceConsumer, ServiceSettings, ThreadedLoop, setup_logging

log = logging.getLogger("nightshift.registry_service")

SUBJECT = "dataset.stored"

EVENTS = Counter("nightshift_registry_events_total", "dataset.stored events handled", ["outcome"])
BATCHES = Counter("nightshift_registry_batches_total", "Batches committed to the registry", ["outcome"])
BATCH_SECONDS = Histogram("nightshift_registry_batch_seconds", "From a batch's first message to its offset commit",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf")))
LAG_SECONDS = Histogram("nightshift_registry_lag_seconds", "From dataset.stored's stored_at to its registry commit",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, float("inf")))
CONSUMER_LAG = Gauge("nightshift_registry_consumer_lag", "dataset.stored events not yet consumed", ["partition"])


class RegistrySettings(ServiceSettings):
    """Registry service settings (environment ``NIGHTSHIFT_*``, plus the common ones)."""

    service_name: str = "registry"
    consumer_group: str | None = "nightshift-registry"
    topic_prefix: str = ""
    butler_repo: str = Field(validation_alias=AliasChoices("NIGHTSHIFT_BUTLER_REPO", "BUTLER_REPO"))
    max_batch: int = Field(default=5_000, ge=1)  # events per registry transaction
    poll_timeout_s: float = Field(default=0.2, gt=0)
    partitions: int = Field(default=16, ge=1)  # of dataset.stored and its DLQ, when this service creates them
    replication: int = Field(default=1, ge=1)
    session_timeout_ms: int = Field(default=30_000, ge=6_000)
    kafka_timeout_s: float = Field(default=60.0, gt=0)
    retry_backoff_s: float = Field(default=1.0, gt=0)
    #: How long a broker restart is ridden out (offset commits, DLQ flushes, offset look-ups) before failing.
    broker_outage_s: float = Field(default=300.0, ge=0)
    #: Bearer token of the read API; without one the API is not served.
    registry_token: SecretStr | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8081, ge=0, le=65535)
    api_workers: int = Field(default=4, ge=1)
    #: Test hook: exit the process (os._exit) in the Nth batch, inside the registry transaction
    #: (``in_transaction``) or after its commit and before the offset commit (``before_offsets``).
    crash_in_batch: int | None = Field(default=None, ge=1)
    crash_point: Literal["in_transaction", "before_offsets"] = "before_offsets"
    #: Test hook: while this file exists, a batch waits after its registry commit and before its offset
    #: commit (it touches ``<file>.reached`` first), so a test can take the broker away at that point.
    pause_before_offsets: Path | None = None

    @property
    def topic(self) -> str:
        return self.topic_prefix + SUBJECT


@dataclass
class _Batch:
    """One consumer batch: its messages, the decoded events (and their positions), the registration."""

    msgs: list[Message]
    started: float
    items: list[StoredDataset] = field(default_factory=list)
    events: list[DatasetStored] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    future: Future[RegistrationResult | None] | None = None


def _to_stored(event: DatasetStored) -> StoredDataset:
    return StoredDataset(event.dataset_id, event.dataset_type, event.run, event.data_id, event.storage_class)


class RegistrationLoop(ThreadedLoop):
    """Consume ``dataset.stored`` and register it batch by batch (a worker thread; see the module docstring).

    ``close`` finishes the batch in flight (registry commit, DLQ flush, offset commit), then stops.
    """

    def __init__(self, settings: RegistrySettings) -> None:
        super().__init__()
        self.settings = settings
        self._batches = 0
        self.registered = 0  # datasets inserted since start (tests, benchmark)

    def _run(self) -> None:
        s = self.settings
        base = dict(s.kafka.librdkafka_config())
        # The registry works on its own thread while this one fetches and decodes the next batch: the
        # database's time and Python's overlap (the registry, like the butler, is used by one thread only).
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-writer")
        butler = worker.submit(Butler, s.butler_repo).result()
        registrar = BatchRegistrar(butler.registry)
        producer = Producer({**base, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
        consumer = Consumer({
            **base, "group.id": s.consumer_group or "nightshift-registry", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": s.session_timeout_ms,
            "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024 * 1024,
        })
        consumer.subscribe([s.topic])
        self._running = True
        log.info("registering %s into %s, batches of up to %d", s.topic, butler.registry.url, s.max_batch)
        pending: _Batch | None = None
        try:
            while not self._stop.is_set():
                batch = self._collect(consumer, producer, pending)
                if pending is not None:
                    if not self._finish(consumer, producer, pending):
                        break  # stopping while the database was failing: the batches come again
                    pending = None
                if batch is not None:
                    batch.future = worker.submit(self._register, registrar, batch)
                    pending = batch
            if pending is not None:
                self._finish(consumer, producer, pending)
        finally:
            self._running = False
            consumer.close()
            producer.flush(s.kafka_timeout_s)
            worker.submit(butler.close).result()
            worker.shutdown(wait=True)

    def _collect(self, consumer: Consumer, producer: Producer, pending: _Batch | None) -> _Batch | None:
        """The next batch, decoded as it arrives (undecodable events go to the DLQ at once).

        Blocks for the first message (up to ``poll_timeout_s``), then keeps taking messages while the
        previous batch is still in the database, up to ``max_batch``: a slow transaction makes the next
        batch bigger, not the queue longer.
        """
        s = self.settings
        chunk = consumer.consume(1, s.poll_timeout_s)
        if not chunk:
            return None
        batch = _Batch([], time.monotonic())
        while True:
            for msg in chunk:
                if not skip_consumer_error(msg):
                    self._decode(producer, batch, msg)
            room = s.max_batch - len(batch.msgs)
            if room <= 0:
                return batch
            busy = pending is not None and pending.future is not None and not pending.future.done()
            chunk = consumer.consume(min(room, 1_000), 0.005 if busy else 0)
            if not chunk and not busy:
                return batch

    def _decode(self, producer: Producer, batch: _Batch, msg: Message) -> None:
        batch.msgs.append(msg)
        try:
            event = decode(msg.value() or b"", expected_subject=SUBJECT)
        except (DecodeError, EventValidationError) as exc:
            self._dead(producer, msg, "decode", str(exc), type(exc).__qualname__)
            return
        if isinstance(event, DatasetStored):  # always, given expected_subject
            batch.items.append(_to_stored(event))
            batch.events.append(event)
            batch.positions.append(len(batch.msgs) - 1)

    def _register(self, registrar: BatchRegistrar, batch: _Batch) -> RegistrationResult | None:
        """On the registry's thread: register, retrying a failed database until it answers or we stop."""
        s = self.settings
        self._batches += 1
        crash = s.crash_in_batch is not None and self._batches >= s.crash_in_batch
        while True:
            try:
                if crash and s.crash_point == "in_transaction":
                    with registrar.registry.transaction():  # test hook: die before the transaction commits
                        registrar.register(batch.items)
                        _crash("crash_in_batch: exiting inside the registry transaction")
                return registrar.register(batch.items)
            except RegistryDatabaseError as exc:  # nothing of the batch was written: try again
                BATCHES.labels("retried").inc()
                log.error("registry transaction of %d datasets failed, retrying: %s", len(batch.items), exc)
                if self._stop.wait(s.retry_backoff_s):
                    return None
            except (RegistryError, ValueError) as exc:  # a permanent error the registrar did not foresee
                log.error("batch of %d datasets refused (%s): registering one by one", len(batch.items), exc)
                try:
                    return self._one_by_one(registrar, batch.items)
                except RegistryDatabaseError as db_exc:
                    log.error("registry failed while isolating the batch, retrying: %s", db_exc)
                    if self._stop.wait(s.retry_backoff_s):
                        return None

    def _one_by_one(self, registrar: BatchRegistrar, items: list[StoredDataset]) -> RegistrationResult:
        """Isolate what poisons a batch: each dataset alone; one that still fails is rejected with the error."""
        total = RegistrationResult()
        for index, item in enumerate(items):
            try:
                one = registrar.register([item])
            except RegistryDatabaseError:
                raise
            except (RegistryError, ValueError) as exc:
                total.rejected.append(Rejection(index, "registry_error", f"{type(exc).__name__}: {exc}"))
                continue
            total.inserted += one.inserted
            total.existing += one.existing
            total.rejected.extend(Rejection(index, r.error_type, r.reason) for r in one.rejected)
            total.committed_at = one.committed_at
        total.committed_at = total.committed_at or time.time()
        return total

    def _finish(self, consumer: Consumer, producer: Producer, batch: _Batch) -> bool:
        """Wait for a batch's registration, dead-letter its rejections, then commit its offsets.

        Returns False (and rewinds to the committed offsets) if the registration was abandoned.
        """
        s = self.settings
        assert batch.future is not None  # submitted before it is finished
        result = batch.future.result()
        if result is None:
            self._rewind(consumer)
            return False
        for rej in result.rejected:
            self._dead(producer, batch.msgs[batch.positions[rej.index]], rej.error_type, rej.reason,
                       "RegistrationRejected")
        if s.crash_in_batch is not None and self._batches >= s.crash_in_batch and s.crash_point == "before_offsets":
            _crash(f"crash_in_batch={s.crash_in_batch}: exiting after the registry commit, before the offsets")
        remaining = producer.flush(s.kafka_timeout_s)  # every DLQ message durable before the offsets move
        outage_deadline = time.monotonic() + s.broker_outage_s
        while remaining and time.monotonic() < outage_deadline and not self._stop.is_set():
            log.warning("%d DLQ messages not acknowledged yet: waiting for the brokers", remaining)
            remaining = producer.flush(s.kafka_timeout_s)
        if remaining:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, f"{remaining} DLQ messages not delivered"))
        offsets: dict[tuple[str, int], int] = {}
        for msg in batch.msgs:
            key = (msg.topic() or "", msg.partition() or 0)
            offsets[key] = max(offsets.get(key, 0), (msg.offset() or 0) + 1)
        gate = s.pause_before_offsets
        if gate is not None and gate.exists():
            gate.with_name(gate.name + ".reached").touch()
            while gate.exists() and not self._stop.is_set():
                self._stop.wait(0.05)
        # A broker restart: transient errors are retried, a rebalance leaves the batch to be redelivered
        # (registration is idempotent on dataset_id).
        commit_offsets(consumer, [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                       timeout_s=s.broker_outage_s, should_stop=self._stop.is_set, sleep=self._stop.wait)
        self._lag(consumer)
        seconds = time.monotonic() - batch.started
        BATCHES.labels("committed").inc()
        BATCH_SECONDS.observe(seconds)
        EVENTS.labels("registered").inc(result.inserted)
        EVENTS.labels("existing").inc(result.existing)
        EVENTS.labels("dead_lettered").inc(len(result.rejected))
        self.registered += result.inserted
        rejected = {r.index for r in result.rejected}
        for i, event in enumerate(batch.events):
            if i not in rejected:
                LAG_SECONDS.observe(max(result.committed_at - event.stored_at.timestamp(), 0.0))
        log.info("batch of %d events: %d registered, %d already there, %d dead-lettered", len(batch.msgs),
                 result.inserted, result.existing, len(result.rejected) + len(batch.msgs) - len(batch.items),
                 extra={"batch_seconds": round(seconds, 4)})
        return True

    def _dead(self, producer: Producer, msg: Message, error_type: str, reason: str, exception: str) -> None:
        topic = msg.topic() or self.settings.topic
        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq.error_type", error_type), ("dlq.error_message", reason[:4000]), ("dlq.exception", exception),
            ("dlq.source_topic", topic), ("dlq.source_partition", str(msg.partition())),
            ("dlq.source_offset", str(msg.offset())),
        ]
        while True:
            try:
                producer.produce(dlq_topic(topic), value=msg.value() or b"", key=msg.key(), headers=headers)
                producer.poll(0)
                break
            except BufferError:
                producer.poll(0.05)
        log.warning("dataset.stored event dead-lettered (%s): %s", error_type, reason)

    def _rewind(self, consumer: Consumer) -> None:
        assigned = consumer.assignment()
        if assigned:
            committed = retry_kafka(lambda: consumer.committed(assigned, timeout=self.settings.kafka_timeout_s),
                                    "reading the committed offsets", timeout_s=self.settings.broker_outage_s)
            for tp in committed:
                consumer.seek(TopicPartition(tp.topic, tp.partition,
                                             tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))

    def _lag(self, consumer: Consumer) -> None:
        try:
            for tp in consumer.position(consumer.assignment()):
                _, high = consumer.get_watermark_offsets(tp, timeout=1.0, cached=True)
                if tp.offset >= 0:
                    CONSUMER_LAG.labels(str(tp.partition)).set(max(high - tp.offset, 0))
        except KafkaException:
            pass  # metrics only


def _crash(message: str) -> None:
    log.error(message)
    logging.shutdown()
    os._exit(137)


async def _start_api(settings: RegistrySettings) -> tuple[web.AppRunner, int] | None:
    if settings.registry_token is None or not settings.registry_token.get_secret_value():
        log.warning("NIGHTSHIFT_REGISTRY_TOKEN is not set: the read API is not served")
        return None
    api = ButlerReadAPI(lambda: Butler(settings.butler_repo), settings.registry_token, settings.api_workers)
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.api_host, settings.api_port).start()
    addresses = runner.addresses
    port = int(addresses[0][1]) if addresses else settings.api_port
    log.info("butler read API on %s:%d", settings.api_host, port)
    return runner, port


async def main(settings: RegistrySettings | None = None, ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the registry service until SIGTERM (or ``Service.stop``)."""
    settings = settings or RegistrySettings()
    setup_logging(settings.service_name, settings.log_level, settings.log_format)
    await asyncio.to_thread(_ensure_topics, settings.kafka, [settings.topic, dlq_topic(settings.topic)],
                            partitions=settings.partitions, replication=settings.replication)
    loop = RegistrationLoop(settings)

    def consumers(_producer: AsyncProducer) -> list[ServiceConsumer]:
        return [loop]

    service = Service(settings, consumers)
    api = await _start_api(settings)

    try:
        await service.run(ready, announce=f"api_port={api[1] if api else 'off'}")
    finally:
        if api is not None:
            await api[0].cleanup()


if __name__ == "__main__":
    asyncio.run(main())
