"""Service settings come from the environment; logs are one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

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
    assert out["time"].endswith("Z") and "T" in out["time"]  # RFC 3339, UTC
    assert datetime.fromisoformat(out["time"]).utcoffset() == timedelta(0)


def test_services_and_pipelines_write_one_json_format(tmp_path: Path) -> None:
    from nightshift.pipe._logging import pipeline_logging

    stream = io.StringIO()
    service_handler = logging.StreamHandler(stream)
    service_handler.setFormatter(JsonFormatter("runner"))
    service_log = logging.getLogger("nightshift.test.service")
    service_log.addHandler(service_handler)
    service_log.propagate = False
    try:
        service_log.warning("from a service", extra={"visit": 7})
    finally:
        service_log.removeHandler(service_handler)
    pipe_file = tmp_path / "pipe.log"
    with pipeline_logging("INFO", fmt="json", file=pipe_file):  # the standard logging of a pipeline phase
        logging.getLogger("nightshift.pipe.test").warning("from a pipeline")
    service_line = json.loads(stream.getvalue())
    pipe_line = json.loads(pipe_file.read_text().splitlines()[-1])
    common = {"time", "level", "logger", "message", "pid"}
    assert common <= service_line.keys() and common <= pipe_line.keys()
    assert service_line["service"] == "runner" and service_line["visit"] == 7
    assert pipe_line["quantum"] == "-"
    for line in (service_line, pipe_line):
        stamp = datetime.fromisoformat(line["time"])  # RFC 3339 in one shape: milliseconds, Z
        assert line["time"].endswith("Z") and len(line["time"]) == len("2026-01-01T00:00:00.000Z")
        assert stamp.utcoffset() == timedelta(0)
