"""Characterize and calibrate: PSF, WCS and zero point recovered from synthetic images with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from ap_sim import Sky, make_wcs, render

from nightshift.ap import AstrometryFitError, CharacterizeConfig, PsfModel, characterize, njy_per_count
from nightshift.butler.formatters import Exposure

SHAPE = (1024, 1024)
NJY_PER_E = 2.0
PSF_SIGMA = 1.8


def _exposure(seed: int = 5) -> tuple[Exposure, Sky]:
    sky = Sky.random(900, half_width_deg=0.035, seed=seed)
    truth_wcs = make_wcs(SHAPE)
    img, _ = render(sky, truth_wcs, SHAPE, psf_sigma=PSF_SIGMA, njy_per_e=NJY_PER_E, sky_level=800.0, seed=seed)
    var = np.clip(img, 1, None) + 25.0
    # the pointing is off by (25, -17) pixels and 0.05 degrees of rotation
    pointing = make_wcs(SHAPE, rotation_deg=0.05, shift=(25.0, -17.0))
    return Exposure(image=img, variance=var.astype(np.float32), wcs=pointing), sky


def test_wcs_psf_and_zero_point_are_recovered() -> None:
    exp, sky = _exposure()
    res = characterize(exp, sky.refcat())
    truth = make_wcs(SHAPE)
    x_true, y_true = truth.all_world2pix(sky.ra, sky.dec, 0)
    x_fit, y_fit = res.calexp.wcs.all_world2pix(sky.ra, sky.dec, 0)
    inside = (x_true > 0) & (x_true < SHAPE[1]) & (y_true > 0) & (y_true < SHAPE[0])
    err_pix = np.hypot(x_fit - x_true, y_fit - y_true)[inside]
    assert np.sqrt(np.mean(err_pix**2)) < 0.05  # 10 mas at 0.2"/px
    assert res.astrometry.rms_arcsec < 0.05
    assert abs(res.psf.sigma - PSF_SIGMA) / PSF_SIGMA < 0.05
    # zero point: one count is NJY_PER_E nJy
    assert abs(res.calexp.metadata["NJYPERCT"] / NJY_PER_E - 1) < 0.01
    assert res.calexp.psf is not None and res.calexp.psf.shape == (25, 25)
    # the background (800 e-) is gone
    assert abs(float(np.median(res.calexp.image))) < 5.0
    # calibrated magnitudes of bright matched stars agree with the catalog
    src = res.sources[res.astrometry.source_index]
    ref = sky.mag[res.astrometry.ref_index]
    bright = src["snr"] > 50
    assert abs(float(np.median(src["mag_cal"][bright] - ref[bright]))) < 0.01


def test_a_catalog_of_another_field_fails_with_diagnostics() -> None:
    exp, _ = _exposure()
    elsewhere = Sky.random(900, ra0=151.0, half_width_deg=0.035, seed=9)
    with pytest.raises(AstrometryFitError) as info:
        characterize(exp, elsewhere.refcat())
    assert "n_refs_in_footprint" in info.value.diagnostics
    assert "diagnostics" in str(info.value)


def test_psf_model_shifts_preserve_flux_and_move_the_centroid() -> None:
    psf = PsfModel.gaussian(2.0, half=10)
    imgs = psf.images_at(np.array([0.0, 0.3, -0.45]), np.array([0.0, -0.2, 0.4]))
    assert imgs.shape == (3, 21, 21)
    np.testing.assert_allclose(imgs.sum(axis=(1, 2)), 1.0, atol=2e-3)
    c = np.arange(-10, 11)
    mx = (imgs * c[None, None, :]).sum(axis=(1, 2)) / imgs.sum(axis=(1, 2))
    np.testing.assert_allclose(mx, [0.0, 0.3, -0.45], atol=0.01)
    assert abs(psf.sigma - 2.0) < 0.01
    assert CharacterizeConfig().detection_nsigma == 5.0
    assert abs(njy_per_count(31.4) - 1.0) < 1e-12
