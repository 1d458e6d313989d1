"""Cutouts: byte-identical to astropy's CCDData.write, and CCDData.read gives the planes back."""

from __future__ import annotations

import io

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, VarianceUncertainty

from nightshift.alerts import CutoutError, CutoutWriter, LocalWcs, write_cutout


def planes(rng: np.random.Generator, n: int, psf_dtype: str = "f8") -> tuple[np.ndarray, ...]:
    img = rng.normal(size=(n, n)).astype(np.float32)
    var = rng.random((n, n)).astype(np.float32)
    mask = rng.integers(0, 2**12, (n, n)).astype(np.int32) * (rng.random((n, n)) < 0.1)
    psf = rng.random((21, 21)).astype(psf_dtype)
    return img, var, mask, psf


def astropy_bytes(
    img: np.ndarray, var: np.ndarray, mask: np.ndarray, psf: np.ndarray, wcs: LocalWcs, rotpa: float
) -> bytes:
    ccd = CCDData(img, unit=u.nJy, uncertainty=VarianceUncertainty(var), mask=mask != 0, wcs=wcs.astropy(), psf=psf)
    ccd.header["ROTPA"] = rotpa
    buf = io.BytesIO()
    ccd.write(buf, format="fits")
    return buf.getvalue()


@pytest.mark.parametrize("psf_dtype", ["f8", "f4"])
def test_bytes_equal_ccddata_write(psf_dtype: str) -> None:
    rng = np.random.default_rng(7)
    writer = CutoutWriter()
    for _ in range(120):
        n = int(rng.integers(30, 103))  # Rubin's sizes, from bboxSize
        img, var, mask, psf = planes(rng, n, psf_dtype)
        rotpa = float(rng.random() * 360)
        wcs = LocalWcs.around(float(rng.random() * 360), float(rng.random() * 178 - 89), n, 0.2, rotpa)
        assert writer.write(img, var, mask, psf, wcs, rotpa) == astropy_bytes(img, var, mask, psf, wcs, rotpa)


def test_ccddata_read_gives_the_planes_back() -> None:
    rng = np.random.default_rng(3)
    img, var, mask, psf = planes(rng, 40)
    wcs = LocalWcs.around(150.25, -30.5, 40, 0.2, 0.0)  # rotation 0: off-diagonal PC cards are 0.0
    data = write_cutout(img, var, mask, psf, wcs, rotpa=12.5)
    ccd = CCDData.read(io.BytesIO(data), format="fits")
    np.testing.assert_array_equal(ccd.data, img)
    np.testing.assert_array_equal(ccd.uncertainty.array, var)
    assert isinstance(ccd.uncertainty, VarianceUncertainty)
    np.testing.assert_array_equal(ccd.mask, mask != 0)
    np.testing.assert_array_equal(ccd.psf, psf)
    assert ccd.unit == u.nJy
    assert ccd.header["ROTPA"] == 12.5
    sky = ccd.wcs.pixel_to_world(19.5, 19.5)  # 0-based centre of a 40-pixel cutout
    assert sky.ra.deg == pytest.approx(150.25, abs=1e-9) and sky.dec.deg == pytest.approx(-30.5, abs=1e-9)
    corner = ccd.wcs.pixel_to_world(0, 19.5)
    assert corner.separation(sky).arcsec == pytest.approx(19.5 * 0.2, rel=1e-6)
    with fits.open(io.BytesIO(data)) as hdus:
        assert [h.name for h in hdus] == ["PRIMARY", "MASK", "UNCERT", "PSFIMAGE"]


def test_inconsistent_planes_are_refused() -> None:
    rng = np.random.default_rng(1)
    img, var, mask, psf = planes(rng, 30)
    wcs = LocalWcs.around(1.0, 1.0, 30)
    with pytest.raises(CutoutError, match="one shape"):
        write_cutout(img, var[:5], mask, psf, wcs)
    with pytest.raises(CutoutError, match="PSF kernel"):
        write_cutout(img, var, mask, psf.astype(np.int32), wcs)
