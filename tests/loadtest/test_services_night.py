"""The services-mode load-test night in its CI short form: a runner SIGKILLed mid-visit, then reconciled.

``nightshift loadtest night --mode services --chaos --faults runner`` runs two visits of two
512x512 detectors through all six service processes (``nightshift ap run-night``'s setup) on
topics, schemas and object prefixes of its own, and SIGKILLs the runner right after the
first visit's first ``dia.results`` appears (a point in the visit's events, not a time) —
the night restarts it, as Kubernetes would. One runner, so the killed process is the one
that still owes the visit's other detector. Asserted from the run's result, which the
load test reconciles independently of the services after they stopped:

- every DIA source the APDB holds has exactly one alert on the topic, by ``diaSourceId``;
- every planned quantum is completed, or failed with a reason;
- every output file of the night's RUN has its registry row, and every row its file;
- the run deleted its topics, schemas and objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from nightshift_dev.services import SERVICE_MODULES, available_services

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

GUARD = 1500.0  # seconds: only stops a hung run; the run waits on events
NIGHTSHIFT = str(Path(sys.executable).parent / "nightshift")


def test_services_night_with_a_killed_runner_reconciles(kafka_bootstrap: str, pg_dsn: str, s3_endpoint: str,
                                                         schema_registry_url: str, tmp_path: Path) -> None:
    missing = sorted(set(SERVICE_MODULES) - set(available_services()))
    assert not missing, f"services not installed (nightshift_services): {missing}"
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "PG_DSN": pg_dsn, "S3_ENDPOINT": s3_endpoint,
           "SCHEMA_REGISTRY_URL": schema_registry_url}
    out = subprocess.run(
        [NIGHTSHIFT, "loadtest", "night", "--mode", "services", "--visits", "2", "--detectors", "2",
         "--detector-size", "512", "--cadence", "5", "--runners", "1", "--chaos", "--faults", "runner",
         "--guard", "900", "--results", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=GUARD)
    text = out.stdout + out.stderr
    (run,) = list(tmp_path.iterdir())
    result = json.loads((run / "result.json").read_text())
    extra = result["extra"]
    rec = extra.get("reconciliation")
    assert rec is not None, text
    (fault,) = extra["chaos_faults"]
    assert fault["fault"] == "SIGKILL a runner" and fault["process"] == "runner-0", fault
    assert fault["dia_results_before"] >= 1  # killed after the visit's first dia.results, never before

    alerts = rec["alerts"]
    assert alerts["apdb_dia_sources"] > 0, text
    assert alerts["apdb_rows_stored_twice"] == 0
    assert alerts["lost"] == 0 and alerts["alerts_without_apdb_row"] == 0, alerts
    assert alerts["distinct_alerts"] == alerts["apdb_dia_sources"]

    quanta = rec["quanta"]
    assert quanta["planned"] == 2 * 2, quanta
    assert quanta["unresolved"] == [] and quanta["failed_without_reason"] == [], quanta
    assert quanta["completed"] + quanta["failed"] == quanta["planned"]

    datasets = rec["datasets"]
    assert datasets["registry_rows"] > 0 and datasets["registry_rows"] == datasets["files"], datasets
    for key in ("rows_without_file", "files_without_row", "records_without_file", "files_without_record"):
        assert datasets[key] == [], (key, datasets[key])
    # last: a runner killed between a detector's dia.results and its quantum.completed re-sends that
    # dia.results, and the alert publisher must not publish its alerts again (publisher-dedup)
    assert alerts["duplicated"] == 0, f"alerts published twice after the runner kill: {alerts['duplicate_ids']}"
    assert alerts["alerts_on_topic"] == alerts["apdb_dia_sources"]
    assert rec["ok"] and out.returncode == 0, text
    assert (run / "report.html").is_file()

    assert extra["cleanup_problems"] == []
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    assert not [t for t in topics if t.startswith(extra["prefix"])], "the run left its topics behind"


def test_server_restarts_are_refused_without_a_stack_of_the_runs_own(kafka_bootstrap: str, pg_dsn: str) -> None:
    from nightshift_dev.devstack import StackSettings, status
    from nightshift_dev.loadtest import LoadTestError, ServicesConfig
    from nightshift_dev.loadtest._services import _owns_stack

    for fault in ("broker", "postgres"):
        with pytest.raises(LoadTestError, match="refused without --own-stack"):
            ServicesConfig(chaos=True, faults=("runner", fault))
    with pytest.raises(LoadTestError, match="unknown fault"):
        ServicesConfig(chaos=True, faults=("network",))
    # The session's stack runs (the fixtures above) and no load test started it: --own-stack must refuse it
    # rather than take it over; its servers stay as they were.
    settings = StackSettings()
    before = {c.name: c.running for c in status(settings)}
    assert before["kafka"] and before["postgres"]
    if (settings.state_dir / ".nightshift-loadtest-owned").exists():
        pytest.skip("this stack was started by a load test with --own-stack")
    with pytest.raises(LoadTestError, match="no load test started it"):
        _owns_stack()
    assert {c.name: c.running for c in status(settings)} == before
