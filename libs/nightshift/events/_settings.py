"""One typed Kafka configuration for every client: producer, consumer, admin, executor, services.

:class:`KafkaSettings` holds where the brokers are, how to authenticate (SASL/SCRAM,
TLS) and a few client-tuning knobs, and produces the librdkafka configuration dict
(:meth:`KafkaSettings.librdkafka_config`) that confluent-kafka's clients take. Like
quix-streams' ``ConnectionConfig``, each librdkafka property is a typed field whose
serialization alias is its dotted librdkafka name, so both spellings are accepted::

    KafkaSettings(bootstrap_servers="broker:9094", security_protocol="SASL_SSL",
                  sasl_username="alice", sasl_password="...")
    KafkaSettings(**{"bootstrap.servers": "broker:9094", "socket.timeout.ms": 30000})

From the environment, every field is ``NIGHTSHIFT_KAFKA_<FIELD>`` (e.g.
``NIGHTSHIFT_KAFKA_SASL_PASSWORD``); the brokers are also read from
``NIGHTSHIFT_KAFKA_BOOTSTRAP`` and ``KAFKA_BOOTSTRAP`` (as printed by
``nightshift dev env``). The password is a :class:`pydantic.SecretStr`: it is
revealed only inside :meth:`~KafkaSettings.librdkafka_config`, never in ``repr``,
``str``, ``model_dump`` or validation errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "KafkaSettings", "LibrdkafkaConfig", "LibrdkafkaValue", "SaslMechanism", "SecurityProtocol", "kafka_settings",
]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LibrdkafkaValue = str | int | float | bool
LibrdkafkaConfig = dict[str, LibrdkafkaValue]

_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
_SASL_KEYS = ("sasl.mechanism", "sasl.username", "sasl.password")


def _rd(key: str, **kwargs: Any) -> Any:
    """A field that is the librdkafka property ``key`` (its serialization alias)."""
    return Field(default=None, serialization_alias=key, **kwargs)


class KafkaSettings(BaseSettings):
    """Brokers, authentication and client tuning of a Kafka client, from arguments or the environment.

    Parameters
    ----------
    bootstrap_servers : str
        ``host:port[,host:port...]`` (``bootstrap.servers``). Environment:
        ``NIGHTSHIFT_KAFKA_BOOTSTRAP_SERVERS``, ``NIGHTSHIFT_KAFKA_BOOTSTRAP`` or ``KAFKA_BOOTSTRAP``.
    security_protocol : {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
        ``security.protocol``. Rubin's alert stream uses SASL over TLS (``SASL_SSL``).
    sasl_mechanism : {"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"}
        ``sasl.mechanism``, used with the two SASL protocols only.
    sasl_username, sasl_password : str, SecretStr
        Required with the SASL protocols, refused without them.
    ssl_ca_location, ssl_certificate_location, ssl_key_location : Path, optional
        PEM files: the CA that signed the brokers' certificates, and the client's
        certificate and key for mutual TLS.
    ssl_key_password : SecretStr, optional
        Password of ``ssl_key_location``.
    client_id, socket_timeout_ms, ... : optional
        librdkafka client-tuning properties; ``None`` leaves librdkafka's default.
    """

    model_config = SettingsConfigDict(
        env_prefix="NIGHTSHIFT_KAFKA_", frozen=True, extra="forbid", populate_by_name=True,
        # validation errors must not echo the input: it may hold the password
        hide_input_in_errors=True,
    )

    bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        min_length=1,
        serialization_alias="bootstrap.servers",
        validation_alias=AliasChoices(
            "bootstrap_servers", "NIGHTSHIFT_KAFKA_BOOTSTRAP_SERVERS", "NIGHTSHIFT_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP",
        ),
    )
    security_protocol: SecurityProtocol = Field(default="PLAINTEXT", serialization_alias="security.protocol")
    sasl_mechanism: SaslMechanism = Field(default="SCRAM-SHA-512", serialization_alias="sasl.mechanism")
    sasl_username: str | None = _rd("sasl.username")
    sasl_password: SecretStr | None = _rd("sasl.password")
    ssl_ca_location: Path | None = _rd("ssl.ca.location")
    ssl_certificate_location: Path | None = _rd("ssl.certificate.location")
    ssl_key_location: Path | None = _rd("ssl.key.location")
    ssl_key_password: SecretStr | None = _rd("ssl.key.password")
    ssl_endpoint_identification_algorithm: Literal["https", "none"] | None = _rd(
        "ssl.endpoint.identification.algorithm"
    )
    # -- client tuning (librdkafka global properties valid for producers, consumers and admin clients)
    client_id: str | None = _rd("client.id")
    socket_timeout_ms: int | None = _rd("socket.timeout.ms", ge=10)
    socket_connection_setup_timeout_ms: int | None = _rd("socket.connection.setup.timeout.ms", ge=1000)
    socket_keepalive_enable: bool | None = _rd("socket.keepalive.enable")
    reconnect_backoff_ms: int | None = _rd("reconnect.backoff.ms", ge=0)
    reconnect_backoff_max_ms: int | None = _rd("reconnect.backoff.max.ms", ge=0)
    retry_backoff_ms: int | None = _rd("retry.backoff.ms", ge=1)
    metadata_max_age_ms: int | None = _rd("metadata.max.age.ms", ge=1)
    topic_metadata_refresh_interval_ms: int | None = _rd("topic.metadata.refresh.interval.ms", ge=-1)
    statistics_interval_ms: int | None = _rd("statistics.interval.ms", ge=0)
    broker_address_family: Literal["any", "v4", "v6"] | None = _rd("broker.address.family")

    @model_validator(mode="before")
    @classmethod
    def _accept_librdkafka_names(cls, data: Any) -> Any:
        """Map dotted librdkafka names (``socket.timeout.ms``) onto the fields."""
        if not isinstance(data, Mapping):
            return data
        by_key = _fields_by_librdkafka_key()
        return {by_key.get(k, k) if isinstance(k, str) else k: v for k, v in data.items()}

    @model_validator(mode="after")
    def _check_authentication(self) -> Self:
        # mode="after": a failure here shows the model's repr, where secrets are masked.
        sasl = self.security_protocol in _SASL_PROTOCOLS
        if sasl and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(
                f"security_protocol={self.security_protocol} needs sasl_username and sasl_password; "
                "set NIGHTSHIFT_KAFKA_SASL_USERNAME and NIGHTSHIFT_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.sasl_username or self.sasl_password is not None):
            raise ValueError(
                f"SASL credentials are set but security_protocol={self.security_protocol} would not send them; "
                "set NIGHTSHIFT_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT on a trusted network)"
            )
        return self

    def __repr_args__(self) -> Any:
        # Only what is set; SecretStr fields show as '**********'.
        return [(k, v) for k, v in super().__repr_args__() if v is not None]

    @property
    def uses_sasl(self) -> bool:
        """Whether the client authenticates with SASL."""
        return self.security_protocol in _SASL_PROTOCOLS

    def librdkafka_config(self) -> LibrdkafkaConfig:
        """The librdkafka configuration of these settings, with secrets revealed.

        Pass it (merged with producer- or consumer-specific properties) to
        ``confluent_kafka.Producer``, ``Consumer`` or ``AdminClient``. Unset
        optional properties are left out, so librdkafka's defaults apply.
        """
        out: LibrdkafkaConfig = {}
        for name, field in type(self).model_fields.items():
            key = field.serialization_alias
            value = getattr(self, name)
            if key is None or value is None or (key in _SASL_KEYS and not self.uses_sasl):
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, Path):
                value = str(value)
            out[key] = value
        return out

    def environment(self) -> dict[str, str]:
        """``NIGHTSHIFT_KAFKA_*`` variables that recreate these settings in a child process.

        Secrets are revealed (a child process needs them): pass the result to
        ``subprocess`` as its environment, never log it.
        """
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            out[f"NIGHTSHIFT_KAFKA_{name.upper()}"] = str(value)
        return out

    def describe(self) -> str:
        """``bootstrap (protocol[, mechanism as user])`` for error messages; never the password."""
        who = f", {self.sasl_mechanism} as {self.sasl_username!r}" if self.uses_sasl else ""
        return f"{self.bootstrap_servers} ({self.security_protocol}{who})"


def _fields_by_librdkafka_key() -> dict[str, str]:
    return {
        f.serialization_alias: name
        for name, f in KafkaSettings.model_fields.items()
        if f.serialization_alias is not None
    }


def kafka_settings(kafka: str | KafkaSettings) -> KafkaSettings:
    """``kafka`` itself, or settings for the bootstrap string ``kafka``.

    A plain ``host:port`` string keeps the call sites of earlier releases
    working: the other settings (authentication, tuning) then come from the
    ``NIGHTSHIFT_KAFKA_*`` environment.
    """
    if isinstance(kafka, KafkaSettings):
        return kafka
    if isinstance(kafka, str):
        return KafkaSettings(bootstrap_servers=kafka)
    raise TypeError(f"expected a KafkaSettings or a 'host:port' string, got {type(kafka).__name__}")
