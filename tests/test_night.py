"""Parts of ``nightshift ap run-night`` against the real stack: the trigger, the monitor, the service processes."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import pytest
from astropy.io import fits
from click.testing import CliRunner

from nightshift.cli._main import cli
from nightshift.events import ensure_topics, kafka_settings
from nightshift.obs import get_instrument
from nightshift.obs.sim import plan_night, render_detector
from nightshift_dev.night import (
    EVENT_SUBJECTS,
    NightError,
    NightMonitor,
    NightRepo,
    NightSpec,
    VisitTrigger,
    _tai_isot,
)
from nightshift_dev.services import LocalServices, ServiceStartError

pytestmark = [pytest.mark.integration]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"visits": 0}, "--visits must be at least 1"),
    ({"detectors": 10}, "--detectors must be 1..9"),
    ({"detector_size": 32}, "--detector-size must be 64..4096"),
    ({"datastore": "gcs"}, "--datastore must be s3 or posix"),
])
def test_night_spec_refuses_what_cannot_run(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(NightError, match=message):
        NightSpec(**kwargs)  # type: ignore[arg-type]  # deliberately loose for the parametrization


def test_run_night_command_is_registered_with_its_options() -> None:
    result = CliRunner().invoke(cli, ["ap", "run-night", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--visits", "--detectors", "--cadence", "--detector-size", "--runners", "--datastore"):
        assert option in result.output
    bad = CliRunner().invoke(cli, ["ap", "run-night", "--detectors", "12"])
    assert bad.exit_code == 1 and "--detectors must be 1..9" in bad.output


def _tiny_night(tmp_path: Path, prefix: str) -> tuple[NightRepo, NightSpec]:
    spec = NightSpec(visits=2, detectors=1, detector_size=64, cadence_s=1.0, lead_s=0.5, exposure_time_s=1.0,
                     readout_s=0.2)
    plan = plan_night(2, day_obs=20261206, exposure_time=1.0)
    camera = get_instrument("LSSTCam-sim", detector_size=64).camera
    raws = {(o.seq_num, 94): render_detector(o, camera, 94, seed=0).adu for o in plan}
    drop = tmp_path / "drop"
    drop.mkdir()
    night = NightRepo(tag=prefix, workdir=tmp_path, repo=str(tmp_path / "repo"), registry_schema="-",
                      apdb_schema="-", observations=plan, detectors=[94], raws=raws, templates=0, calibrations=0,
                      prefix=prefix + ".", staging_uri=str(tmp_path / "staging"), drop_dir=drop)
    return night, spec


def test_trigger_sends_next_visit_then_drops_retimed_raws_and_the_monitor_follows(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    night, spec = _tiny_night(tmp_path, unique_name)
    kafka = kafka_settings(kafka_bootstrap)
    ensure_topics(kafka, [night.topic(s) for s in EVENT_SUBJECTS] + [night.alert_topic], partitions=2)
    monitor = NightMonitor(night, spec, kafka).start()
    try:
        trigger = VisitTrigger(night, spec, kafka)
        clocks = trigger.schedule(time.time() + 0.5)
        trigger.run(threading.Event())
        deadline = time.monotonic() + 60  # deadlock guard
        while time.monotonic() < deadline:
            with monitor.lock:
                if all(len(v.raws) == 1 and v.next_visit for v in monitor.visits.values()):
                    break
            time.sleep(0.1)
    finally:
        monitor.close()
    for c in clocks:
        state = monitor.visits[c.visit]
        assert state.next_visit is not None and state.raws, f"visit {c.visit}: {state}"
        assert state.next_visit <= state.raws[94], "nextVisit precedes the visit's raws"
        (raw,) = (night.drop_dir / str(c.visit // 100_000) / f"{c.seq_num:06d}").glob("*.fits")
        header = fits.getheader(raw)
        # re-timed to the wall clock: the header says when the exposure really started
        assert header["DATE-BEG"] == _tai_isot(c.begin) and header["EXPID"] == c.visit
    assert not list((night.drop_dir / ".incoming").rglob("*.fits")), "raws are renamed into place, never left half"


def test_local_services_start_serve_and_drain_on_sigterm(kafka_bootstrap: str, unique_name: str,
                                                          tmp_path: Path) -> None:
    env = {**kafka_settings(kafka_bootstrap).environment(), "NIGHTSHIFT_TOPIC_PREFIX": unique_name + "."}
    services = LocalServices(env, tmp_path / "logs")
    try:
        (runner,) = services.start("runner", consumer_group=unique_name + "-runner")
        assert runner.port > 0 and runner.alive
        with urllib.request.urlopen(f"http://127.0.0.1:{runner.port}/healthz", timeout=30) as resp:
            assert resp.status == 200
    finally:
        codes = services.stop()
    assert codes == {"runner-0": 0}, f"SIGTERM must drain and exit 0: {codes}"
    assert (tmp_path / "logs" / "runner-0.log").exists()


def test_a_service_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    services = LocalServices({"NIGHTSHIFT_KAFKA_SECURITY_PROTOCOL": "NOT-A-PROTOCOL"}, tmp_path / "logs",
                             start_timeout=120)
    with pytest.raises(ServiceStartError, match="runner-0 did not start"):
        services.start("runner")
    services.stop()
