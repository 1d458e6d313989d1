"""Topic names, their dead-letter topics, and explicit topic creation."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported from cimpl implicitly

from ._connect import check_connection
from ._errors import EventError
from ._models import EVENT_TYPES
from ._settings import KafkaSettings, kafka_settings

#: Every Alert Production topic; one per event subject.
TOPICS: tuple[str, ...] = tuple(EVENT_TYPES)
DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic`` (``raw.arrived`` → ``raw.arrived.dlq``)."""
    return topic + DLQ_SUFFIX


def all_topics() -> list[str]:
    """Every topic with its dead-letter topic."""
    return [t for topic in TOPICS for t in (topic, dlq_topic(topic))]


def ensure_topics(
    kafka: str | KafkaSettings, topics: Iterable[str], partitions: int = 4, replication: int = 1,
    timeout: float = 30.0,
) -> None:
    """Create ``topics`` if they do not exist yet (idempotent); return once every one is usable.

    The broker acknowledges a creation before its metadata lists the new
    topic with a leader for every partition; a client that reads the
    metadata at once (offsets, assignment) can find no topic. So this waits,
    up to ``timeout`` seconds, until each topic is listed with leaders.

    ``kafka`` is a :class:`KafkaSettings` or a bootstrap string. Refused
    credentials raise :class:`KafkaAuthenticationError` at once.

    Raises
    ------
    EventError
        A topic could not be created, or was not usable within ``timeout``.
    """
    names = list(dict.fromkeys(topics))
    settings = kafka_settings(kafka)
    check_connection(settings, timeout)
    admin = AdminClient(settings.librdkafka_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(t, num_partitions=partitions, replication_factor=replication)
              for t in names if t not in existing]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise EventError(f"could not create topic {topic!r}: {exc}") from exc
    _wait_until_usable(admin, [t.topic for t in wanted], timeout)


def _wait_until_usable(admin: AdminClient, topics: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=timeout)
        waiting = [t for t in topics if t not in metadata.topics or metadata.topics[t].error is not None
                   or not metadata.topics[t].partitions
                   or any(p.leader < 0 for p in metadata.topics[t].partitions.values())]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise EventError(f"topics {waiting} were created but have no leader after {timeout:g} s; is the broker "
                             "healthy?")
        time.sleep(0.05)
