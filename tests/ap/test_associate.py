"""Association (one-to-one, new objects, summaries), forced photometry and alert cutouts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from ap_sim import make_wcs

from nightshift.ap import (
    MaskPlane,
    PsfModel,
    apdb_rows,
    associate,
    cutout_size,
    forced_photometry,
    make_cutouts,
)
from nightshift.apdb import apdb_tables, make_source_ids
from nightshift.butler.formatters import Exposure

ARCSEC = 1 / 3600.0


def _sources(ra, dec, visit=7, detector=3, flux=None, err=None, band="r", mjd=60001.0):
    n = len(ra)
    return apdb_rows("DiaSource", n, {
        "diaSourceId": make_source_ids(visit, detector, np.arange(n)), "visit": visit, "detector": detector,
        "midpointMjdTai": mjd, "ra": ra, "dec": dec, "x": np.zeros(n), "y": np.zeros(n),
        "psfFlux": np.full(n, 1000.0) if flux is None else flux, "psfFluxErr": np.full(n, 100.0) if err is None
        else err, "band": band, "timeProcessedMjdTai": mjd, "bboxSize": np.full(n, 40),
    })


def _objects(ra, dec, ids):
    return apdb_rows("DiaObject", len(ra), {"diaObjectId": ids, "ra": ra, "dec": dec,
                                             "validityStartMjdTai": 60000.0, "nDiaSources": 1})


def test_matches_are_one_to_one_and_unmatched_sources_become_objects_with_their_ids() -> None:
    rng = np.random.default_rng(1)
    ora = 150 + rng.uniform(0, 0.05, 60)
    odec = 2 + rng.uniform(0, 0.05, 60)
    objs = _objects(ora, odec, np.arange(1000, 1060))
    # 40 sources 0.2" from objects 0..39; 2 sources 0.3" and 0.6" from object 50; 5 far from everything
    sra = np.r_[ora[:40] + 0.2 * ARCSEC, ora[50] + 0.3 * ARCSEC, ora[50] - 0.6 * ARCSEC, 151 + np.arange(5) * 0.01]
    sdec = np.r_[odec[:40], odec[50], odec[50], np.full(5, 2.5)]
    src = _sources(sra, sdec)
    res = associate(src, objs, radius_arcsec=1.0)
    oid = res.sources["diaObjectId"].to_numpy()
    np.testing.assert_array_equal(oid[:40], np.arange(1000, 1040))
    assert oid[40] == 1050  # the closer of the two takes the object
    sid = src["diaSourceId"].to_numpy()
    assert oid[41] == sid[41]  # the other starts a new object with its own (deterministic) id
    np.testing.assert_array_equal(oid[42:], sid[42:])
    # one-to-one: no object id twice
    assert len(set(oid.tolist())) == len(oid)
    assert res.diagnostics["n_matched"] == 41 and res.diagnostics["n_new"] == 6
    assert set(res.objects["diaObjectId"].to_pylist()) == set(oid.tolist())
    assert res.objects.schema.names == [c for c in apdb_tables()["DiaObject"].names
                                        if c not in ("validityStartMjdTai", "validityEndMjdTai")]


def test_the_hungarian_assignment_minimises_total_distance() -> None:
    # object A at 0", B at 1.0"; source 1 at 0.45" (nearest A), source 2 at -0.3" (nearest A too).
    # Greedy by source order gives s1->A, s2->none; the optimum is s2->A, s1->B.
    objs = _objects(np.array([150.0, 150.0 + 1.0 * ARCSEC]), np.array([2.0, 2.0]), np.array([1, 2]))
    src = _sources(np.array([150.0 + 0.45 * ARCSEC, 150.0 - 0.3 * ARCSEC]), np.array([2.0, 2.0]))
    oid = associate(src, objs, radius_arcsec=0.8).sources["diaObjectId"].to_numpy()
    assert list(oid) == [2, 1]


def test_summary_statistics_combine_history_and_new_sources() -> None:
    objs = _objects(np.array([150.0]), np.array([2.0]), np.array([42]))
    hist = _sources(np.array([150.0, 150.0]), np.array([2.0, 2.0]), visit=5, flux=np.array([100.0, 300.0]),
                    err=np.array([10.0, 20.0]), mjd=59990.0)
    hist = hist.set_column(3, hist.schema.field(3), pa.array([42, 42], pa.int64()))
    src = _sources(np.array([150.0 + 0.1 * ARCSEC]), np.array([2.0]), flux=np.array([200.0]),
                   err=np.array([10.0]), mjd=60001.0)
    g_src = _sources(np.array([151.0]), np.array([2.0]), visit=8, band="g")
    res = associate(pa.concat_tables([src, g_src]), objs, hist)
    row = res.objects.filter(pa.compute.equal(res.objects["diaObjectId"], 42)).to_pylist()[0]
    w = np.array([1 / 100, 1 / 400, 1 / 100])
    f = np.array([100.0, 300.0, 200.0])
    assert row["nDiaSources"] == 3 and row["r_psfFluxNdata"] == 3
    assert abs(row["r_psfFluxMean"] - (w * f).sum() / w.sum()) < 1e-3
    assert abs(row["r_psfFluxMeanErr"] - 1 / np.sqrt(w.sum())) < 1e-4
    assert row["r_psfFluxMin"] == 100.0 and row["r_psfFluxMax"] == 300.0
    assert abs(row["r_psfFluxSigma"] - np.std(f)) < 1e-3  # population standard deviation
    assert row["g_psfFluxNdata"] == 0
    assert row["firstDiaSourceMjdTai"] == 59990.0 and row["lastDiaSourceMjdTai"] == 60001.0
    assert abs(row["ra"] - 150.0) < 0.1 * ARCSEC


def test_forced_photometry_measures_known_objects_on_both_images() -> None:
    shape = (200, 200)
    wcs = make_wcs(shape)
    psf = PsfModel.gaussian(2.0, half=10)
    diff = np.zeros(shape, np.float32)
    calexp = np.zeros(shape, np.float32)
    from ap_sim import gaussian_stamp_add

    gaussian_stamp_add(diff, np.array([50.3]), np.array([60.7]), np.array([500.0]), 2.0)
    gaussian_stamp_add(calexp, np.array([50.3]), np.array([60.7]), np.array([1500.0]), 2.0)
    var = np.full(shape, 4.0, np.float32)
    d = Exposure(image=diff, variance=var, wcs=wcs)
    d.metadata["NJYPERCT"] = 2.0
    c = Exposure(image=calexp, variance=var, wcs=wcs)
    ra, dec = wcs.all_pix2world([50.3, 150.0, 500.0], [60.7, 20.0, 20.0], 0)
    objs = _objects(ra, dec, np.array([9, 5, 3]))
    t = forced_photometry(objs, d, c, psf, visit=11, detector=2, midpoint_mjd=60002.0, band="i")
    assert t.schema.names == list(apdb_tables()["DiaForcedSource"].names)
    rows = {r["diaObjectId"]: r for r in t.to_pylist()}
    assert set(rows) == {5, 9}  # object 3 is off the detector
    assert abs(rows[9]["psfFlux"] - 1000.0) < 5 and abs(rows[9]["scienceFlux"] - 3000.0) < 10
    assert abs(rows[5]["psfFlux"]) < 3 * rows[5]["psfFluxErr"]


def test_cutouts_are_sized_from_the_footprint_and_carry_planes_wcs_and_psf() -> None:
    shape = (300, 300)
    wcs = make_wcs(shape)
    rng = np.random.default_rng(0)
    img = rng.normal(0, 1, shape).astype(np.float32)
    exp = Exposure(image=img, variance=np.ones(shape, np.float32), wcs=wcs, psf=PsfModel.gaussian(2.0).kernel)
    src = apdb_rows("DiaSource", 3, {
        "diaSourceId": np.array([1, 2, 3]), "visit": 1, "detector": 0, "midpointMjdTai": 60000.0,
        "ra": 0.0, "dec": 0.0, "x": np.array([150.2, 5.0, 100.0]), "y": np.array([100.7, 290.0, 100.0]),
        "timeProcessedMjdTai": 60000.0, "bboxSize": np.array([12, 64, 500]),
    })
    cuts = make_cutouts(src, exp, exp, exp)
    assert [c.difference.image.shape[0] for c in cuts] == [30, 64, 102]
    assert cutout_size(12) == 30 and cutout_size(500) == 102
    c0 = cuts[0].science
    x0, y0 = c0.origin
    np.testing.assert_array_equal(c0.image, img[y0:y0 + 30, x0:x0 + 30])
    # the stamp WCS gives the same sky position as the parent's for the same pixel
    ra_p, dec_p = wcs.all_pix2world(150.2, 100.7, 0)
    ra_c, dec_c = c0.wcs.all_pix2world(150.2 - x0, 100.7 - y0, 0)
    assert abs(ra_p - ra_c) < 1e-9 and abs(dec_p - dec_c) < 1e-9
    assert c0.psf is not None and abs(c0.psf.sum() - 1) < 1e-5
    # off the edge: padded with NO_DATA, size kept
    c1 = cuts[1].difference
    assert c1.image.shape == (64, 64) and (c1.mask[-1] & MaskPlane.NO_DATA).all()
    assert cuts[2].template.variance.dtype == np.float32
    only = make_cutouts(src, exp, exp, exp, ids=np.array([2]))
    assert [c.dia_source_id for c in only] == [2]
