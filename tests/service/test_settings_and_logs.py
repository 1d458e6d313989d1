"""Service settings come from the environment; logs are one JSON object per line."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from nightshift.service import JsonFormatter, ServiceSettings


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "broker-a:9092")
    monkeypatch.setenv("NIGHTSHIFT_SERVICE_NAME", "planner")
    monkeypatch.setenv("NIGHTSHIFT_HTTP_PORT", "9100")
    s = ServiceSettings()
    got = (s.kafka_bootstrap, s.service_name, s.http_port, s.http_host)
    assert got == ("broker-a:9092", "planner", 9100, "127.0.0.1")
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_BOOTSTRAP", "broker-b:9092")  # the specific name wins
    assert ServiceSettings().kafka_bootstrap == "broker-b:9092"


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_HTTP_PORT", "99999")
    with pytest.raises(ValidationError, match="http_port"):
        ServiceSettings()
    monkeypatch.setenv("NIGHTSHIFT_HTTP_PORT", "8080")
    monkeypatch.setenv("NIGHTSHIFT_LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError, match="log_level"):
        ServiceSettings()


def test_json_formatter_flattens_extra_fields_and_exceptions() -> None:
    fmt = JsonFormatter("runner")
    record = logging.LogRecord("nightshift.runner", logging.WARNING, __file__, 1, "quantum %s failed", ("q1",), None)
    record.visit = 42  # as passed with extra={"visit": 42}
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    out = json.loads(fmt.format(record))
    assert out["message"] == "quantum q1 failed" and out["level"] == "WARNING" and out["service"] == "runner"
    assert out["visit"] == 42 and "RuntimeError: boom" in out["exception"]
    assert out["ts"].endswith("+00:00") and "T" in out["ts"]  # RFC 3339, UTC
