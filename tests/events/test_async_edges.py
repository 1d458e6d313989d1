"""The async edges of the event path: a batch fails as a unit, bounded state, a deadline on a full queue."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient

from nightshift.events import (
    AsyncProducer,
    ConsumerStats,
    DeliveryError,
    EnqueueTimeoutError,
    Event,
    EventConsumer,
    KafkaSettings,
    encode,
    ensure_topics,
)
from nightshift.events._consumer import DLQ_REASONS_KEPT
from nightshift.service import Service, ServiceSettings

from .test_kafka import stored


def test_dead_letter_reasons_keep_only_the_most_recent() -> None:
    stats = ConsumerStats()
    for i in range(DLQ_REASONS_KEPT * 5):
        stats.record_dead_letter(f"decode: message {i}")
    assert stats.dead_lettered == DLQ_REASONS_KEPT * 5  # every one is counted
    assert len(stats.dlq_reasons) == DLQ_REASONS_KEPT
    assert stats.dlq_reasons[-1] == f"decode: message {DLQ_REASONS_KEPT * 5 - 1}"
    assert stats.dlq_reasons[0] == f"decode: message {DLQ_REASONS_KEPT * 4}"


@pytest.mark.integration
async def test_a_failed_dead_letter_write_cancels_the_rest_of_the_batch(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"dataset.stored.{unique_name}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)  # no <topic>.dlq: the dead-letter write fails
    async with AsyncProducer(kafka_bootstrap) as producer:
        # produced together: one record batch on the broker, so one batch of the consumer
        sent = [await producer.enqueue(topic, encode(stored(0)), key=b"slow"),
                await producer.enqueue(topic, b"not avro", key=b"poison")]
        await asyncio.gather(*sent)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(event: Event, msg: Message) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a handler still busy when its sibling fails
        except asyncio.CancelledError:
            cancelled.set()
            raise

    dlq_producer = AsyncProducer(kafka_bootstrap, {"delivery.timeout.ms": 3000, "message.timeout.ms": 3000})
    async with dlq_producer:
        consumer = EventConsumer(kafka_bootstrap, f"g-{unique_name}", [topic], handler, dlq_producer,
                                 max_batch=16, subjects={topic: "dataset.stored"})
        with pytest.raises(DeliveryError, match="broker did not accept"):
            await asyncio.wait_for(consumer.run(), 120)  # a deadlock guard
    assert started.is_set()
    # the batch failed as a unit: by the time run() raised, the busy sibling had been cancelled
    assert cancelled.is_set()
    assert consumer.stats.dead_lettered == 0 and consumer.stats.handled == 0


@pytest.mark.integration
async def test_enqueue_on_a_queue_that_stays_full_raises_a_timeout(kafka_bootstrap: str, unique_name: str) -> None:
    # One message fills the queue; it waits for a topic that does not exist, so the queue stays full.
    config = {"queue.buffering.max.messages": 1, "message.timeout.ms": 120000, "delivery.timeout.ms": 120000}
    producer = AsyncProducer(kafka_bootstrap, config, enqueue_timeout=0.5)
    await producer.start()
    try:
        await producer.enqueue(f"no.such.topic.{unique_name}", b"first")
        with pytest.raises(EnqueueTimeoutError, match="stayed full for 0.5 s") as info:
            await producer.enqueue(f"no.such.topic.{unique_name}", b"second")
        assert info.value.retriable and isinstance(info.value, TimeoutError)
    finally:
        await producer.close(timeout=1)


def test_enqueue_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="enqueue_timeout"):
        AsyncProducer("127.0.0.1:1", enqueue_timeout=0)


@pytest.mark.integration
async def test_readiness_reuses_one_admin_client(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[AdminClient] = []

    class CountingAdmin(AdminClient):
        def __init__(self, conf: dict[str, Any]) -> None:
            super().__init__(conf)
            made.append(self)

    monkeypatch.setattr("nightshift.service._service.AdminClient", CountingAdmin)
    service = Service(ServiceSettings(kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap)), lambda p: [])
    assert [await service.broker_reachable() for _ in range(3)] == [True, True, True]
    assert len(made) == 1
