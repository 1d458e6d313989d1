"""Alert Production events: Avro schemas, pydantic models, the Confluent wire format,
and an asyncio producer/consumer over confluent-kafka with dead-letter topics.

Example
-------
>>> from nightshift.events import NextVisit, encode, decode  # doctest: +SKIP
>>> async with AsyncProducer("127.0.0.1:19092") as producer:  # doctest: +SKIP
...     await producer.send_event(NextVisit(...))
"""

from ._compat import backward_problems
from ._consumer import ConsumerStats, EventConsumer, Handler, is_retriable
from ._errors import DecodeError, DeliveryError, EventError, EventValidationError, SchemaError, UnknownSchemaError
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
from ._producer import AsyncProducer, Delivered
from ._schemas import SchemaCatalog, SchemaVersion, default_catalog, schemas_dir
from ._serde import decode, encode, schema_id_of
from ._topics import TOPICS, all_topics, dlq_topic, ensure_topics

__all__ = [
    "EVENT_TYPES",
    "TOPICS",
    "AsyncProducer",
    "ConsumerStats",
    "DatasetStored",
    "DatasetWrite",
    "DecodeError",
    "Delivered",
    "DeliveryError",
    "DiaResults",
    "Event",
    "EventConsumer",
    "EventError",
    "EventValidationError",
    "Handler",
    "NextVisit",
    "QuantumCompleted",
    "QuantumFailed",
    "QuantumPlanned",
    "RawArrived",
    "RawIngested",
    "SchemaCatalog",
    "SchemaError",
    "SchemaVersion",
    "UnknownSchemaError",
    "all_topics",
    "backward_problems",
    "decode",
    "default_catalog",
    "dlq_topic",
    "encode",
    "ensure_topics",
    "is_retriable",
    "schema_id_of",
    "schemas_dir",
]
