"""DIA detection and measurement: injected transients recovered, negatives, dipoles, flags, artefact cuts."""

from __future__ import annotations

import numpy as np
from ap_sim import make_pair

from nightshift.ap import (
    RELIABILITY_VERSION,
    DiaDetectConfig,
    MaskPlane,
    PsfModel,
    detect_and_measure,
    prepare_template,
    subtract_images,
)
from nightshift.apdb import apdb_tables, split_source_ids

SHAPE = (512, 512)
PSF = PsfModel.gaussian(2.0, half=10)


def _difference(extra=None, template_extra=None, seed=11, sci_mask_edit=None):
    sky, sci, tmpl = make_pair(SHAPE, seed=seed, extra=extra, template_extra=template_extra)
    if sci_mask_edit is not None:
        sci_mask_edit(sci)
    warped = prepare_template(tmpl, sci)
    x, y = sci.wcs.all_world2pix(sky.ra, sky.dec, 0)
    res = subtract_images(sci, warped, PSF, PsfModel.gaussian(1.3), x, y, sky.flux_njy)
    return sci, res


def _noise_flux() -> float:
    # PSF-flux error of a point source on the sky background (variance 600 + 25 + template), in e-
    return float(np.sqrt((625.0 + 60.0 / 4) * 4 * np.pi * 2.0**2))


def test_injected_transients_are_recovered_with_flux_position_and_ids() -> None:
    rng = np.random.default_rng(3)
    n = 12
    tx = rng.uniform(40, 470, n)
    ty = rng.uniform(40, 470, n)
    snr_true = np.linspace(10, 60, n)
    tf = snr_true * _noise_flux()
    sci, res = _difference(extra=(tx, ty, tf))
    out = detect_and_measure(res.difference, PSF, visit=4242, detector=17, midpoint_mjd=60000.5, band="r",
                             science=sci, template=res.matched_template)
    t = out.table.to_pydict()
    assert out.table.schema.names == list(apdb_tables()["DiaSource"].names)
    x, y = np.array(t["x"]), np.array(t["y"])
    found = 0
    for xi, yi, fi, si in zip(tx, ty, tf, snr_true, strict=True):
        d = np.hypot(x - xi, y - yi)
        j = int(np.argmin(d))
        if d[j] < 1.0:
            found += 1
            # flux in nJy (2 nJy per e-) within 4 sigma, centroid within 3 sigma
            assert abs(t["psfFlux"][j] - 2 * fi) < 4 * t["psfFluxErr"][j]
            assert d[j] < 3 * np.sqrt(2) * 2.0 / si + 0.05
            assert not t["isNegative"][j]
            assert t["reliability"][j] > 0.5
            # science − matched template at the same place is the difference flux
            sci_minus_tmpl = t["scienceFlux"][j] - t["templateFlux"][j]
            assert abs(sci_minus_tmpl - t["psfFlux"][j]) < 5 * t["scienceFluxErr"][j]
    assert found == n
    # deterministic ids: (visit, detector, index)
    v, det, num = split_source_ids(np.array(t["diaSourceId"]))
    assert (v == 4242).all() and (det == 17).all() and sorted(num) == list(range(len(x)))
    assert set(t["reliabilityVersion"]) == {RELIABILITY_VERSION}
    # few spurious detections away from the injections
    far = np.array([np.min(np.hypot(tx - a, ty - b)) > 5 for a, b in zip(x, y, strict=True)])
    assert far.sum() <= 3
    # a rerun gives the same rows
    again = detect_and_measure(res.difference, PSF, visit=4242, detector=17, midpoint_mjd=60000.5, band="r",
                               science=sci, template=res.matched_template)
    for col in out.table.schema.names:  # identical, NaN included
        np.testing.assert_array_equal(again.table[col].to_numpy(zero_copy_only=False),
                                      out.table[col].to_numpy(zero_copy_only=False))


def test_a_source_that_faded_is_a_negative_detection() -> None:
    # a source present in the template only (position in template pixels)
    sci, res = _difference(template_extra=(np.array([262.6]), np.array([219.4]),
                                           np.array([60000.0])))
    out = detect_and_measure(res.difference, PSF, visit=1, detector=0, midpoint_mjd=60000.0)
    t = out.table.to_pydict()
    neg = [i for i, s in enumerate(t["isNegative"]) if s]
    assert len(neg) >= 1
    j = neg[int(np.argmax([abs(t["psfFlux"][i]) for i in neg]))]
    assert t["psfFlux"][j] < 0 and t["snr"][j] > 20


def test_a_misregistered_pair_is_one_dipole() -> None:
    # +F at one position, -F 2.5 px away, directly in the difference image
    sci, res = _difference()
    from ap_sim import gaussian_stamp_add

    d = res.difference
    gaussian_stamp_add(d.image, np.array([300.0]), np.array([200.0]), np.array([30000.0]), 2.0)
    gaussian_stamp_add(d.image, np.array([302.5]), np.array([200.0]), np.array([-28000.0]), 2.0)
    out = detect_and_measure(d, PSF, visit=1, detector=0, midpoint_mjd=60000.0)
    t = out.table.to_pydict()
    near = [i for i in range(len(t["x"])) if np.hypot(t["x"][i] - 301.25, t["y"][i] - 200) < 3]
    assert len(near) == 1
    j = near[0]
    assert t["isDipole"][j] and t["dipoleFitAttempted"][j]
    assert abs(t["dipoleLength"][j] / 0.2 - 2.5) < 0.3  # arcsec -> pixels
    assert abs(t["dipoleMeanFlux"][j] - 2 * 29000.0) / (2 * 29000.0) < 0.1
    assert t["reliability"][j] < 0.5


def test_artefacts_are_cut_and_counted() -> None:
    def edit(sci):
        # a cosmic-ray masked pixel at a transient's centre, a bad column through another, a trail
        sci.mask[150, 100] |= int(MaskPlane.CR)
        sci.mask[:, 400] |= int(MaskPlane.BAD)
        from ap_sim import gaussian_stamp_add

        xs = np.linspace(60, 200, 120)
        gaussian_stamp_add(sci.image, xs, 0.5 * xs + 300, np.full(xs.size, 800.0), 2.0)

    extra = (np.array([100.0, 400.0, 250.0, 3.0]), np.array([150.0, 300.0, 100.0, 250.0]),
             np.array([20000.0, 20000.0, 20000.0, 20000.0]))
    sci, res = _difference(extra=extra, sci_mask_edit=edit)
    out = detect_and_measure(res.difference, PSF, visit=1, detector=0, midpoint_mjd=60000.0)
    t = out.table.to_pydict()
    x, y = np.array(t["x"]), np.array(t["y"])
    assert out.cut_counts["cosmic_ray"] >= 1 and out.cut_counts["bad_pixel"] >= 1
    assert out.cut_counts["edge"] >= 1 and out.cut_counts["trail"] >= 1
    assert not (np.hypot(x - 100, y - 150) < 3).any()   # CR centre: cut
    assert not (np.hypot(x - 400, y - 300) < 3).any()   # bad column: cut
    assert not (np.hypot(x - 3, y - 250) < 3).any()     # edge: cut
    assert (np.hypot(x - 250, y - 100) < 1).sum() == 1  # the clean one stays
    assert not ((x > 60) & (x < 200) & (np.abs(y - (0.5 * x + 300)) < 3)).any()  # trail: cut
    kept = detect_and_measure(res.difference, PSF, visit=1, detector=0, midpoint_mjd=60000.0,
                              config=DiaDetectConfig(cut_artefacts=False)).table.to_pydict()
    k = int(np.argmin(np.hypot(np.array(kept["x"]) - 100, np.array(kept["y"]) - 150)))
    assert kept["pixelFlags_crCenter"][k] and kept["pixelFlags"][k]


def test_an_empty_difference_gives_zero_sources() -> None:
    sci, res = _difference()
    d = res.difference
    d.mask[:] |= int(MaskPlane.NO_DATA)
    d.image[:] = 0
    out = detect_and_measure(d, PSF, visit=1, detector=0, midpoint_mjd=60000.0)
    assert out.table.num_rows == 0
    assert out.table.schema.names == list(apdb_tables()["DiaSource"].names)
