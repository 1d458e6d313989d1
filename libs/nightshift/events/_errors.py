"""Errors of the event library::

    NightshiftError
    └── EventError
        ├── SchemaError (ValueError)            a schema file is invalid or breaks compatibility
        ├── DecodeError (ValueError)            bytes are not an event of a known schema   [to DLQ]
        │   └── UnknownSchemaError (LookupError)  the wire format names an unknown schema id [to DLQ]
        ├── EventValidationError (ValueError)   decoded, but the content is impossible       [to DLQ]
        ├── DeliveryError                       the broker did not accept a message          [retriable]
        ├── EnqueueTimeoutError (TimeoutError)  the producer's local queue stayed full        [retriable]
        ├── KafkaConnectionError                the brokers cannot be reached               [retriable]
        │   └── KafkaAuthenticationError        the brokers refused the client's credentials
        └── SchemaRegistryError                 (events/_registry.py) a fixed id cannot be registered
            └── SchemaRegistryUnavailableError  no registry answers at the URL              [retriable]
"""

from __future__ import annotations

from .._exceptions import NightshiftError


class EventError(NightshiftError):
    """Base of the event library's errors."""

    error_type = "event"


class SchemaError(EventError, ValueError):
    """A schema is invalid, missing, or not compatible with its previous version."""

    error_type = "schema"


class DecodeError(EventError, ValueError):
    """The bytes of a message cannot be decoded as an event."""

    error_type = "decode"


class UnknownSchemaError(DecodeError, LookupError):
    """The message names a schema id that is not in the manifest or registry."""

    error_type = "unknown_schema"


class EventValidationError(EventError, ValueError):
    """The event decoded, but its content is impossible (e.g. a declination of 100°)."""

    error_type = "invalid_event"


class DeliveryError(EventError):
    """The broker did not acknowledge a message.

    ``kafka_error`` is librdkafka's error code (``KafkaError.code()``) when the broker's delivery
    report gave one, so callers can tell a broker outage (``_MSG_TIMED_OUT``, ``_TRANSPORT``) from
    a rejected message (``MSG_SIZE_TOO_LARGE``, ``TOPIC_AUTHORIZATION_FAILED``).
    """

    error_type = "delivery"
    retriable = True

    def __init__(self, message: str, kafka_error: int | None = None) -> None:
        super().__init__(message)
        self.kafka_error = kafka_error


class EnqueueTimeoutError(EventError, TimeoutError):
    """The producer's local queue stayed full for longer than the enqueue deadline.

    The brokers are not acknowledging messages as fast as they are produced (or
    cannot be reached); like aiokafka's ``KafkaTimeoutError`` on a full buffer.
    """

    error_type = "enqueue_timeout"
    retriable = True


class KafkaConnectionError(EventError, ConnectionError):
    """No broker of the bootstrap list answered (wrong address, broker down, TLS mismatch)."""

    error_type = "kafka_connection"
    retriable = True


class KafkaAuthenticationError(KafkaConnectionError):
    """The brokers refused the client's SASL credentials or TLS certificate.

    Retrying cannot help; the message names the user and mechanism, never the password.
    """

    error_type = "kafka_authentication"
    retriable = False
