"""Raw ingest of real instruments' headers (HSC, DECam) through astro_metadata_translator, with corrections.

The headers are those the translator documents in its own test data (see data/README.md); the expected
values are the ones its tests assert (exposure 904024 in HSC-I, DECam 229388 in z, the DECam bias whose
FILTER the translator corrects).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from astropy.io import fits
from obs_support import write_decam, write_hsc

from nightshift.butler import Butler
from nightshift.obs import celestial_wcs, ingest_raws


@pytest.fixture
def butler(tmp_path: Path) -> Butler:
    b = Butler.create(tmp_path / "repo")
    yield b
    b.close()


def _record(butler: Butler, element: str, **data_id: int | str):  # type: ignore[no-untyped-def]  # returns a record of any element
    rec = butler.registry.get_dimension_record(element, data_id)
    assert rec is not None, f"no {element} record {data_id}"
    return rec


def test_hsc_raw_ingests_to_the_translated_records(butler: Butler, tmp_path: Path) -> None:
    src = write_hsc(tmp_path / "HSCA90402512.fits")
    report = ingest_raws(butler, [src], processes=1)
    assert report.ok and len(report.ingested) == 1, report.skipped
    assert report.instruments_registered == ["HSC"]
    exp = _record(butler, "exposure", instrument="HSC", exposure=904024)
    assert exp.physical_filter == "HSC-I" and exp.observation_type == "science"
    assert exp.obs_id == "HSCA90402400" and exp.exposure_time == 30.0 and exp.target_name == "STRIPE82L"
    assert exp.science_program == "o13015" and exp.day_obs == 20131102
    visit = _record(butler, "visit", instrument="HSC", visit=904024)
    assert visit.boresight_ra == pytest.approx(320.749925) and visit.boresight_dec == pytest.approx(0.50001944)
    assert visit.airmass == pytest.approx(1.1216, abs=1e-3)
    # The region comes from the raw's WCS: the 8x8-pixel test image lies ~0.21 deg from the boresight
    # (the WCS reference pixel is 1024.5, 4395.2), so the region holds the image's centre, not the boresight.
    wcs = celestial_wcs(fits.getheader(src))
    ra, dec = (float(v[0]) for v in wcs.all_pix2world([3.5], [3.5], 0))
    query = butler.registry.query_dimension_records
    assert [v.id for v in query("visit", where=f"visit.region OVERLAPS POINT({ra}, {dec})")] == [904024]
    assert query("visit", where="visit.region OVERLAPS POINT(320.749925, 0.50001944)") == []
    assert butler.registry.query_join_rows("visit_definition") == [
        {"instrument": "HSC", "exposure": 904024, "visit": 904024}]
    (ref,) = report.ingested
    assert dict(ref.data_id) == {"instrument": "HSC", "exposure": 904024, "detector": 50}
    raw = butler.get(ref)
    assert raw.image.shape == (8, 8) and raw.metadata["FRAMEID"] == "HSCA90402512"


def test_decam_extension_ingests_with_its_ccd_number(butler: Butler, tmp_path: Path) -> None:
    report = ingest_raws(butler, [write_decam(tmp_path / "DECam_00229388.fits")], processes=1)
    assert report.ok, report.skipped
    (ref,) = report.ingested
    assert dict(ref.data_id) == {"instrument": "DECam", "exposure": 229388, "detector": 25}
    exp = _record(butler, "exposure", instrument="DECam", exposure=229388)
    assert exp.physical_filter == "z DECam SDSS c0004 9260.0 1520.0" and exp.observation_type == "science"
    assert exp.day_obs == 20130831 and exp.science_program == "2012B-0001"
    det = _record(butler, "detector", instrument="DECam", detector=25)
    assert det.full_name == "S1"
    band = _record(butler, "physical_filter", instrument="DECam", physical_filter=exp.physical_filter).band
    assert band == "z"
    metadata = butler.get("raw.metadata", ref.data_id, collections="DECam/raw/all")
    assert metadata["DETPOS"] == "S1" and metadata["OBSID"] == "ct4m20130901t060255"  # primary + extension


def test_decam_bias_is_a_calibration_raw_with_the_translators_filter_correction(butler: Butler,
                                                                               tmp_path: Path) -> None:
    """REQ-0009 and REQ-0050: the bias ingests, corrected; the raw read back carries the correction."""
    src = write_decam(tmp_path / "DECam_00160496.fits", exposure="160496")
    report = ingest_raws(butler, [src], processes=1)
    assert report.ok, report.skipped
    exp = _record(butler, "exposure", instrument="DECam", exposure=160496)
    assert exp.observation_type == "bias" and exp.physical_filter == "solid plate 0.0 0.0"
    assert butler.registry.get_dimension_record("visit", {"instrument": "DECam", "visit": 160496}) is None
    (ref,) = report.ingested
    corrections = json.loads(butler.registry.get_dataset_metadata(ref)["corrections"])
    assert corrections["FILTER"]["old"] == "Y DECam c0005 10095.0 1130.0"
    assert corrections["FILTER"]["new"] == "solid plate 0.0 0.0"
    assert corrections["FILTER"]["source"].startswith("translator DECam")
    raw = butler.get(ref)
    assert raw.metadata["FILTER"] == "solid plate 0.0 0.0"  # up-to-date metadata in memory
    assert fits.getheader(src, 0)["FILTER"] == "Y DECam c0005 10095.0 1130.0"  # the file is untouched


def test_correction_file_shipped_with_the_translator_is_applied_and_recorded(butler: Butler,
                                                                            tmp_path: Path) -> None:
    """HSC-HSCA00124400.yaml (in the translator package) says DATA-TYP is OBJECT for that exposure."""
    src = write_hsc(tmp_path / "HSCA00124412.fits", **{"EXP-ID": "HSCA00124400", "FRAMEID": "HSCA00124412",
                                                         "DATA-TYP": "FLAT"})
    report = ingest_raws(butler, [src], processes=1)
    assert report.ok, report.skipped
    exp = _record(butler, "exposure", instrument="HSC", exposure=1244)
    assert exp.observation_type == "science"
    (ref,) = report.ingested
    change = json.loads(butler.registry.get_dataset_metadata(ref)["corrections"])["DATA-TYP"]
    assert change["old"] == "FLAT" and change["new"] == "OBJECT"
    assert change["source"].endswith("corrections/HSC/HSC-HSCA00124400.yaml")
    assert butler.get("raw.metadata", ref.data_id, collections="HSC/raw/all")["DATA-TYP"] == "OBJECT"


def test_repository_local_corrections_win_and_reach_the_in_memory_raw(butler: Butler, tmp_path: Path) -> None:
    """REQ-0050: a repository's own correction file; the object read back carries the corrected metadata."""
    corrections = Path(butler.root) / "corrections"
    corrections.mkdir()
    (corrections / "HSC-HSCA90402400.yaml").write_text("OBJECT: STRIPE82L-fixed\nEXPTIME: 31.5\n")
    report = ingest_raws(butler, [write_hsc(tmp_path / "a.fits")], processes=1)
    assert report.ok, report.skipped
    exp = _record(butler, "exposure", instrument="HSC", exposure=904024)
    assert exp.target_name == "STRIPE82L-fixed" and exp.exposure_time == 31.5
    raw = butler.get(report.ingested[0])
    assert raw.metadata["OBJECT"] == "STRIPE82L-fixed" and raw.metadata["EXPTIME"] == 31.5
    assert raw.metadata["NSCORR"] == 2
    recorded = json.loads(butler.registry.get_dataset_metadata(report.ingested[0])["corrections"])
    assert recorded["OBJECT"]["source"] == str(corrections / "HSC-HSCA90402400.yaml")


def test_hsc_and_decam_raws_coexist(butler: Butler, tmp_path: Path) -> None:
    """REQ-0022 with data: two cameras' raws and records in one repository, queried apart."""
    report = ingest_raws(butler, [write_hsc(tmp_path / "h.fits"), write_decam(tmp_path / "d.fits")], processes=1)
    assert report.ok and len(report.ingested) == 2
    hsc = butler.registry.query_datasets("raw", collections=["HSC/raw/all", "DECam/raw/all"],
                                         where="instrument = 'HSC'")
    decam = butler.registry.query_datasets("raw", collections=["HSC/raw/all", "DECam/raw/all"],
                                           where="instrument = 'DECam'")
    assert [r.data_id["detector"] for r in hsc] == [50] and [r.data_id["detector"] for r in decam] == [25]
