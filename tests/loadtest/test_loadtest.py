"""The load tests in their CI short form, against the real stack: a few visits on few detectors with one fault.

Run as the operator runs them (``nightshift loadtest ...`` subprocesses). What is asserted
is what the issue demands of the run, never its timing: every DiaSource stored in the
APDB has exactly one alert on the topic after an alert publisher was SIGKILLed mid-visit
and restarted; the report renders in a real browser; a stack that does not answer stops
the run at once with what is wrong; the round trip refuses a table smaller than asked.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nightshift_dev.loadtest import RoundTripConfig, StackAddresses, run_roundtrip

from ._browser import open_in_chromium

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # GUARD below, not the suite default, bounds a run

GUARD = 600.0  # seconds: only stops a hung run; the runs wait on conditions
NIGHTSHIFT = str(Path(sys.executable).parent / "nightshift")


@pytest.fixture
def stack_env(kafka_bootstrap: str, pg_dsn: str, s3_endpoint: str, schema_registry_url: str) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "PG_DSN": pg_dsn, "S3_ENDPOINT": s3_endpoint,
            "SCHEMA_REGISTRY_URL": schema_registry_url}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NIGHTSHIFT, "loadtest", *args], env=env, capture_output=True, text=True, timeout=GUARD)


def _result(results: Path) -> tuple[dict[str, object], Path]:
    (run,) = list(results.iterdir())
    return json.loads((run / "result.json").read_text()), run


def test_short_night_with_a_killed_publisher_loses_and_duplicates_nothing(stack_env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    out = _run(["night", "--visits", "3", "--detectors", "3", "--cadence", "0", "--chaos", "--publishers", "2",
                "--tasks", "3", "--history", "5", "--guard", "180", "--results", str(tmp_path)], stack_env)
    assert out.returncode == 0, out.stdout + out.stderr
    result, run = _result(tmp_path)
    extra = result["extra"]
    assert isinstance(extra, dict)
    kills = extra["chaos_faults"]
    assert len(kills) == 1 and kills[0]["fault"] == "SIGKILL an alert publisher"
    assert kills[0]["process"].startswith("alert-publisher-")
    rec = extra["reconciliation"]
    assert rec["apdb_dia_sources"] == 3 * 3 * 53 == rec["distinct_alerts"]
    assert rec["lost"] == rec["duplicated"] == rec["alerts_without_apdb_row"] == 0 and rec["ok"]
    assert rec["counted_by"].startswith("a fresh read_committed reader")
    budgets = {b["name"]: b for b in result["budgets"]}  # type: ignore[attr-defined]
    assert len(budgets["timeToIssueAlerts per detector"]["samples"]) == 9
    assert len(budgets["timeToIssueAlerts per visit"]["samples"]) == 3
    assert all(b["mode"] == "catalogue" for b in budgets.values())
    summary = out.stdout.strip().splitlines()[-1]
    assert summary.startswith("loadtest night:") and "p95" in summary and "margin" in summary
    assert set(result["resources"]) >= {"alert-publisher-0", "alert-publisher-1"}  # type: ignore[arg-type]
    (page,) = open_in_chromium(run / "report.html")
    assert page.console_errors == [] and page.page_errors == []
    assert page.images and all(int(str(i["naturalWidth"])) > 0 for i in page.images)


def test_a_stack_that_does_not_answer_stops_the_run_at_once(stack_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    env = {**stack_env, "KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
    out = _run(["visit", "--visits", "1", "--detectors", "1", "--results", str(tmp_path)], env)
    assert out.returncode == 1
    assert f"Kafka at 127.0.0.1:{port} does not answer" in out.stderr and "nightshift dev up" in out.stderr
    result, _ = _result(tmp_path)  # the report of the failed run says why
    assert "does not answer" in str(result["failed"]) and result["budgets"][0]["samples"] == []  # type: ignore[index]


def test_roundtrip_refuses_a_small_table_then_measures_writer_and_reader(stack_env: dict[str, str], tmp_path: Path,
                                                                          unique_name: str) -> None:
    schema = f"lt_{unique_name}"
    stack = StackAddresses(stack_env["KAFKA_BOOTSTRAP"], stack_env["PG_DSN"], stack_env["S3_ENDPOINT"],
                           stack_env["SCHEMA_REGISTRY_URL"])
    refused = run_roundtrip(RoundTripConfig(schema=schema, visits=2, sources_per_visit=2000), "test", stack)
    assert refused.failed is not None and "holds 0 rows, under the 10,000,000 asked for" in refused.failed
    assert refused.budgets[0].samples == []
    out = _run(["roundtrip", "--schema", schema, "--visits", "2", "--seed-visits", "1", "--min-dia-sources", "1",
                "--sources", "2000", "--drop", "--results", str(tmp_path / "b")], stack_env)
    assert out.returncode == 0, out.stdout + out.stderr
    result, _ = _result(tmp_path / "b")
    (budget,) = result["budgets"]  # type: ignore[misc]
    assert budget["name"] == "timeToWriteReadAlertsDB" and len(budget["samples"]) == 2
    rows = result["extra"]["visits"]  # type: ignore[index]
    assert all(r["preload_rows"]["sources_of_visit"] > 0 for r in rows)  # the reader saw the writer's rows
