"""The public surface and the error tree of nightshift.apdb."""

from __future__ import annotations

import inspect

import pytest

import nightshift.apdb as apdb_pkg
from nightshift import NightshiftError
from nightshift.apdb import (
    ApdbConnectionError,
    ApdbError,
    ApdbSchemaError,
    ApdbSettings,
    ApdbTransientError,
    ApdbValidationError,
)


def test_all_matches_public_names() -> None:
    public = {n for n in dir(apdb_pkg) if not n.startswith("_") and not inspect.ismodule(getattr(apdb_pkg, n))}
    assert set(apdb_pkg.__all__) == public
    assert sorted(apdb_pkg.__all__) == list(apdb_pkg.__all__)


def test_error_tree() -> None:
    assert issubclass(ApdbError, NightshiftError)
    assert issubclass(ApdbValidationError, ValueError) and not ApdbValidationError.retriable
    assert issubclass(ApdbSchemaError, LookupError) and not ApdbSchemaError.retriable
    assert issubclass(ApdbConnectionError, ConnectionError) and ApdbConnectionError.retriable
    assert issubclass(ApdbConnectionError, ApdbTransientError) and ApdbTransientError.retriable
    codes = [
        c.error_type
        for c in (ApdbError, ApdbValidationError, ApdbSchemaError, ApdbTransientError, ApdbConnectionError)
    ]
    assert len(set(codes)) == len(codes)


def test_settings_from_environment_mask_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_APDB_DSN", "postgresql://u:hunter2@db:5432/x")
    monkeypatch.setenv("NIGHTSHIFT_APDB_SCHEMA_NAME", "apdb_env")
    monkeypatch.setenv("NIGHTSHIFT_APDB_PARTITION_DAYS", "7")
    s = ApdbSettings()
    assert s.schema_name == "apdb_env" and s.partition_days == 7
    assert s.dsn.get_secret_value().endswith("@db:5432/x")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        ApdbSettings(dsn="postgresql://x", schema_name="Robert'); DROP")
    with pytest.raises(pydantic.ValidationError):
        ApdbSettings(dsn="postgresql://x", chunk_depth=12, index_depth=10)
