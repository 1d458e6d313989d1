"""The camera simulator: determinism, what a raw contains, truth, calibrations, templates, a night end to end."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from nightshift.butler import Butler
from nightshift.obs import ingest_raws, lsstcam_like, small_test_camera
from nightshift.obs.sim import (
    Observation,
    certify_master_calibs,
    make_templates,
    plan_night,
    render_detector,
    sky_catalog,
    write_night,
)
from nightshift.pipe import (
    Input,
    Output,
    Pipeline,
    PipelineTask,
    PipelineTaskConnections,
    PrerequisiteInput,
    build_quantum_graph,
)
from nightshift.sky import HealpixSkyMap, point_pixel

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "events"


def _obs(**kw: object) -> Observation:
    fields: dict = {"ra": 150.0, "dec": 2.0, "sky_angle": 15.0, "seeing": 0.9}
    fields.update(kw)
    return Observation("TestCam", 20261206, int(fields.pop("seq", 3)), "2026-12-07T03:00:00", **fields)


def test_rendering_is_deterministic_in_the_seed() -> None:
    cam = small_test_camera(64)
    a, b = render_detector(_obs(), cam, 1, seed=5), render_detector(_obs(), cam, 1, seed=5)
    c = render_detector(_obs(), cam, 1, seed=6)
    assert np.array_equal(a.adu, b.adu) and a.truth == b.truth
    assert not np.array_equal(a.adu, c.adu)


def test_raw_has_bias_overscan_read_noise_and_sky_per_amplifier() -> None:
    cam = lsstcam_like(256)
    det = cam[94]
    raw = render_detector(_obs(seq=4), cam, 94, seed=1).adu
    assert raw.shape == det.raw_shape and raw.dtype == np.uint16
    for amp in det.amplifiers:
        ox0, oy0, ox1, oy1 = amp.raw_overscan_bbox
        over = raw[oy0:oy1, ox0:ox1].astype(float)
        assert over.mean() == pytest.approx(amp.bias_level, abs=1.0)
        assert over.std() == pytest.approx(amp.read_noise / amp.gain, rel=0.1)
        dx0, dy0, dx1, dy1 = amp.raw_data_bbox
        data = raw[dy0:dy1, dx0:dx1].astype(float)
        assert np.median(data) > amp.bias_level + 50  # sky (a few hundred e- per 3.2" pixel here)


def test_static_sky_is_the_same_in_every_visit_and_psf_follows_the_seeing() -> None:
    from astropy.wcs import WCS

    cam = lsstcam_like(512)
    cat = sky_catalog(2, 150.0, 2.0, 0.2)
    stars = np.flatnonzero(cat.kind == "star")
    peaks = []
    for seq, seeing, angle in ((1, 0.6, 15.0), (2, 1.6, 15.0), (3, 0.6, 40.0)):
        obs = _obs(seq=seq, seeing=seeing, sky_angle=angle)
        img = render_detector(obs, cam, 94, seed=2, keep_electrons=True).electrons
        wcs = WCS(cam.wcs_header(94, obs.ra, obs.dec, obs.sky_angle))
        x, y = wcs.all_world2pix(cat.ra[stars], cat.dec[stars], 0)
        on = (x > 20) & (x < 492) & (y > 20) & (y < 492)
        assert on.sum() >= 5 and img is not None
        brightest = stars[on][np.argmin(cat.mag_r[stars][on])]
        i = int(np.flatnonzero(stars == brightest)[0])
        peaks.append((int(cat.id[brightest]), img[int(round(y[i])), int(round(x[i]))] / np.median(img)))
    assert peaks[0][0] == peaks[1][0]  # the same object at its catalog position in both visits
    assert peaks[0][1] > peaks[1][1] > 1.1  # visible in both (noise-free electrons); the sharper PSF peaks higher
    assert peaks[2][1] > 1.1  # and where a rotated visit puts it


def test_transients_are_injected_where_the_truth_says() -> None:
    cam = lsstcam_like(512)
    hits = []
    for det in (94, 95, 103):
        r = render_detector(_obs(seq=7), cam, det, seed=3, keep_electrons=True)
        for row in r.truth:
            assert 0 <= row["x"] < 512 and 0 <= row["y"] < 512 and row["detector"] == det
            if row["flux_e"] > 20_000:
                assert r.electrons is not None
                yi, xi = int(round(row["y"])), int(round(row["x"]))
                hits.append(r.electrons[yi, xi] - np.median(r.electrons))
                assert row["snr_diff"] > 5
    assert hits and min(hits) > 100


def test_cosmic_rays_and_satellite_trails(monkeypatch: pytest.MonkeyPatch) -> None:
    from nightshift.obs.sim import _render

    cam = lsstcam_like(64)
    assert sum(render_detector(_obs(seq=8, exposure_time=300.0), cam, d, seed=1).cosmic_rays for d in range(3)) > 0
    monkeypatch.setattr(_render, "TRAIL_PROBABILITY", 1.0)
    obs = _obs(seq=9)

    def crosses(det: int) -> bool:  # the trail of this visit, drawn alone on an empty detector
        rng = np.random.default_rng([4, obs.exposure_id, 999])
        rng.random()
        return _render._trail(np.zeros((64, 64), np.float32), cam, det, rng, 1.0)

    crossed = [d for d in range(189) if crosses(d)]
    assert 0 < len(crossed) < 189  # one straight line across the focal plane
    assert render_detector(obs, cam, crossed[0], seed=4).satellite
    assert not render_detector(obs, cam, next(d for d in range(189) if d not in crossed), seed=4).satellite


def test_a_night_writes_raws_truth_and_next_visits_and_ingests(tmp_path: Path) -> None:
    plan = plan_night(4, instrument="TestCam", seed=1)
    assert [o.exposure_id for o in plan] == [2026120600001 + i for i in range(4)]
    assert len({(o.ra, o.dec) for o in plan}) == 2  # two fields, each revisited
    assert len({o.seeing for o in plan}) == 4 and len({o.physical_filter for o in plan}) == 2
    result = write_night(tmp_path / "night", plan, [0, 1, 2, 3], seed=1, detector_size=64)
    assert len(result["raws"]) == 16
    schema = fastavro.parse_schema(json.loads((SCHEMAS / "nextVisit.v1.avsc").read_text()))
    payloads = [json.loads(line) for line in Path(result["next_visit"]).read_text().splitlines()]
    assert [p["visit"] for p in payloads] == [o.exposure_id for o in plan]
    for p in payloads:
        assert fastavro.validation.validate(p, schema)
    truth = pq.read_table(result["truth"]).to_pylist()
    assert all(r["exposure"] in {o.exposure_id for o in plan} for r in truth)
    with Butler.create(tmp_path / "repo") as butler:
        report = ingest_raws(butler, [tmp_path / "night" / "raw"], processes=1)
        assert report.ok and len(report.ingested) == 16, report.skipped
        visits = {v.id: v for v in butler.registry.query_dimension_records("visit")}
        assert {v: round(r.seeing, 6) for v, r in visits.items()} == {o.exposure_id: round(o.seeing, 6) for o in plan}


class IsrConnections(PipelineTaskConnections, dimensions=("instrument", "exposure", "detector")):
    raw = Input("raw", "Exposure", ("instrument", "exposure", "detector"))
    bias = PrerequisiteInput("bias", "Exposure", ("instrument", "detector"))
    out = Output("post_isr", "Exposure", ("instrument", "exposure", "detector"))


class IsrTask(PipelineTask):
    ConnectionsClass = IsrConnections


def test_simulated_night_with_certified_calibrations_preflights(tmp_path: Path) -> None:
    """The simulator's raws and master calibrations are what pre-flight needs (bias found by validity time)."""
    plan = plan_night(2, instrument="TestCam", seed=2)
    write_night(tmp_path / "night", plan, [0, 1], seed=2, detector_size=64)
    with Butler.create(tmp_path / "repo") as butler:
        assert ingest_raws(butler, [tmp_path / "night" / "raw"], processes=1).ok
        refs = certify_master_calibs(butler, "TestCam", [0, 1], ["g_6"], begin="2026-11-01", end="2027-01-01",
                                     detector_size=64, seed=2)
        assert len(refs) == 4
        pipe = Pipeline()
        pipe.add_task("isr", IsrTask)
        graph = build_quantum_graph(butler.registry, pipe, collections=["TestCam/raw/all", "TestCam/calib"],
                                    run="u/sim/isr")
        assert graph.counts() == {"isr": 4}
        biases = {r.id for r in refs if r.dataset_type.name == "bias"}
        assert all(q.inputs["bias"][0].id in biases for q in graph.quanta)
        assert {q.inputs["bias"][0].data_id["detector"] == q.data_id["detector"] for q in graph.quanta} == {True}


def test_templates_per_patch_have_wcs_psf_and_variance(tmp_path: Path) -> None:
    skymap = HealpixSkyMap("sim_sky", tract_order=3, patch_levels=4, tracts=(point_pixel(150.0, 2.0, 3),))
    (tract,) = list(skymap)
    patch = tract.patches[0]
    with Butler.create(tmp_path / "repo") as butler:
        (ref,) = make_templates(butler, skymap, [(tract.id, patch.id)], ["r"], seed=0, pixel_scale=2.0)
        tmpl = butler.get(ref)
    assert tmpl.wcs is not None and tmpl.psf is not None and tmpl.psf.sum() == pytest.approx(1.0, abs=1e-3)
    assert tmpl.image.shape[0] > 100 and float(np.median(tmpl.variance)) > 0
    assert ref.data_id["band"] == "r" and ref.dataset_type.name == "template_coadd"
