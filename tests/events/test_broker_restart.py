"""A service built on EventConsumer rides out a real broker restart (issue 15/16).

The test starts its OWN Kafka (the ``own_kafka`` fixture of tests/conftest.py: devstack, free
ports, a temporary state dir; never the shared broker), runs an in-process
:class:`nightshift.service.Service` whose EventConsumer records an idempotent effect per event and
answers each event on another topic, restarts the broker while a batch is in flight (handled, not
committed), and checks that the service is still running and that every event had its effect and
its answer. Deadlines only guard against hangs.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from nightshift.events import (
    AsyncProducer,
    CommitError,
    DatasetStored,
    DeliveryError,
    Event,
    EventConsumer,
    EventError,
    KafkaSettings,
    commit_offsets,
    dlq_topic,
    encode,
    ensure_topics,
    is_broker_outage,
)
from nightshift.service import Service, ServiceSettings
from nightshift_dev.devstack import StackSettings
from nightshift_dev.devstack import _kafka as devkafka

pytestmark = pytest.mark.integration

GUARD_S = 240.0  # deadlock guard only: a restart takes 10-20 s on an idle machine, far more under load


def stored(i: int) -> DatasetStored:
    return DatasetStored(dataset_id=uuid.uuid4(), dataset_type="calexp", run="run/1", uri=f"s3://repo/calexp/{i}.fits")


async def until(condition: object, what: str) -> None:
    """Wait for ``condition()`` (checked every 50 ms); fail after :data:`GUARD_S` (a hang, not a timing claim)."""
    assert callable(condition)
    deadline = time.monotonic() + GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"deadlock guard: {what} did not happen within {GUARD_S:.0f} s")
        await asyncio.sleep(0.05)


def read_all(bootstrap: str, topic: str) -> list[Message]:
    """Every message of ``topic`` up to its end offsets now (explicit assignment, no group)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4()}", "enable.auto.commit": False})
    try:
        partitions = c.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[Message] = []
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + GUARD_S
        while left and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                offset, part = m.offset(), m.partition()
                if m.error() is not None or offset is None or part is None or offset >= ends[part]:
                    continue
                out.append(m)
                if offset == ends[part] - 1:
                    left.discard(part)
        assert not left, f"{topic}: partitions {sorted(left)} not read to their end"
        return out
    finally:
        c.close()


async def test_a_service_keeps_consuming_across_a_broker_restart(own_kafka: StackSettings) -> None:
    bootstrap = devkafka.bootstrap(own_kafka)
    topic, answers = "dataset.stored", "answers"
    await asyncio.to_thread(ensure_topics, bootstrap, [topic, dlq_topic(topic), answers])
    before, during, after = ([stored(i) for i in range(k, k + 15)] for k in (0, 100, 200))
    gated = {e.event_id for e in during}
    deliveries: dict[str, int] = {}
    effects: set[str] = set()  # the idempotent effect: keyed by event id
    gate = asyncio.Event()
    in_flight = asyncio.Event()

    async def handler(event: Event, msg: Message) -> None:
        deliveries[event.event_id] = deliveries.get(event.event_id, 0) + 1
        await service.producer.send(answers, event.event_id.encode(), key=event.event_id)
        effects.add(event.event_id)
        if event.event_id in gated and not gate.is_set():
            in_flight.set()
            await gate.wait()  # the batch is handled but not committed when the broker goes down

    settings = ServiceSettings(
        service_name="restart-test", http_port=0, drain_timeout_s=30, max_batch=10, concurrency=4,
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
    )
    consumers: list[EventConsumer] = []

    def make(producer: AsyncProducer) -> list[EventConsumer]:
        consumers.append(EventConsumer(
            settings.kafka, "restart-test", [topic], handler, producer, max_batch=settings.max_batch,
            concurrency=settings.concurrency, config={"session.timeout.ms": 6000}, broker_outage_s=GUARD_S,
        ))
        return consumers

    service = Service(settings, make)
    started = asyncio.Event()

    async def ready() -> None:
        started.set()

    run = asyncio.create_task(service.run(ready))
    try:
        await until(lambda: started.is_set() or run.done(), "service start")
        assert not run.done(), run.exception()
        async with AsyncProducer(bootstrap) as producer:
            await asyncio.gather(*[producer.send(topic, encode(e), key=e.event_id) for e in before + during])
        await until(lambda: in_flight.is_set() or run.done(), "a batch of the second wave in flight")

        await asyncio.to_thread(devkafka.stop, own_kafka)  # SIGTERM: the broker goes away mid-batch
        gate.set()  # the batch ends; its commit and the answers meet the missing broker
        await asyncio.to_thread(devkafka.start, own_kafka)

        async with AsyncProducer(bootstrap) as producer:
            await asyncio.gather(*[producer.send(topic, encode(e), key=e.event_id) for e in after])
        everything = {e.event_id for e in before + during + after}
        await until(lambda: everything <= effects or run.done(), "every event handled")
        assert not run.done(), f"the service stopped across the broker restart: {run.exception()!r}"
        assert consumers[0].running
        answered = {(m.value() or b"").decode() for m in await asyncio.to_thread(read_all, bootstrap, answers)}
    finally:
        service.stop()
        await asyncio.wait_for(run, GUARD_S)  # a failure of the service shows here too

    assert effects == everything  # at least once, and exactly once in effect
    assert set(deliveries) == everything
    assert answered == everything  # every answer reached the broker, despite the restart
    assert consumers[0].stats.dead_lettered == 0  # a broker outage is not a reason to dead-letter


def test_a_commit_that_never_reaches_a_broker_fails_clearly_at_its_deadline() -> None:
    """Transient errors are retried only until the deadline; then CommitError says what happened.

    No server on purpose: the brokers are away for good (a closed loopback port). One attempt
    blocks for up to ``session.timeout.ms`` while librdkafka looks for the group coordinator.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "nobody-home",
                         "session.timeout.ms": 6000, "log_level": 0})
    try:
        with pytest.raises(CommitError, match="stayed unreachable") as info:
            commit_offsets(consumer, [TopicPartition("dataset.stored", 0, 5)], timeout_s=0.0)
    finally:
        consumer.close()
    assert isinstance(info.value, EventError) and not info.value.retriable


def test_only_errors_of_missing_brokers_count_as_an_outage() -> None:
    """An outage is waited for; a rejected message or a handler's own error is not (it uses up attempts)."""
    assert is_broker_outage(DeliveryError("broker away", KafkaError._MSG_TIMED_OUT))
    assert is_broker_outage(DeliveryError("broker away", KafkaError._TRANSPORT))
    assert not is_broker_outage(DeliveryError("too big", KafkaError.MSG_SIZE_TOO_LARGE))
    assert not is_broker_outage(DeliveryError("no code from librdkafka"))
    assert not is_broker_outage(ValueError("handler bug"))
