"""Raw ingest of simulated-camera raws: records, idempotency, conflicts, bad input, transfer modes, S3."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import boto3
import pytest
from astropy.io import fits
from obs_support import sim_raws

from nightshift.butler import Butler
from nightshift.obs import ingest_raws


@pytest.fixture
def butler(tmp_path: Path) -> Butler:
    b = Butler.create(tmp_path / "repo")
    yield b
    b.close()


def test_science_and_calibration_raws_make_exposures_visits_and_datasets(butler: Butler, tmp_path: Path) -> None:
    """REQ-0008 (science) and REQ-0009 (bias, dark, flat): all are raws; only science makes visits."""
    files = sim_raws(tmp_path / "sci", n_exposures=2)
    for i, kind in enumerate(("bias", "dark", "flat")):
        files += sim_raws(tmp_path / kind, first_seq=10 + i, observation_type=kind,
                          physical_filter="empty" if kind != "flat" else "g_6")
    report = ingest_raws(butler, files, processes=1)
    assert report.ok and len(report.ingested) == 20, report.skipped
    reg = butler.registry
    types = {e.id: e.observation_type for e in reg.query_dimension_records("exposure")}
    assert types == {2026120600001: "science", 2026120600002: "science", 2026120600010: "bias",
                     2026120600011: "dark", 2026120600012: "flat"}
    visits = reg.query_dimension_records("visit")
    assert sorted(v.id for v in visits) == [2026120600001, 2026120600002]
    v = visits[0]
    assert v.boresight_ra == pytest.approx(150.0) and v.sky_angle == pytest.approx(10.0) and v.seeing == 0.8
    assert v.physical_filter == "r_57" and v.day_obs == 20261206
    # The region is the whole focal plane from boresight + rotation, so it holds the boresight.
    hit = reg.query_dimension_records("visit", where="visit.region OVERLAPS POINT(150.0, 2.0)")
    assert len(hit) == 2
    bias = reg.query_datasets("raw", collections="TestCam/raw/all", where="exposure.observation_type = 'bias'")
    assert sorted(r.data_id["detector"] for r in bias) == [0, 1, 2, 3]
    day = reg.get_dimension_record("day_obs", {"instrument": "TestCam", "day_obs": 20261206})
    assert day is not None and day.timespan.contains("2026-12-07T02:00:00")


def test_reingesting_the_same_files_is_a_no_op(butler: Butler, tmp_path: Path) -> None:
    files = sim_raws(tmp_path / "raw")
    first = ingest_raws(butler, files, processes=1)
    again = ingest_raws(butler, files, processes=1)
    assert len(first.ingested) == 4 and again.ok
    assert again.ingested == [] and len(again.unchanged) == 4
    assert len(butler.registry.query_datasets("raw", collections="TestCam/raw/all")) == 4


def test_same_data_id_with_other_content_is_a_conflict_and_changes_nothing(butler: Butler, tmp_path: Path) -> None:
    (original,) = sim_raws(tmp_path / "a", detectors=(1,))
    ingest_raws(butler, [original], processes=1)
    (changed,) = sim_raws(tmp_path / "b", detectors=(1,), seeing=1.4)  # same name, same data ID, new header
    assert changed.name == original.name
    report = ingest_raws(butler, [changed], processes=1)
    assert not report.ok and report.ingested == []
    (source, reason) = report.skipped[0]
    assert source == str(changed) and "conflict" in reason and str(original) in reason
    ref = butler.registry.query_datasets("raw", collections="TestCam/raw/all")[0]
    assert butler.get(ref).metadata["SEEING"] == 0.8  # still the first file


def test_bad_files_are_reported_with_path_and_reason_and_the_rest_go_on(butler: Butler, tmp_path: Path) -> None:
    good = sim_raws(tmp_path / "good", detectors=(0, 1))
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"this is not FITS" * 400)
    (truncated,) = sim_raws(tmp_path / "trunc", detectors=(2,), first_seq=5)
    truncated.write_bytes(truncated.read_bytes()[:4000])
    (outside,) = sim_raws(tmp_path / "outside", detectors=(3,), first_seq=6)
    fits.setval(outside, "DETECTOR", value=7)
    (unknown,) = sim_raws(tmp_path / "unknown", detectors=(3,), first_seq=7)
    fits.setval(unknown, "INSTRUME", value="MysteryCam")
    (nokey,) = sim_raws(tmp_path / "nokey", detectors=(3,), first_seq=8)
    fits.delval(nokey, "EXPID")
    (nofilter,) = sim_raws(tmp_path / "nofilter", detectors=(3,), first_seq=9, physical_filter="u_24")
    report = ingest_raws(butler, [*good, corrupt, truncated, outside, unknown, nokey, nofilter], processes=1)
    assert len(report.ingested) == 2
    reasons = dict(report.skipped)
    assert "not a FITS file" in reasons[str(corrupt)]
    assert "truncated" in reasons[str(truncated)]
    assert "no detector 7" in reasons[str(outside)]
    assert "MysteryCam" in reasons[str(unknown)] and "no header translator" in reasons[str(unknown)]
    assert "'EXPID'" in reasons[str(nokey)] and "missing" in reasons[str(nokey)]
    assert "TestCam has no physical filter 'u_24'" in reasons[str(nofilter)]
    assert all(reason.startswith(path) for path, reason in report.skipped)


def test_science_raw_without_wcs_or_pointing_is_skipped(butler: Butler, tmp_path: Path) -> None:
    (raw,) = sim_raws(tmp_path / "r", detectors=(0,))
    for key in ("RA", "DEC", "CTYPE1", "CTYPE2"):
        fits.delval(raw, key)
    report = ingest_raws(butler, [raw], processes=1)
    ((path, reason),) = report.skipped
    assert path == str(raw) and "no celestial WCS" in reason and "no boresight" in reason


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink", "direct"])
def test_transfer_modes(butler: Butler, tmp_path: Path, mode: str) -> None:
    (raw,) = sim_raws(tmp_path / "src", detectors=(2,))
    report = ingest_raws(butler, [raw], transfer=mode, processes=1)
    assert report.ok, report.skipped
    (ref,) = report.ingested
    stored = Path(unquote(urlparse(butler.get_uri(ref)).path))
    assert stored != raw and stored.is_relative_to(butler.root)
    if mode == "copy":
        assert not stored.is_symlink() and os.stat(stored).st_ino != os.stat(raw).st_ino
    elif mode == "hardlink":
        assert os.stat(stored).st_ino == os.stat(raw).st_ino
    else:  # symlink, and in place (the provider's file is linked, never copied)
        assert stored.is_symlink() and stored.resolve() == raw.resolve()
    assert butler.get(ref).image.shape == (8, 8 + 2 * 8)


def test_a_failed_registry_commit_removes_the_batch_files_and_records(butler: Butler, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """REQ-0076 for ingest: copied files and their datastore records go again when the registry refuses the batch."""
    files = sim_raws(tmp_path / "raw")

    def refused(*args: object, **kwargs: object) -> None:
        raise RuntimeError("registry refused the batch")

    monkeypatch.setattr(butler.registry, "insert_datasets", refused)
    with pytest.raises(RuntimeError, match="refused the batch") as info:
        ingest_raws(butler, files, transfer="copy", processes=1)
    assert not getattr(info.value, "__notes__", None)  # every removal worked: nothing to report by hand
    stored = Path(butler.root) / "datastore"

    def suffixes() -> list[str]:
        return sorted(p.suffix for p in stored.rglob("*") if p.is_file())

    assert suffixes() == []  # neither the copied files nor their records are left
    monkeypatch.undo()
    report = ingest_raws(butler, files, transfer="copy", processes=1)  # nothing half-done blocks a retry
    assert report.ok and len(report.ingested) == 4 and report.unchanged == []
    assert suffixes() == [".fits"] * 4 + [".json"] * 4


def test_parallel_ingest_matches_serial(tmp_path: Path) -> None:
    files = sim_raws(tmp_path / "raw", n_exposures=20)  # 80 files: enough for the worker pool
    with Butler.create(tmp_path / "par") as par, Butler.create(tmp_path / "ser") as ser:
        p = ingest_raws(par, files, processes=2)
        s = ingest_raws(ser, files, processes=1)
        assert p.ok and len(p.ingested) == 80
        assert sorted(r.id for r in p.ingested) == sorted(r.id for r in s.ingested)
        assert par.registry.query_dimension_records("visit") == ser.registry.query_dimension_records("visit")


def test_ingest_from_s3_copy_into_posix_and_in_place_in_an_s3_datastore(tmp_path: Path, s3_endpoint: str,
                                                                         unique_name: str) -> None:
    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=unique_name)
    files = sim_raws(tmp_path / "raw", detectors=(0, 1))
    for f in files:
        s3.upload_file(str(f), unique_name, f"repo/incoming/{f.name}")
    with Butler.create(tmp_path / "posix") as posix:
        report = ingest_raws(posix, [f"s3://{unique_name}/repo/incoming/"], transfer="copy", processes=1)
        assert report.ok and len(report.ingested) == 2, report.skipped
        assert posix.get(report.ingested[0]).metadata["INSTRUME"] == "TestCam"
    store = {"cls": "s3", "name": "s3", "bucket": unique_name, "prefix": "repo", "endpoint_url": s3_endpoint}
    with Butler.create(tmp_path / "s3repo", datastore=store) as remote:
        report = ingest_raws(remote, [f"s3://{unique_name}/repo/incoming/{files[0].name}"], transfer="direct",
                             processes=1)
        assert report.ok, report.skipped
        (ref,) = report.ingested
        assert remote.get_uri(ref) == f"s3://{unique_name}/repo/incoming/{files[0].name}"  # in place
        assert remote.get(ref).metadata["DETECTOR"] == 0
        outside = ingest_raws(remote, [str(files[1])], transfer="direct", processes=1)
        assert "needs a local file and a POSIX datastore" in outside.skipped[0][1]
