"""APDB settings from the environment (``NIGHTSHIFT_APDB_*``)."""

from __future__ import annotations

import re

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ApdbSettings"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ApdbSettings(BaseSettings):
    """How to reach and lay out the APDB.

    Every field is read from ``NIGHTSHIFT_APDB_<FIELD>``; the DSN also from
    ``PG_DSN`` (what ``nightshift dev env`` exports). The DSN and password are
    secrets: they are never logged and ``repr`` masks them.

    Attributes
    ----------
    dsn : SecretStr
        PostgreSQL DSN, e.g. ``postgresql://user@host:5432/db``.
    password : SecretStr or None
        Password, when it is not in the DSN.
    schema_name : str
        PostgreSQL schema holding the APDB tables.
    pool_min_size, pool_max_size : int
        Connections in the per-process pool; reads use up to
        ``1 + 2 * read_parallelism`` at once.
    partition_days : int
        Width of the time partitions of DiaSource, DiaForcedSource, DiaObject
        and the history chunks (30 ≈ monthly). Fixed when the schema is created.
    index_depth : int
        HEALPix nested depth of the ``pixelId`` column (16: 3.2 arcsec cells).
    chunk_depth : int
        HEALPix nested depth of the history chunks (7: 0.46 degree cells).
    max_ranges : int
        Most pixel ranges a region query sends to SQL.
    history_margin_arcsec : float
        How far from its DiaObject a DiaSource may lie (the association
        radius with ample slack) when history is looked up by sky cell.
    read_parallelism : int
        Connections per history table in a preload.
    command_timeout : float
        Seconds before any one database call is abandoned.
    """

    model_config = SettingsConfigDict(env_prefix="NIGHTSHIFT_APDB_", frozen=True, populate_by_name=True, extra="ignore")

    dsn: SecretStr = Field(validation_alias=AliasChoices("NIGHTSHIFT_APDB_DSN", "PG_DSN", "dsn"))
    password: SecretStr | None = None
    schema_name: str = "apdb"
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=8, ge=1)
    partition_days: int = Field(default=30, ge=1, le=366)
    index_depth: int = Field(default=16, ge=8, le=24)
    chunk_depth: int = Field(default=7, ge=3, le=12)
    max_ranges: int = Field(default=64, ge=1)
    history_margin_arcsec: float = Field(default=5.0, ge=0.0, le=600.0)
    read_parallelism: int = Field(default=2, ge=1, le=8)
    command_timeout: float = Field(default=120.0, gt=0.0)

    @field_validator("schema_name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError(f"schema_name {value!r} must be a lower-case SQL identifier")
        return value

    @model_validator(mode="after")
    def _depths(self) -> ApdbSettings:
        if self.chunk_depth > self.index_depth:
            raise ValueError("chunk_depth must not exceed index_depth")
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self
