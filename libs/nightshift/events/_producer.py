"""An asyncio producer over confluent-kafka: idempotent, acks=all, per-message delivery futures."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from ._connect import check_connection
from ._errors import DeliveryError, EnqueueTimeoutError
from ._models import Event
from ._serde import encode
from ._settings import KafkaSettings, kafka_settings

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes | str | None]]

#: librdkafka settings for at-least-once delivery without duplicates from retries.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,  # implies acks=all, max.in.flight <= 5, retries > 0
    "acks": "all",
    "linger.ms": 5,  # small batches for throughput at sub-10 ms latency cost
    "compression.type": "lz4",
    "delivery.timeout.ms": 30000,
}


@dataclass(frozen=True)
class Delivered:
    """Where the broker put a message."""

    topic: str
    partition: int
    offset: int


class AsyncProducer:
    """Produce to Kafka from asyncio without blocking the event loop.

    ``send`` awaits the broker's acknowledgement of one message; ``enqueue``
    returns that acknowledgement as a future so callers can batch many sends
    and await them together. A full local queue applies backpressure: the
    coroutine waits for room, up to ``enqueue_timeout`` seconds, then raises
    :class:`EnqueueTimeoutError`.

    Parameters
    ----------
    kafka : KafkaSettings or str
        Brokers and authentication; a ``host:port`` string takes the rest from
        the ``NIGHTSHIFT_KAFKA_*`` environment.
    config : mapping, optional
        Extra librdkafka settings; they override :data:`PRODUCER_DEFAULTS`.
    connect_timeout : float or None
        :meth:`start` checks that the brokers answer and accept the credentials
        (:func:`check_connection`): a refused login fails at once, unreachable
        brokers after this many seconds. ``None`` skips the check.
    enqueue_timeout : float
        Longest wait of :meth:`enqueue` for room in a full local queue (as
        aiokafka's ``request_timeout_ms`` bounds ``send`` on a full buffer).
    """

    def __init__(
        self, kafka: str | KafkaSettings, config: Mapping[str, Any] | None = None, *,
        connect_timeout: float | None = 30.0, enqueue_timeout: float = 30.0,
    ) -> None:
        if not enqueue_timeout > 0:
            raise ValueError(f"enqueue_timeout must be > 0 seconds, got {enqueue_timeout!r}")
        self._enqueue_timeout = enqueue_timeout
        self.settings = kafka_settings(kafka)
        self._connect_timeout = connect_timeout
        self._config = {**PRODUCER_DEFAULTS, **self.settings.librdkafka_config(), **(config or {})}
        if self._config.get("enable.idempotence") and str(self._config.get("acks")) not in ("all", "-1"):
            raise ValueError("enable.idempotence requires acks=all; remove the acks override")
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    async def start(self) -> AsyncProducer:
        """Check the connection (see ``connect_timeout``) and start the delivery-report thread."""
        if self._producer is not None:
            return self
        if self._connect_timeout is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, check_connection, self.settings, self._connect_timeout)
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(self._config)
        self._stop.clear()
        # Delivery callbacks run in this thread and are marshalled back to the loop.
        self._poller = threading.Thread(
            target=self._poll_forever, args=(self._producer,), name="kafka-producer-poll", daemon=True
        )
        self._poller.start()
        return self

    async def __aenter__(self) -> AsyncProducer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _poll_forever(self, producer: Producer) -> None:
        while not self._stop.is_set():
            producer.poll(0.05)

    @staticmethod
    def _on_delivery(future: asyncio.Future[Delivered], err: KafkaError | None, msg: Message) -> None:
        def resolve() -> None:
            if future.done():
                return
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if err is not None:
                future.set_exception(
                    DeliveryError(
                        f"broker did not accept message for {topic!r}: {err.str()} ({err.name()})", err.code()
                    )
                )
            elif topic is None or partition is None or offset is None:  # librdkafka sets all three on delivery
                future.set_exception(DeliveryError(f"delivery report without topic, partition or offset: {msg!r}"))
            else:
                future.set_result(Delivered(topic, partition, offset))

        future.get_loop().call_soon_threadsafe(resolve)

    async def enqueue(
        self, topic: str, value: bytes, key: bytes | str | None = None, headers: Headers | None = None
    ) -> asyncio.Future[Delivered]:
        """Hand one message to librdkafka; the returned future resolves on acknowledgement.

        Raises
        ------
        EnqueueTimeoutError
            The local queue stayed full for ``enqueue_timeout`` seconds.
        """
        if self._producer is None or self._loop is None:
            raise RuntimeError("AsyncProducer is not started; use `async with AsyncProducer(...)` or await start()")
        future: asyncio.Future[Delivered] = self._loop.create_future()
        deadline = time.monotonic() + self._enqueue_timeout
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers) if headers else None,
                    on_delivery=lambda err, msg: self._on_delivery(future, err, msg),
                )
                return future
            except BufferError:
                if time.monotonic() >= deadline:
                    raise EnqueueTimeoutError(
                        f"the producer's local queue stayed full for {self._enqueue_timeout:g} s while producing to "
                        f"{topic!r}: the brokers are not acknowledging messages (unreachable, or slower than the "
                        "producer); raise queue.buffering.max.messages/kbytes or enqueue_timeout, or slow down"
                    ) from None
                await asyncio.sleep(0.005)  # local queue full: wait for deliveries (backpressure)

    async def send(
        self, topic: str, value: bytes, key: bytes | str | None = None, headers: Headers | None = None
    ) -> Delivered:
        """Produce one message and wait for the broker's acknowledgement."""
        return await (await self.enqueue(topic, value, key, headers))

    async def send_event(self, event: Event, topic: str | None = None, key: bytes | str | None = None) -> Delivered:
        """Encode ``event`` in the wire format and produce it to its subject's topic."""
        return await self.send(topic or event.SUBJECT, encode(event), key=key)

    async def flush(self, timeout: float = 30.0) -> int:
        """Wait until every queued message is acknowledged; returns how many remain."""
        if self._producer is None:
            return 0
        producer = self._producer
        return await asyncio.get_running_loop().run_in_executor(None, producer.flush, timeout)

    async def close(self, timeout: float = 30.0) -> None:
        """Flush, then stop polling; idempotent. Messages still queued after ``timeout`` are reported."""
        if self._producer is None:
            return
        try:
            remaining = await self.flush(timeout)
            if remaining:
                log.warning("producer closed with %d undelivered messages", remaining)
        finally:
            self._stop.set()
            if self._poller is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._poller.join, 5.0)
            self._producer = None
            self._poller = None
