"""Warping and Alard–Lupton image subtraction on synthetic pairs with known truth."""

from __future__ import annotations

import numpy as np
from ap_sim import Sky, make_wcs, render

from nightshift.ap import (
    MaskPlane,
    PsfModel,
    SubtractConfig,
    pixel_mapping,
    prepare_template,
    subtract_images,
    warp_exposure,
)
from nightshift.butler.formatters import Exposure

SHAPE = (512, 512)


def _pair(seed: int = 11, sci_sigma: float = 2.0, tmpl_sigma: float = 1.3, extra=None, template_shift=(7.3, -4.6),
          rotation: float = 0.3):
    sky = Sky.random(500, half_width_deg=0.02, seed=seed, mag_range=(16.5, 23.0))
    wcs_s = make_wcs(SHAPE)
    sci, sci_model = render(sky, wcs_s, SHAPE, psf_sigma=sci_sigma, njy_per_e=2.0, sky_level=600.0, seed=seed,
                            extra=extra)
    sci -= 600.0
    sci_exp = Exposure(image=sci, variance=np.clip(sci_model, 1, None) + 25.0, wcs=wcs_s)
    sci_exp.metadata["NJYPERCT"] = 2.0
    # template: deeper (4x lower variance), sharper, on its own grid (shifted and rotated), in nJy
    tshape = (560, 560)
    wcs_t = make_wcs(tshape, rotation_deg=rotation, shift=template_shift)
    t_img, t_model = render(sky, wcs_t, tshape, psf_sigma=tmpl_sigma, njy_per_e=1.0, sky_level=0.0, seed=seed + 1,
                            noise=False)
    rng = np.random.default_rng(seed + 2)
    t_var = np.full(tshape, 60.0, np.float32)
    t_img = t_img + rng.normal(0, np.sqrt(60.0), tshape).astype(np.float32)
    tmpl = Exposure(image=t_img, variance=t_var, wcs=wcs_t)
    return sky, sci_exp, tmpl


def test_polynomial_pixel_mapping_matches_astropy() -> None:
    wcs_s, wcs_t = make_wcs(SHAPE), make_wcs((600, 600), rotation_deg=0.5, shift=(3.3, 1.1))
    m = pixel_mapping(wcs_s, SHAPE, wcs_t)
    xs, ys = m.evaluate()
    ra, dec = wcs_s.all_pix2world([10, 300, 500], [20, 250, 490], 0)
    tx, ty = wcs_t.all_world2pix(ra, dec, 0)
    np.testing.assert_allclose(xs[[20, 250, 490], [10, 300, 500]], tx, atol=1e-3)
    np.testing.assert_allclose(ys[[20, 250, 490], [10, 300, 500]], ty, atol=1e-3)


def test_warp_moves_stars_to_the_science_grid_and_masks_uncovered_pixels() -> None:
    sky, sci, tmpl = _pair(template_shift=(60.0, 0.0), rotation=0.0)
    w = warp_exposure(tmpl, sci.wcs, SHAPE)
    # the template reaches science column ~476 only: the columns beyond have no data
    nodata = (w.mask & MaskPlane.NO_DATA) != 0
    assert nodata[:, -30:].all() and not nodata[:, :470].any()
    # a bright star lands where the science WCS puts it
    x, y = sci.wcs.all_world2pix(sky.ra, sky.dec, 0)
    i = np.argmin(np.where((x > 20) & (x < 460) & (y > 20) & (y < 490), sky.mag, 99))
    cy, cx = int(round(y[i])), int(round(x[i]))
    st = w.image[cy - 5:cy + 6, cx - 5:cx + 6]
    yy, xx = np.mgrid[-5:6, -5:6]
    assert abs((st * xx).sum() / st.sum() - (x[i] - cx)) < 0.05
    assert abs((st * yy).sum() / st.sum() - (y[i] - cy)) < 0.05


def test_difference_is_consistent_with_noise_and_keeps_a_transient() -> None:
    # a transient of 20000 e- at a known position in the science image only
    tx, ty, tf = np.array([256.4]), np.array([300.7]), np.array([20000.0])
    sky, sci, tmpl = _pair(extra=(tx, ty, tf))
    warped = prepare_template(tmpl, sci)
    x, y = sci.wcs.all_world2pix(sky.ra, sky.dec, 0)
    res = subtract_images(sci, warped, PsfModel.gaussian(2.0), PsfModel.gaussian(1.3), x, y, sky.flux_njy)
    d = res.difference
    assert not res.diagnostics["fallback"] and res.diagnostics["n_stamps_used"] >= 20
    assert abs(res.kernel_sum - 1.0) < 0.01  # the template was scaled to science counts
    good = (d.mask & int(MaskPlane.unusable())) == 0
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    away = good & (np.hypot(xx - tx[0], yy - ty[0]) > 15)
    away[:20] = away[-20:] = False
    away[:, :20] = away[:, -20:] = False
    pull = d.image[away] / np.sqrt(d.variance[away])
    assert abs(float(np.mean(pull))) < 0.05
    assert 0.9 < float(np.std(pull)) < 1.15  # residual consistent with the propagated noise
    # the transient survives with its flux (sum over an aperture of radius 4 sigma)
    ap = np.hypot(xx - tx[0], yy - ty[0]) < 8
    assert abs(float(d.image[ap].sum()) / tf[0] - 1) < 0.05


def test_spatially_varying_kernel_beats_a_constant_one() -> None:
    # science PSF broadens across the detector: sigma 1.8 on the left, 2.4 on the right
    sky = Sky.random(700, half_width_deg=0.02, seed=21, mag_range=(16.5, 22.0))
    wcs = make_wcs(SHAPE)
    x, y = wcs.all_world2pix(sky.ra, sky.dec, 0)
    img = np.zeros(SHAPE, np.float32)
    from ap_sim import gaussian_stamp_add

    for xi, yi, fi in zip(x, y, sky.flux_njy / 2.0, strict=True):
        gaussian_stamp_add(img, np.array([xi]), np.array([yi]), np.array([fi]), 1.8 + 0.6 * np.clip(xi, 0, 511) / 511)
    rng = np.random.default_rng(0)
    var = np.clip(img, 0, None) + 400.0
    sci = Exposure(image=img + rng.normal(0, np.sqrt(var)).astype(np.float32), variance=var, wcs=wcs)
    sci.metadata["NJYPERCT"] = 2.0
    t = np.zeros(SHAPE, np.float32)
    from ap_sim import gaussian_stamp_add as add

    add(t, x, y, sky.flux_njy, 1.2)
    tmpl = Exposure(image=t, variance=np.full(SHAPE, 1.0, np.float32), wcs=wcs)
    warped = prepare_template(tmpl, sci)
    rms = {}
    for deg in (0, 2):
        r = subtract_images(sci, warped, PsfModel.gaussian(2.1), PsfModel.gaussian(1.2), x, y, sky.flux_njy,
                            SubtractConfig(spatial_degree=deg, n_patches=8))
        good = (r.difference.mask & int(MaskPlane.unusable())) == 0
        good[:25] = good[-25:] = False
        good[:, :25] = good[:, -25:] = False
        rms[deg] = float(np.std(r.difference.image[good] / np.sqrt(r.difference.variance[good])))
    assert rms[2] < rms[0]
    assert rms[2] < 1.2


def test_no_template_overlap_gives_an_empty_difference_not_an_error() -> None:
    sky, sci, tmpl = _pair()
    far = Exposure(image=tmpl.image, variance=tmpl.variance, wcs=make_wcs((560, 560), ra0=170.0))
    warped = prepare_template(far, sci)
    res = subtract_images(sci, warped, PsfModel.gaussian(2.0), PsfModel.gaussian(1.3), np.array([]), np.array([]),
                          np.array([]))
    assert res.diagnostics["empty"] and res.diagnostics["template_coverage"] == 0.0
    assert ((res.difference.mask & MaskPlane.NO_DATA) != 0).all()
