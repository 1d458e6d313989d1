"""Alert Production events: Avro schemas, pydantic models, the Confluent wire format,
and an asyncio producer/consumer over confluent-kafka with dead-letter topics.

Example
-------
>>> from nightshift.events import NextVisit, encode, decode  # doctest: +SKIP
>>> async with AsyncProducer(KafkaSettings()) as producer:  # doctest: +SKIP
...     await producer.send_event(NextVisit(...))
"""

from ._compat import backward_problems
from ._connect import check_connection
from ._consumer import ConsumerStats, EventConsumer, Handler, is_broker_outage, is_retriable
from ._errors import (
    DecodeError,
    DeliveryError,
    EnqueueTimeoutError,
    EventError,
    EventValidationError,
    KafkaAuthenticationError,
    KafkaConnectionError,
    SchemaError,
    UnknownSchemaError,
)
from ._models import (
    EVENT_TYPES,
    DatasetStored,
    DatasetWrite,
    DiaResults,
    Event,
    NextVisit,
    QuantumCompleted,
    QuantumFailed,
    QuantumPlanned,
    RawArrived,
    RawIngested,
)
from ._producer import PRODUCER_DEFAULTS, AsyncProducer, Delivered
from ._registry import (
    ALERT_SUBJECT,
    RegistrationResult,
    RegistrySchema,
    SchemaRegistryError,
    SchemaRegistryUnavailableError,
    alert_registry_schemas,
    alert_schema_document,
    alert_schema_versions,
    ccompat_url,
    check_registry,
    event_registry_schemas,
    register_schemas,
)
from ._resilience import (
    REBALANCE_KAFKA_ERRORS,
    TRANSIENT_KAFKA_ERRORS,
    CommitError,
    commit_offsets,
    is_transient,
    retry_kafka,
    skip_consumer_error,
)
from ._schemas import SchemaCatalog, SchemaVersion, default_catalog, schemas_dir
from ._serde import decode, encode, schema_id_of
from ._settings import KafkaSettings, SaslMechanism, SecurityProtocol, kafka_settings
from ._topics import TOPICS, all_topics, dlq_topic, ensure_topics

__all__ = [
    "ALERT_SUBJECT",
    "EVENT_TYPES",
    "PRODUCER_DEFAULTS",
    "REBALANCE_KAFKA_ERRORS",
    "TOPICS",
    "TRANSIENT_KAFKA_ERRORS",
    "AsyncProducer",
    "CommitError",
    "ConsumerStats",
    "DatasetStored",
    "DatasetWrite",
    "DecodeError",
    "Delivered",
    "DeliveryError",
    "EnqueueTimeoutError",
    "DiaResults",
    "Event",
    "EventConsumer",
    "EventError",
    "EventValidationError",
    "Handler",
    "KafkaAuthenticationError",
    "KafkaConnectionError",
    "KafkaSettings",
    "NextVisit",
    "QuantumCompleted",
    "QuantumFailed",
    "QuantumPlanned",
    "RawArrived",
    "RawIngested",
    "RegistrationResult",
    "RegistrySchema",
    "SchemaCatalog",
    "SchemaError",
    "SchemaRegistryError",
    "SchemaRegistryUnavailableError",
    "SchemaVersion",
    "SaslMechanism",
    "SecurityProtocol",
    "UnknownSchemaError",
    "alert_registry_schemas",
    "alert_schema_document",
    "alert_schema_versions",
    "all_topics",
    "backward_problems",
    "ccompat_url",
    "commit_offsets",
    "check_connection",
    "check_registry",
    "decode",
    "default_catalog",
    "dlq_topic",
    "encode",
    "event_registry_schemas",
    "ensure_topics",
    "is_broker_outage",
    "is_retriable",
    "is_transient",
    "kafka_settings",
    "register_schemas",
    "retry_kafka",
    "schema_id_of",
    "schemas_dir",
    "skip_consumer_error",
]
