"""An at-least-once asyncio consumer with bounded concurrency and dead-letter topics.

Each poll takes at most ``max_batch`` messages; their handlers run concurrently
(at most ``concurrency`` at a time); the batch's offsets are committed only
after every message of it has ended *handled* or *dead-lettered*. A crash
before the commit redelivers the batch, so handlers must have idempotent
effects (deterministic ids, upserts). A message that cannot be decoded, fails
validation, or whose handler fails with a non-retriable error (or keeps failing
with a retriable one) goes to ``<topic>.dlq`` with the reason in headers, and
the consumer goes on.

A broker restart does not stop the consumer: offset commits that fail with a
transient error (``NOT_COORDINATOR``, ``_TRANSPORT``, ...) are retried with
backoff for up to ``broker_outage_s`` (:func:`commit_offsets`); a commit made
moot by a rebalance is dropped and the batch redelivered; dead-letter sends and
handler failures caused by the broker being away (:func:`is_broker_outage`) are
retried for as long, instead of using up a message's ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from prometheus_client import Counter, Histogram

from .._exceptions import NightshiftError
from ._connect import check_connection
from ._errors import DeliveryError, EnqueueTimeoutError, EventError, KafkaConnectionError
from ._models import EVENT_TYPES, Event
from ._producer import AsyncProducer
from ._resilience import TRANSIENT_KAFKA_ERRORS, commit_offsets
from ._serde import decode
from ._settings import KafkaSettings, kafka_settings
from ._topics import dlq_topic

log = logging.getLogger(__name__)

Handler = Callable[[Event, Message], Awaitable[None]]

EVENTS = Counter("nightshift_events_total", "Events consumed, by topic and outcome", ["topic", "status"])
HANDLE_SECONDS = Histogram("nightshift_event_handle_seconds", "Handler wall time per event", ["topic"])

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,  # commit only after the effect succeeded
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 10000,
    "max.poll.interval.ms": 300000,
}


def is_retriable(exc: BaseException) -> bool:
    """Retry policy lives on the error classes; transient OS/timeouts are retriable too."""
    if isinstance(exc, NightshiftError):
        return exc.retriable
    return isinstance(exc, (TimeoutError, ConnectionError))


def is_broker_outage(exc: BaseException) -> bool:
    """True if ``exc`` says the brokers are away (not that the message is bad): worth waiting for."""
    if isinstance(exc, DeliveryError):
        return exc.kafka_error is not None and exc.kafka_error in TRANSIENT_KAFKA_ERRORS
    return isinstance(exc, (EnqueueTimeoutError, KafkaConnectionError)) and exc.retriable


#: How many recent dead-letter reasons :class:`ConsumerStats` keeps.
DLQ_REASONS_KEPT = 100


@dataclass
class ConsumerStats:
    """Counts since start, for tests and the service's status page.

    ``dlq_reasons`` holds the last :data:`DLQ_REASONS_KEPT` reasons, oldest first
    (a long-running service must not grow without bound; ``dead_lettered`` counts all).
    """

    handled: int = 0
    dead_lettered: int = 0
    retries: int = 0
    batches: int = 0
    dlq_reasons: deque[str] = field(default_factory=lambda: deque(maxlen=DLQ_REASONS_KEPT))

    def record_dead_letter(self, reason: str) -> None:
        """Count one dead-lettered message and keep its reason among the recent ones."""
        self.dead_lettered += 1
        self.dlq_reasons.append(reason)


class EventConsumer:
    """Consume events from ``topics`` and call ``handler`` for each.

    Parameters
    ----------
    kafka : KafkaSettings or str
        Brokers and authentication; a ``host:port`` string takes the rest from
        the ``NIGHTSHIFT_KAFKA_*`` environment.
    group_id : str
    topics : sequence of str
        Topics named after event subjects; messages are decoded and validated.
    handler : callable
        ``async def handler(event, message) -> None``; its effect must be idempotent.
    producer : AsyncProducer
        Used for dead-letter messages (shared with the service).
    max_batch, concurrency : int
        Messages per poll and handlers in flight: the backpressure bounds.
    max_attempts : int
        Attempts for a handler that fails with a retriable error.
    subjects : mapping, optional
        Event subject of each topic, for topics not named after their subject.
    connect_timeout : float or None
        :meth:`run` first checks that the brokers answer and accept the
        credentials: a refused login fails at once, unreachable brokers after
        this many seconds. ``None`` skips the check.
    broker_outage_s : float
        How long a broker restart is ridden out: offset commits failing with a
        transient error, and dead-letter sends or handlers failing because the
        brokers are away, are retried (backoff up to 5 s) for this long before
        :meth:`run` fails (``CommitError`` or the send's error).
    """

    def __init__(
        self,
        kafka: str | KafkaSettings,
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        producer: AsyncProducer,
        *,
        max_batch: int = 100,
        concurrency: int = 16,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.2,
        poll_timeout_s: float = 0.5,
        config: Mapping[str, Any] | None = None,
        subjects: Mapping[str, str] | None = None,
        connect_timeout: float | None = 30.0,
        broker_outage_s: float = 300.0,
    ) -> None:
        if max_batch < 1 or concurrency < 1 or max_attempts < 1:
            raise ValueError("max_batch, concurrency and max_attempts must be >= 1")
        if not broker_outage_s >= 0:
            raise ValueError(f"broker_outage_s must be >= 0 seconds, got {broker_outage_s!r}")
        self._outage_s = broker_outage_s
        self.topics = list(topics)
        # Which event subject each topic carries; topics are named after subjects by default.
        self._subjects = dict(subjects) if subjects else {t: t for t in self.topics if t in EVENT_TYPES}
        self.settings = kafka_settings(kafka)
        self._connect_timeout = connect_timeout
        self._config = {
            **CONSUMER_DEFAULTS, **self.settings.librdkafka_config(), "group.id": group_id, **(config or {}),
        }
        self._handler = handler
        self._producer = producer
        self._max_batch = max_batch
        self._semaphore = asyncio.Semaphore(concurrency)
        self._max_attempts = max_attempts
        self._backoff = retry_backoff_s
        self._poll_timeout = poll_timeout_s
        # librdkafka consumer calls block; they all run on this one thread.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-consumer")
        self._consumer: Consumer | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self.stats = ConsumerStats()
        self.assigned = asyncio.Event()

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def stop(self) -> None:
        """Ask the loop to finish its current batch, commit and return."""
        self._stopping.set()

    @property
    def running(self) -> bool:
        return self._consumer is not None and not self._stopped.is_set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; commits after each fully processed batch."""
        loop = asyncio.get_running_loop()

        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            loop.call_soon_threadsafe(self.assigned.set)

        if self._connect_timeout is not None:
            try:
                await self._call(check_connection, self.settings, self._connect_timeout)
            except BaseException:
                self._thread.shutdown(wait=False)
                self._stopped.set()
                raise
        consumer = self._consumer = Consumer(self._config)
        await self._call(lambda: consumer.subscribe(self.topics, on_assign=on_assign))
        try:
            while not self._stopping.is_set():
                messages: list[Message] = await self._call(self._fetch)
                if messages:
                    await self._process_batch(messages)
        finally:
            consumer, self._consumer = self._consumer, None
            await self._call(consumer.close)
            self._thread.shutdown(wait=False)
            self._stopped.set()

    def _fetch(self) -> list[Message]:
        """Block until one message arrives, then take what is already buffered (up to max_batch).

        ``consume(n, timeout)`` alone would wait for n messages or the timeout,
        adding up to ``poll_timeout_s`` of latency at low rates.
        """
        consumer = self._consumer
        if consumer is None:
            return []
        first = consumer.consume(1, self._poll_timeout)
        if not first or self._max_batch == 1:
            return first
        return first + consumer.consume(self._max_batch - 1, 0)

    async def _process_batch(self, messages: list[Message]) -> None:
        self.stats.batches += 1
        to_commit: dict[tuple[str, int], int] = {}
        valid: list[Message] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error on %s: %s", msg.topic(), err.str())
                continue
            valid.append(msg)
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None  # set when error() is None
            key = (topic, partition)
            to_commit[key] = max(to_commit.get(key, -1), offset)
        # The batch fails as a unit: if any message can be neither handled nor dead-lettered,
        # its siblings are cancelled, nothing is committed and the batch is redelivered after a restart.
        try:
            async with asyncio.TaskGroup() as group:
                for msg in valid:
                    group.create_task(self._process_one(msg))
        except ExceptionGroup as failed:
            first, *rest = failed.exceptions
            if rest:
                first.add_note(f"{len(rest)} more message(s) of the batch failed: " + "; ".join(map(repr, rest)))
            raise first from None
        if to_commit:
            offsets = [TopicPartition(t, p, o + 1) for (t, p), o in to_commit.items()]
            consumer = self._consumer
            assert consumer is not None  # run() clears it only after its last batch
            await self._call(lambda: commit_offsets(
                consumer, offsets, timeout_s=self._outage_s, backoff_s=self._backoff, should_stop=self._stopping.is_set,
            ))

    async def _process_one(self, msg: Message) -> None:
        topic = msg.topic()
        assert topic is not None  # a consumed message without an error has its topic
        async with self._semaphore:
            try:
                # a tombstone (no value) is "0 bytes, too short" to the decoder, a DecodeError like any bad body
                event = decode(msg.value() or b"", expected_subject=self._subjects.get(topic))
            except EventError as exc:
                await self._dead_letter(msg, exc, attempts=0)
                return
            attempt = 0
            outage_since: float | None = None
            waits = 0
            while True:
                attempt += 1
                start = time.perf_counter()
                try:
                    await self._handler(event, msg)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    now = time.monotonic()
                    if is_broker_outage(exc):
                        # the brokers are away, the message is fine: wait for them instead of using up attempts
                        outage_since = now if outage_since is None else outage_since
                        if now - outage_since < self._outage_s:
                            waits += 1
                            if waits == 1:  # once per outage, not once per attempt
                                log.warning("handler of %s waits for the brokers: %s", topic, exc)
                            attempt -= 1
                            self.stats.retries += 1
                            EVENTS.labels(topic, "retried").inc()
                            await asyncio.sleep(min(self._backoff * 2 ** min(waits, 5), 5.0))
                            continue
                    if is_retriable(exc) and attempt < self._max_attempts:
                        self.stats.retries += 1
                        EVENTS.labels(topic, "retried").inc()
                        await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
                        continue
                    await self._dead_letter(msg, exc, attempts=attempt)
                    return
                finally:
                    HANDLE_SECONDS.labels(topic).observe(time.perf_counter() - start)
                self.stats.handled += 1
                EVENTS.labels(topic, "handled").inc()
                return

    async def _dead_letter(self, msg: Message, exc: BaseException, attempts: int) -> None:
        error_type = getattr(exc, "error_type", type(exc).__name__)
        topic = msg.topic()
        assert topic is not None  # a consumed message without an error has its topic
        received = msg.headers() or []  # a list of pairs on a consumed message (the dict form is for producing)
        headers: list[tuple[str, bytes | str | None]] = (
            list(received.items()) if isinstance(received, dict) else list(received)
        )
        headers += [
            ("dlq.error_type", str(error_type)),
            ("dlq.error_message", str(exc)[:4000]),
            ("dlq.exception", type(exc).__qualname__),
            ("dlq.source_topic", topic),
            ("dlq.source_partition", str(msg.partition())),
            ("dlq.source_offset", str(msg.offset())),
            ("dlq.attempts", str(attempts)),
            ("dlq.failed_at", datetime.now(UTC).isoformat()),
        ]
        outage_since: float | None = None
        while True:
            try:
                await self._producer.send(dlq_topic(topic), msg.value() or b"", key=msg.key(), headers=headers)
                break
            except Exception as send_exc:
                now = time.monotonic()
                if outage_since is None:  # log once per outage, not once per attempt
                    outage_since = now
                    log.warning("dead-letter send to %s waits for the brokers: %s", dlq_topic(topic), send_exc)
                if not is_broker_outage(send_exc) or now - outage_since >= self._outage_s:
                    raise
                await asyncio.sleep(1.0)
        self.stats.record_dead_letter(f"{error_type}: {exc}")
        EVENTS.labels(msg.topic(), "dead_lettered").inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s: %s", msg.topic(), msg.partition(), msg.offset(), error_type, exc,
        )

    async def close(self, drain_timeout_s: float = 30.0) -> None:
        """Stop, waiting up to ``drain_timeout_s`` for the in-flight batch; idempotent."""
        self.stop()
        if self._consumer is None:
            return
        try:
            await asyncio.wait_for(self._stopped.wait(), drain_timeout_s)
        except TimeoutError:
            log.warning("consumer did not drain within %.0f s; in-flight batch will be redelivered", drain_timeout_s)
