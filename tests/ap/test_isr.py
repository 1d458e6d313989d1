"""ISR on synthetic raws: overscan, gain, bias, flat, masks, variance, cosmic rays, corrupt amplifiers."""

from __future__ import annotations

import numpy as np
import pytest
from ap_sim import Sky, add_cosmic_rays, make_wcs, render, to_raw

from nightshift.ap import ApInputError, DetectorGeometry, IsrConfig, MaskPlane, find_cosmic_rays, run_isr

SHAPE = (256, 512)


def _detector() -> DetectorGeometry:
    return DetectorGeometry.grid(7, 4, 2, (128, 128), overscan=16, gain=[1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.3, 0.8],
                                 read_noise=5.0, saturation=60000.0)


def _truth(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    sky = Sky.random(150, half_width_deg=0.02, seed=seed)
    return render(sky, make_wcs(SHAPE), SHAPE, psf_sigma=2.0, njy_per_e=1.0, sky_level=500.0, seed=seed)


def test_overscan_gain_and_assembly_recover_the_electron_image() -> None:
    det = _detector()
    img, _ = _truth()
    raw = to_raw(img, det, read_noise_adu=0.0)
    out = run_isr(raw, det, config=IsrConfig(do_cosmic_rays=False)).exposure
    # overscan has a row-dependent drift: row medians subtract it exactly (noise-free overscan here)
    np.testing.assert_allclose(out.image, img, atol=1e-2)
    assert out.image.dtype == np.float32


def test_bias_and_flat_are_applied_and_variance_follows_poisson_plus_read_noise() -> None:
    det = _detector()
    img, model = _truth()
    rng = np.random.default_rng(0)
    flat = (1 + 0.1 * rng.standard_normal(SHAPE) * 0.1).astype(np.float32)
    bias = np.full(SHAPE, 20.0, np.float32)
    raw = to_raw((img + bias) * flat, det, read_noise_adu=0.0)
    out = run_isr(raw, det, bias=bias * flat, flat=flat, config=IsrConfig(do_cosmic_rays=False)).exposure
    np.testing.assert_allclose(out.image, img, rtol=1e-4, atol=0.05)
    # residual from the noiseless model, normalised by the variance plane, has unit rms
    pull = (out.image - model) / np.sqrt(out.variance)
    assert abs(float(np.std(pull)) - 1.0) < 0.05


def test_saturation_and_defects_are_masked() -> None:
    det = _detector()
    img, _ = _truth()
    img[100:103, 200:203] = 2e5  # saturates after clipping in to_raw
    defects = np.zeros(SHAPE, bool)
    defects[:, 77] = True  # a bad column
    raw = to_raw(img, det)
    out = run_isr(raw, det, defects=defects, config=IsrConfig(do_cosmic_rays=False)).exposure
    assert (out.mask[100:103, 200:203] & MaskPlane.SAT).all()
    assert (out.mask[:, 77] & MaskPlane.BAD).all()
    assert not (out.mask[:, 78] & MaskPlane.BAD).any()


def test_cosmic_rays_are_found_and_stars_are_not() -> None:
    det = _detector()
    img, model = _truth()
    truth = add_cosmic_rays(img, 40, amplitude=2000.0)
    out = run_isr(to_raw(img, det), det, config=IsrConfig(cr_psf_sigma=1.2))
    cr = (out.exposure.mask & MaskPlane.CR) != 0
    assert cr[truth].mean() > 0.95  # nearly every CR pixel masked
    # no star centre is called a cosmic ray
    sky = Sky.random(150, half_width_deg=0.02, seed=2)
    x, y = make_wcs(SHAPE).all_world2pix(sky.ra, sky.dec, 0)
    inside = (x > 2) & (x < SHAPE[1] - 3) & (y > 2) & (y < SHAPE[0] - 3)
    xi, yi = np.round(x[inside]).astype(int), np.round(y[inside]).astype(int)
    near_cr = np.array([truth[max(0, b - 3):b + 4, max(0, a - 3):a + 4].any() for a, b in zip(xi, yi, strict=True)])
    assert not cr[yi[~near_cr], xi[~near_cr]].any()
    # the interpolated pixels are back near the model (residual within a few sigma of the local noise)
    resid = (out.exposure.image - model)[truth] / np.sqrt(model[truth])
    assert np.median(np.abs(resid)) < 3.0


def test_sharp_detector_rejects_a_psf_like_source() -> None:
    img = np.zeros((41, 41), np.float32)
    yy, xx = np.mgrid[:41, :41]
    img += (1e5 * np.exp(-0.5 * ((xx - 20.3) ** 2 + (yy - 19.8) ** 2) / 1.3**2)).astype(np.float32)
    var = np.full(img.shape, 25.0, np.float32) + np.clip(img, 0, None)
    assert not find_cosmic_rays(img, var, psf_sigma=1.3).any()
    img[5, 5] += 1000.0
    assert find_cosmic_rays(img, var, psf_sigma=1.3)[5, 5]


def test_a_corrupt_amplifier_is_masked_and_flagged_and_the_rest_goes_on() -> None:
    det = _detector()
    img, _ = _truth()
    raw = to_raw(img, det)
    x0, y0, x1, y1 = det.amplifiers[2].raw_data_bbox
    raw[y0:y1, x0:x1] = np.nan
    res = run_isr(raw, det, config=IsrConfig(do_cosmic_rays=False))
    assert set(res.bad_amplifiers) == {det.amplifiers[2].name}
    ax0, ay0, ax1, ay1 = det.amplifiers[2].bbox
    assert (res.exposure.mask[ay0:ay1, ax0:ax1] & MaskPlane.NO_DATA).all()
    ok = np.ones(SHAPE, bool)
    ok[ay0:ay1, ax0:ax1] = False
    assert np.isfinite(res.exposure.image).all()
    np.testing.assert_allclose(res.exposure.image[ok], img[ok], atol=20)


def test_a_calibration_of_the_wrong_shape_is_rejected_with_its_name() -> None:
    det = _detector()
    with pytest.raises(ApInputError, match="flat has shape"):
        run_isr(np.zeros((256, 576), np.float32), det, flat=np.ones((10, 10)))


def test_the_instrument_packages_detector_geometry_plugs_in() -> None:
    from nightshift.ap import Detector
    from nightshift.obs import small_test_camera

    det = next(iter(small_test_camera().detectors.values()))
    assert isinstance(det, Detector)  # structural: nightshift.obs.Detector satisfies the ISR protocol
    shape = (det.height, det.width)
    sky = Sky.random(60, half_width_deg=0.01, seed=4)
    img, _ = render(sky, make_wcs(shape), shape, psf_sigma=2.0, njy_per_e=1.0, sky_level=300.0, seed=4)
    raw = to_raw(img, det, overscan_level=800.0, read_noise_adu=0.0)
    out = run_isr(raw, det, config=IsrConfig(do_cosmic_rays=False)).exposure
    np.testing.assert_allclose(out.image, img, atol=1e-2)  # per-amplifier gains from the camera applied
