from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings every service shares, read from the environment (``NIGHTSHIFT_*``).

    ``KAFKA_BOOTSTRAP`` (as printed by ``nightshift dev env``) is accepted too.
    The HTTP endpoint listens on loopback unless told otherwise.
    """

    model_config = SettingsConfigDict(env_prefix="NIGHTSHIFT_", frozen=True, extra="ignore")

    service_name: str = "nightshift"
    kafka_bootstrap: str = Field(
        default="127.0.0.1:19092", validation_alias=AliasChoices("NIGHTSHIFT_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP")
    )
    consumer_group: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    drain_timeout_s: float = Field(default=30.0, gt=0)
    max_batch: int = Field(default=100, ge=1)
    concurrency: int = Field(default=16, ge=1)
