"""Raws as events: raw.arrived from a file, idempotent ingest of announced raws, the watcher, the night trigger."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import pytest
from obs_support import sim_raws

from nightshift.butler import Butler
from nightshift.obs import (
    RawHeaderError,
    RawIngestError,
    RawWatcher,
    describe_raw,
    ingest_arrived,
    raw_event_key,
    raw_ingested_events,
)
from nightshift.obs.sim import load_night, plan_night, trigger_schedule, write_night


@pytest.fixture
def butler(tmp_path: Path) -> Butler:
    b = Butler.create(tmp_path / "repo", register=False)
    yield b
    b.close()


def test_describe_raw_reads_identity_from_headers_and_hashes_the_bytes(tmp_path: Path) -> None:
    (raw,) = sim_raws(tmp_path, detectors=(2,))
    (event,) = describe_raw(str(raw))
    assert (event.instrument, event.visit, event.detector, event.snap) == ("TestCam", 2026120600001, 2, 0)
    assert event.group_id == "TestCam_20261206_000001"
    assert event.checksum == hashlib.sha256(raw.read_bytes()).hexdigest()
    assert event.size_bytes == raw.stat().st_size and event.uri == str(raw.absolute())
    assert raw_event_key(event.instrument, event.detector) == "TestCam/2"


def test_describe_raw_of_a_damaged_file_says_why(tmp_path: Path) -> None:
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  = not a fits file")
    with pytest.raises(RawHeaderError, match="bad.fits"):
        describe_raw(str(bad))


def test_ingest_arrived_is_idempotent_and_reports_per_file(butler: Butler, tmp_path: Path) -> None:
    files = [str(f) for f in sim_raws(tmp_path / "raw", detectors=(0, 1))]
    bad = tmp_path / "raw" / "broken.fits"
    bad.write_bytes(b"\0" * 100)
    first = ingest_arrived(butler, [*files, str(bad), str(tmp_path / "missing.fits")])
    assert set(first.datasets) == set(files) and first.new == set(files)
    assert isinstance(first.failed[str(bad)], RawIngestError)
    assert "missing.fits" in str(first.failed[str(tmp_path / "missing.fits")])
    assert first.refs_for(f"file://{files[1]}") == first.datasets[files[1]] and first.is_new(files[1])
    with pytest.raises(RawIngestError, match="broken.fits"):
        first.refs_for(str(bad))
    again = ingest_arrived(butler, [files[0], files[0]])  # a redelivery, twice in one batch
    assert again.new == set() and not again.failed
    assert again.datasets[files[0]] == first.datasets[files[0]]  # same deterministic dataset id
    assert len(butler.registry.query_datasets("raw", collections="TestCam/raw/all")) == 2
    (event,) = raw_ingested_events(butler, again.datasets[files[0]])
    assert (event.instrument, event.visit, event.detector) == ("TestCam", 2026120600001, 0)
    assert event.dataset_id == first.datasets[files[0]][0].id and event.run == "TestCam/raw/all"
    assert butler.get(first.datasets[files[0]][0]).metadata["DETECTOR"] == 0


def test_ingest_arrived_from_s3(butler: Butler, tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=unique_name)
    (raw,) = sim_raws(tmp_path / "raw", detectors=(3,))
    s3.upload_file(str(raw), unique_name, f"drop/{raw.name}")
    uri = f"s3://{unique_name}/drop/{raw.name}"
    (event,) = describe_raw(uri, s3_client=s3)
    assert event.uri == uri and event.checksum == hashlib.sha256(raw.read_bytes()).hexdigest()
    result = ingest_arrived(butler, [uri])
    assert not result.failed and result.new == {uri}
    (ref,) = result.datasets[uri]
    assert ref.data_id["detector"] == 3 and butler.get(ref).metadata["DETECTOR"] == 3
    missing = ingest_arrived(butler, [f"s3://{unique_name}/drop/none.fits"])
    assert "none.fits" in str(missing.failed[f"s3://{unique_name}/drop/none.fits"])


def test_watcher_announces_new_files_once_and_remembers_across_restarts(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    state = tmp_path / "state" / "announced.txt"
    files = sim_raws(tmp_path / "raw", detectors=(0, 1))
    (drop / files[0].name).write_bytes(files[0].read_bytes())
    (drop / f".{files[1].name}.tmp").write_bytes(b"half")  # being written: not a raw yet
    (drop / "notes.txt").write_text("not a raw")
    watcher = RawWatcher(drop, state)
    assert watcher.poll() == []  # seen once: not yet known to be complete
    (first,) = watcher.poll()  # unchanged since the previous listing
    assert first == str(drop / files[0].name)
    watcher.mark(first)
    assert watcher.poll() == []
    (drop / files[1].name).write_bytes(files[1].read_bytes()[:2880])  # a writer that does not rename
    assert watcher.poll() == []
    with open(drop / files[1].name, "ab") as f:  # ... still writing
        f.write(files[1].read_bytes()[2880:])
    assert watcher.poll() == []  # it changed since the previous listing
    restarted = RawWatcher(drop, state, settle=False)  # a restart: only the file not yet announced
    assert restarted.poll() == [str(drop / files[1].name)]
    everything = RawWatcher(drop, settle=False).poll()  # no state: everything again
    assert everything == sorted(str(drop / f.name) for f in files)


def test_watcher_lists_an_s3_prefix(tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=unique_name)
    (raw,) = sim_raws(tmp_path, detectors=(0,))
    s3.upload_file(str(raw), unique_name, f"incoming/a/{raw.name}")
    s3.put_object(Bucket=unique_name, Key="incoming/readme.txt", Body=b"x")
    s3.put_object(Bucket=unique_name, Key=f"other/{raw.name}", Body=b"x")
    watcher = RawWatcher(f"s3://{unique_name}/incoming/", s3_client=s3)
    assert watcher.poll() == [f"s3://{unique_name}/incoming/a/{raw.name}"]


def test_trigger_schedule_sends_next_visit_ahead_and_raws_at_exposure_end(tmp_path: Path) -> None:
    write_night(tmp_path / "night", plan_night(3, instrument="TestCam"), [0, 1], detector_size=16)
    visits = load_night(tmp_path / "night")
    # exposure order: the pair's first visits (1, then 3, 80 s later), the revisit of 1 (visit 2) 30 min later
    assert [v.visit for v in visits] == [2026120600001, 2026120600003, 2026120600002]
    assert all(len(v.raws) == 2 for v in visits)
    steps = trigger_schedule(visits, cadence_s=35.0, speed=5.0, lead_s=20.0)
    assert [(round(s.at_s, 6), s.kind, s.visit.visit % 10) for s in steps] == [
        (0.0, "nextVisit", 1), (7.0, "nextVisit", 3), (10.0, "raws", 1), (14.0, "nextVisit", 2),
        (17.0, "raws", 3), (24.0, "raws", 2)]
    real = trigger_schedule(visits)  # the simulated clock
    assert [(s.at_s, s.kind) for s in real[:2]] == [(0.0, "nextVisit"), (50.0, "raws")]  # lead 20 s + 30 s exposure
    raws = [s.at_s for s in real if s.kind == "raws"]
    assert raws[1] - raws[0] == pytest.approx(80.0) and raws[2] - raws[0] == pytest.approx(1800.0)
    event = visits[0].next_visit()
    payload = json.loads((tmp_path / "night" / "next_visit.jsonl").read_text().splitlines()[0])
    assert event.event_id == payload["event_id"] and event.detectors == [0, 1]
    assert event.issued_at.timestamp() == pytest.approx(visits[0].begin.timestamp() - 20.0)
