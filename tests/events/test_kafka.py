"""Producer and consumer against the real Apache Kafka broker of the local stack."""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from nightshift.events import (
    AsyncProducer,
    DatasetStored,
    DeliveryError,
    Event,
    EventConsumer,
    dlq_topic,
    encode,
    ensure_topics,
)

pytestmark = pytest.mark.integration


def stored(i: int) -> DatasetStored:
    return DatasetStored(dataset_id=uuid.uuid4(), dataset_type="calexp", run="run/1", uri=f"s3://repo/calexp/{i}.fits")


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AsyncProducer]:
    async with AsyncProducer(kafka_bootstrap) as p:
        yield p


def drain(bootstrap: str, topic: str, deadline_s: float = 120.0) -> list[Message]:
    """Every message of ``topic`` up to its end offsets now, read from the beginning.

    Partitions are assigned explicitly (no consumer-group rebalance to wait
    for) and read until each reaches the end offset taken at the start, so the
    result is complete, not "whatever arrived within a few seconds". The
    deadline only guards against a hang.
    """
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"drain-{uuid.uuid4()}", "enable.auto.commit": False})
    try:
        partitions = c.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[Message] = []
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + deadline_s
        while left and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error() is not None or m.offset() >= ends[m.partition()]:
                    continue
                out.append(m)
                if m.offset() == ends[m.partition()] - 1:
                    left.discard(m.partition())
        assert not left, f"{topic}: partitions {sorted(left)} not read to their end within {deadline_s} s"
        return out
    finally:
        c.close()


async def test_send_returns_broker_offsets(kafka_bootstrap: str, producer: AsyncProducer, unique_name: str) -> None:
    topic = f"dataset.stored.{unique_name}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    first = await producer.send_event(stored(0), topic=topic)
    futures = [await producer.enqueue(topic, encode(stored(i))) for i in range(1, 50)]
    delivered = await asyncio.gather(*futures)
    assert first.offset == 0 and [d.offset for d in delivered] == list(range(1, 50))
    assert len(drain(kafka_bootstrap, topic)) == 50


def test_ensure_topics_returns_once_the_topics_are_usable(kafka_bootstrap: str, unique_name: str) -> None:
    """Right after ensure_topics, another client's first metadata request lists every topic with its leaders
    (an executor reads end offsets at once; a topic still being created made it fail under load)."""
    topics = [f"usable.{unique_name}.{i}" for i in range(3)]
    ensure_topics(kafka_bootstrap, topics, partitions=3)
    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    try:
        metadata = c.list_topics(timeout=30)
        for t in topics:
            assert t in metadata.topics and metadata.topics[t].error is None, t
            assert sorted(metadata.topics[t].partitions) == [0, 1, 2]
            assert all(p.leader >= 0 for p in metadata.topics[t].partitions.values())
    finally:
        c.close()
    ensure_topics(kafka_bootstrap, topics, partitions=3)  # idempotent


async def test_send_to_missing_topic_fails_clearly(kafka_bootstrap: str, unique_name: str) -> None:
    # auto.create.topics.enable=false on the broker: an unknown topic is an error, not a new topic.
    p = AsyncProducer(kafka_bootstrap, {"delivery.timeout.ms": 3000, "message.timeout.ms": 3000})
    async with p:
        with pytest.raises(DeliveryError, match="broker did not accept message"):
            await p.send(f"no.such.topic.{unique_name}", b"x")


async def run_consumer(
    consumer: EventConsumer, until: asyncio.Future[None] | None = None, timeout: float = 180.0
) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(asyncio.shield(until) if until else asyncio.sleep(0), timeout)
    finally:
        await consumer.close(drain_timeout_s=60)
        await task


async def test_every_message_ends_handled_or_in_the_dlq(
    kafka_bootstrap: str, producer: AsyncProducer, unique_name: str
) -> None:
    topic = "dataset.stored"  # real subject: the consumer checks the schema's subject against the topic
    group = f"g-{unique_name}"
    ensure_topics(kafka_bootstrap, [topic, dlq_topic(topic)])
    marker = unique_name.encode()
    good = [stored(i) for i in range(40)]
    forged = stored(999).model_copy(update={"uri": ""})  # schema-valid, but an empty URI is impossible
    poison: list[bytes] = [
        b"not avro at all",
        struct.pack(">bI", 0, 424242) + b"\x02",  # unknown schema id
        encode(good[0])[:-5],  # truncated
        encode(forged),
    ]
    # Only this test's messages count: tag them with a key so earlier runs' messages are ignored.
    sends = [await producer.enqueue(topic, encode(e), key=marker) for e in good[:20]]
    sends += [await producer.enqueue(topic, p, key=marker) for p in poison]
    sends += [await producer.enqueue(topic, encode(e), key=marker) for e in good[20:]]
    ours = await asyncio.gather(*sends)

    handled: list[str] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failing_once = {good[5].event_id}

    async def handler(event: Event, msg: Message) -> None:
        if msg.key() != marker:
            return
        if event.event_id in failing_once:  # a transient failure: retried, then handled
            failing_once.discard(event.event_id)
            raise ConnectionError("database restarting")
        if event.event_id == good[7].event_id:
            raise ValueError("handler bug: cannot process this event")  # non-retriable: to the DLQ
        handled.append(event.event_id)
        if len(handled) == len(good) - 1 and not done.done():
            done.set_result(None)

    consumer = EventConsumer(kafka_bootstrap, group, [topic], handler, producer, max_batch=16, concurrency=4,
                             retry_backoff_s=0.01)
    await run_consumer(consumer, done)

    assert sorted(handled) == sorted(e.event_id for e in good if e.event_id != good[7].event_id)
    dlq = [m for m in drain(kafka_bootstrap, dlq_topic(topic)) if m.key() == marker]
    assert len(dlq) == len(poison) + 1
    reasons = {dict(m.headers())["dlq.error_type"].decode() for m in dlq}
    assert reasons == {"decode", "unknown_schema", "invalid_event", "ValueError"}
    for m in dlq:
        h = dict(m.headers())
        assert h["dlq.source_topic"] == topic.encode()
        assert int(h["dlq.source_offset"]) >= 0 and h["dlq.error_message"]
    assert {m.value() for m in dlq} >= set(poison)
    assert consumer.stats.retries == 1

    # Offsets were committed past every message of this test: a new consumer of the group starts after them.
    last: dict[int, int] = {}
    for d in ours:
        last[d.partition] = max(d.offset, last.get(d.partition, -1))
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = probe.committed([TopicPartition(topic, p) for p in last], timeout=30)
    finally:
        probe.close()
    offsets = {tp.partition: tp.offset for tp in committed}  # the next offset the group will read
    assert offsets.keys() == last.keys() and all(offsets[p] > o for p, o in last.items()), (offsets, last)
