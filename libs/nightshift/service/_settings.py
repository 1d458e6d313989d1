from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..events import KafkaSettings


class ServiceSettings(BaseSettings):
    """Settings every service shares, read from the environment (``NIGHTSHIFT_*``).

    Kafka settings (brokers, SASL/SCRAM, TLS) are one :class:`~nightshift.events.KafkaSettings`
    read from ``NIGHTSHIFT_KAFKA_*``; ``KAFKA_BOOTSTRAP`` (as printed by
    ``nightshift dev env``) is accepted for the brokers too.
    The HTTP endpoint listens on loopback unless told otherwise.
    """

    model_config = SettingsConfigDict(env_prefix="NIGHTSHIFT_", frozen=True, extra="ignore")

    service_name: str = "nightshift"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    consumer_group: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    drain_timeout_s: float = Field(default=30.0, gt=0)
    max_batch: int = Field(default=100, ge=1)
    concurrency: int = Field(default=16, ge=1)

    @property
    def kafka_bootstrap(self) -> str:
        """The brokers of :attr:`kafka` (``host:port[,...]``)."""
        return self.kafka.bootstrap_servers
