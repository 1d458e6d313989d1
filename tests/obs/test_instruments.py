"""Instruments: the LSSTCam-like focal plane, the test camera, registering instruments (REQ-0022)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nightshift.butler import Butler
from nightshift.obs import (
    ObsError,
    UnknownDetectorError,
    UnknownFilterError,
    UnknownInstrumentError,
    get_instrument,
    lsstcam_like,
    small_test_camera,
)


def test_lsstcam_like_has_the_real_focal_plane_layout() -> None:
    cam = lsstcam_like()
    assert len(cam) == 189
    assert sorted(cam.detectors) == list(range(189))
    assert cam[0].name == "R01_S00" and cam[94].name == "R22_S11" and cam[188].name == "R43_S22"
    centre = cam[94]
    assert (centre.x_mm, centre.y_mm) == (0.0, 0.0)
    rafts = {d.name[:3] for d in cam}
    assert len(rafts) == 21 and not rafts & {"R00", "R04", "R40", "R44"}
    for det in cam:
        assert (det.width, det.height) == (4096, 4096) and len(det.amplifiers) == 16
    # No two detectors overlap: centres at least one CCD pitch apart.
    xy = np.array([(d.x_mm, d.y_mm) for d in cam])
    dist = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    assert dist[~np.eye(189, dtype=bool)].min() == pytest.approx(42.25)
    # The field is ~3.5 degrees across: corner CCD centres ~ +/-(2*127+42.25) mm at 20"/mm.
    assert xy.max() * cam.plate_scale / 3600 == pytest.approx(1.646, abs=0.01)


def test_amplifiers_tile_the_detector_and_the_raw() -> None:
    det = lsstcam_like(64)[7]
    covered = np.zeros((det.height, det.width), dtype=int)
    raw = np.zeros(det.raw_shape, dtype=int)
    for amp in det.amplifiers:
        x0, y0, x1, y1 = amp.bbox
        covered[y0:y1, x0:x1] += 1
        for box in (amp.raw_data_bbox, amp.raw_overscan_bbox):
            raw[box[1]:box[3], box[0]:box[2]] += 1
        dx0, dy0, dx1, dy1 = amp.raw_data_bbox
        assert (dx1 - dx0, dy1 - dy0) == (x1 - x0, y1 - y0)
        assert amp.gain > 0 and amp.read_noise > 0 and amp.bias_level > 0
    assert (covered == 1).all() and (raw == 1).all()
    assert det.raw_shape == (64, 64 + 8 * 32)


def test_detector_size_is_configurable_and_the_sky_extent_is_not() -> None:
    big, small = lsstcam_like(), lsstcam_like(256)
    assert small[5].width == 256
    assert small.sky_region(10.0, -30.0, 0.0) == pytest.approx(big.sky_region(10.0, -30.0, 0.0))
    with pytest.raises(ValueError, match="multiple of 16"):
        lsstcam_like(100)


def test_wcs_puts_each_detector_where_the_layout_says() -> None:
    from astropy.wcs import WCS

    cam = small_test_camera(100)
    det = cam[3]  # +x, +y quadrant
    wcs = WCS(cam.wcs_header(3, 150.0, 2.0, 0.0))
    ra, dec = wcs.all_pix2world([49.5], [49.5], 0)
    # +x of the focal plane is west (RA decreases) at sky angle 0; +y is north.
    assert dec[0] - 2.0 == pytest.approx(det.y_mm * cam.plate_scale / 3600, rel=1e-3)
    assert ra[0] < 150.0


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(UnknownInstrumentError, match="known: DECam, HSC, LSSTCam-sim, TestCam"):
        get_instrument("NoCam")
    with pytest.raises(UnknownDetectorError, match="no detector 189; its detectors are 0..188"):
        get_instrument("LSSTCam-sim").detector(189)
    with pytest.raises(UnknownFilterError, match="no physical filter 'HSC-Q'"):
        get_instrument("HSC").physical_filter("HSC-Q")


def test_two_instruments_in_one_repository(tmp_path: Path) -> None:
    """DMS-MWBT-REQ-0022: registering writes instrument, filter, band and detector records, side by side."""
    with Butler.create(tmp_path / "repo") as butler:
        reg = butler.registry
        assert get_instrument("LSSTCam-sim", detector_size=256).register(reg)
        assert get_instrument("HSC").register(reg)
        assert not get_instrument("HSC").register(reg)  # idempotent
        assert {r.name for r in reg.query_dimension_records("instrument")} == {"LSSTCam-sim", "HSC"}
        assert len(reg.query_dimension_records("detector", where="instrument = 'LSSTCam-sim'")) == 189
        assert len(reg.query_dimension_records("detector", where="instrument = 'HSC'")) == 112
        hsc_i = reg.get_dimension_record("physical_filter", {"instrument": "HSC", "physical_filter": "HSC-I"})
        assert hsc_i is not None and hsc_i.band == "i"
        r57 = reg.get_dimension_record("physical_filter", {"instrument": "LSSTCam-sim", "physical_filter": "r_57"})
        assert r57 is not None and r57.band == "r"
        # One band record serves both cameras.
        assert {b.name for b in reg.query_dimension_records("band")} >= {"g", "r", "i", "z", "y", "N921"}
        det = reg.get_dimension_record("detector", {"instrument": "LSSTCam-sim", "detector": 94})
        assert det is not None and det.full_name == "R22_S11" and det.purpose == "SCIENCE"


def test_a_different_definition_under_a_registered_name_is_refused(tmp_path: Path) -> None:
    from nightshift.obs import Instrument

    with Butler.create(tmp_path / "repo") as butler:
        get_instrument("TestCam").register(butler.registry)
        other = Instrument("TestCam", lsstcam_like(64), (), "TestCam", visit_max=10)
        with pytest.raises(ObsError, match="registered as nightshift.obs:TestCam with 4 detector slots"):
            other.register(butler.registry)
