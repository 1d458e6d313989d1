"""EFD settings from the environment (``NIGHTSHIFT_EFD_*``)."""

from __future__ import annotations

import re

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["EfdSettings"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class EfdSettings(BaseSettings):
    """How to reach the EFD's PostgreSQL schema.

    Every field is read from ``NIGHTSHIFT_EFD_<FIELD>``; the DSN also from
    ``PG_DSN`` (what ``nightshift dev env`` exports). The DSN is a secret:
    ``repr`` masks it and it is never logged.

    Attributes
    ----------
    dsn : SecretStr
        PostgreSQL DSN, e.g. ``postgresql://user:password@host:5432/db``.
    schema_name : str
        Schema holding the ``base_<topic>`` and ``transformed_<topic>`` tables.
    """

    model_config = SettingsConfigDict(env_prefix="NIGHTSHIFT_EFD_", extra="ignore")

    dsn: SecretStr = Field(validation_alias=AliasChoices("NIGHTSHIFT_EFD_DSN", "PG_DSN", "dsn"))
    schema_name: str = "efd"

    @field_validator("schema_name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError(f"schema_name must be a lower-case SQL identifier, got {value!r}")
        return value

    def url(self) -> str:
        """The SQLAlchemy URL (psycopg 3 driver); contains the secret, never log it."""
        text = self.dsn.get_secret_value()
        for prefix in ("postgresql://", "postgres://"):
            if text.startswith(prefix):
                return "postgresql+psycopg://" + text[len(prefix):]
        return text
