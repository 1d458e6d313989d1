"""Topic names, their dead-letter topics, and explicit topic creation."""

from __future__ import annotations

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
    """Create ``topics`` if they do not exist yet (idempotent).

    ``kafka`` is a :class:`KafkaSettings` or a bootstrap string. Refused
    credentials raise :class:`KafkaAuthenticationError` at once.
    """
    settings = kafka_settings(kafka)
    check_connection(settings, timeout)
    admin = AdminClient(settings.librdkafka_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(t, num_partitions=partitions, replication_factor=replication) for t in topics if t not in existing
    ]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise EventError(f"could not create topic {topic!r}: {exc}") from exc
