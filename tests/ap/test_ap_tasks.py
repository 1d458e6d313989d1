"""The AP PipelineTasks run through the pipeline framework: butler I/O, pre-flight, provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from ap_sim import Sky, add_cosmic_rays, make_wcs, render, to_raw

from nightshift.ap import DetectorGeometry, PsfModel, apdb_rows
from nightshift.apdb import split_source_ids
from nightshift.butler import DatasetType
from nightshift.butler._butler import Butler
from nightshift.butler.formatters import Exposure
from nightshift.pipe import DaskExecutor, InProcessExecutor, MultiProcessExecutor, Pipeline, build_quantum_graph

INSTRUMENT = "Cam"
SHAPE = (512, 512)
AMPS = (4, 2)
AMP_SHAPE = (256, 128)
TRANSIENT = (300.4, 200.6, 40000.0)  # x, y, electrons (visit 1 only)


def _pipeline() -> Pipeline:
    pipe = Pipeline("Alert Production (tests)")
    pipe.add_task("isr", "nightshift.ap:IsrTask", config={"amp_grid": list(AMPS), "amp_shape": list(AMP_SHAPE),
                                                           "overscan": 16, "saturation": 1e9, "cr_psf_sigma": 1.2})
    pipe.add_task("characterize", "nightshift.ap:CharacterizeTask")
    pipe.add_task("subtract", "nightshift.ap:SubtractTask")
    pipe.add_task("detect", "nightshift.ap:DetectAndMeasureTask")
    pipe.add_task("associate", "nightshift.ap:AssociateDiaTask")
    return pipe


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                                       scheduler_port=0)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def ap_repo(tmp_path: Path):
    butler = Butler.create(tmp_path / "repo", datastore={"cls": "posix", "name": "posix", "root": "datastore",
                                                         "fsync": False})
    reg = butler.registry
    reg.insert_dimension_records("instrument", [{"name": INSTRUMENT, "visit_max": 10**6, "detector_max": 1000}])
    reg.insert_dimension_records("band", [{"name": "r"}], skip_existing=True)
    reg.insert_dimension_records("physical_filter", [{"instrument": INSTRUMENT, "name": "r_01", "band": "r"}])
    reg.insert_dimension_records("day_obs", [{"instrument": INSTRUMENT, "id": 20260101}])
    reg.insert_dimension_records("detector", [{"instrument": INSTRUMENT, "id": 5, "full_name": "D5",
                                               "purpose": "SCIENCE"}])
    reg.insert_dimension_records("visit", [{"instrument": INSTRUMENT, "id": v, "physical_filter": "r_01",
                                            "day_obs": 20260101, "seeing": 0.8} for v in (1, 2)])
    for dt in (DatasetType("raw", ["instrument", "visit", "detector"], "Exposure"),
               DatasetType("bias", ["instrument", "detector"], "NumpyArray"),  # registered, none in the repo:
               DatasetType("flat", ["instrument", "detector"], "NumpyArray"),  # the optional calibs are absent
               DatasetType("ap_refcat", ["instrument"], "AstropyTable"),
               DatasetType("ap_template", ["instrument"], "Exposure"),
               DatasetType("preloaded_dia_objects", ["instrument", "visit"], "ArrowTable"),
               DatasetType("preloaded_dia_sources", ["instrument", "visit"], "ArrowTable")):  # none: optional
        butler.register_dataset_type(dt)
    sky = Sky.random(600, half_width_deg=0.02, seed=8, mag_range=(16.5, 23.0))
    det = DetectorGeometry.grid(5, *AMPS, AMP_SHAPE, overscan=16, saturation=1e9)
    wcs = make_wcs(SHAPE)
    raws = []
    for v in (1, 2):
        extra = (np.array([TRANSIENT[0]]), np.array([TRANSIENT[1]]), np.array([TRANSIENT[2]])) if v == 1 else None
        img, _ = render(sky, wcs, SHAPE, psf_sigma=1.9, njy_per_e=2.0, sky_level=700.0, seed=v, extra=extra)
        add_cosmic_rays(img, 15, seed=v)
        exp = Exposure(image=to_raw(img, det, seed=v), wcs=make_wcs(SHAPE, shift=(6.0, -4.0), rotation_deg=0.02))
        exp.metadata["MJD-MID"] = 60000.0 + v
        exp.metadata["BAND"] = "r"
        raws.append((exp, {"instrument": INSTRUMENT, "visit": v, "detector": 5}))
    butler.put_many(raws, "raw", run="raw/all")
    twcs = make_wcs((560, 560), rotation_deg=0.2, shift=(4.2, 3.1))
    timg, _ = render(sky, twcs, (560, 560), psf_sigma=1.3, njy_per_e=1.0, sky_level=0.0, noise=False)
    timg += np.random.default_rng(0).normal(0, 6.0, timg.shape).astype(np.float32)
    template = Exposure(image=timg, variance=np.full(timg.shape, 36.0, np.float32), wcs=twcs,
                        psf=PsfModel.gaussian(1.3, half=12).kernel)
    template.metadata["NJYPERCT"] = 1.0
    butler.put(template, "ap_template", {"instrument": INSTRUMENT}, run="ap/inputs")
    butler.put(sky.refcat(), "ap_refcat", {"instrument": INSTRUMENT}, run="ap/inputs")
    # the field's known DiaObject: at the transient's position (from an earlier night)
    ra, dec = wcs.all_pix2world([TRANSIENT[0]], [TRANSIENT[1]], 0)
    objs = apdb_rows("DiaObject", 1, {"diaObjectId": [777], "ra": ra, "dec": dec, "validityStartMjdTai": 59000.0,
                                      "nDiaSources": 3})
    for v in (1, 2):
        butler.put(objs, "preloaded_dia_objects", {"instrument": INSTRUMENT, "visit": v}, run="ap/inputs")
    yield butler
    butler.close()


# the parallel executors run the whole AP pipeline YAML in tests/ap/test_ap_pipeline.py
@pytest.mark.parametrize("executor", ["inprocess"])
def test_ap_pipeline_runs_through_the_framework(ap_repo: Butler, executor: str, request: pytest.FixtureRequest
                                                ) -> None:
    run = f"u/ap/{executor}"
    graph = build_quantum_graph(ap_repo.registry, _pipeline(), collections=["raw/all", "ap/inputs"], run=run)
    assert graph.counts() == {"isr": 2, "characterize": 2, "subtract": 2, "detect": 2, "associate": 2}
    if executor == "inprocess":
        ex = InProcessExecutor(ap_repo.root)
    elif executor == "multiprocess":
        ex = MultiProcessExecutor(ap_repo.root, processes=2)
    else:
        ex = DaskExecutor(ap_repo.root, client=request.getfixturevalue("dask_client"))
    ex.run(graph).raise_for_failures()
    with Butler(ap_repo.root, collections=[run]) as out:
        calexp = out.get("calexp", {"instrument": INSTRUMENT, "visit": 1, "detector": 5})
        assert calexp.wcs is not None and calexp.psf is not None and calexp.metadata["ASTRMS"] < 0.1
        assert abs(calexp.metadata["NJYPERCT"] - 2.0) < 0.05
        assert calexp.wcs.sip is not None  # the fitted SIP distortion survives the FITS round trip
        src = out.get("dia_source", {"instrument": INSTRUMENT, "visit": 1, "detector": 5})
        x, y = src["x"].to_numpy(), src["y"].to_numpy()
        j = int(np.argmin(np.hypot(x - TRANSIENT[0], y - TRANSIENT[1])))
        assert np.hypot(x[j] - TRANSIENT[0], y[j] - TRANSIENT[1]) < 0.5
        assert abs(src["psfFlux"][j].as_py() / (2 * TRANSIENT[2]) - 1) < 0.1
        assert src["diaObjectId"][j].as_py() == 777  # associated with the preloaded object
        v, d, _ = split_source_ids(src["diaSourceId"].to_numpy())
        assert set(v) == {1} and set(d) == {5}
        forced = out.get("dia_forced_source", {"instrument": INSTRUMENT, "visit": 2, "detector": 5})
        assert forced["diaObjectId"].to_pylist() == [777]
        assert abs(forced["psfFlux"][0].as_py()) < 5 * forced["psfFluxErr"][0].as_py()  # not there in visit 2
        objs = out.get("dia_object", {"instrument": INSTRUMENT, "visit": 1, "detector": 5})
        assert 777 in objs["diaObjectId"].to_pylist()
        prov = out.registry.get_provenance(out.find("dia_source", {"instrument": INSTRUMENT, "visit": 1,
                                                                   "detector": 5}))
        assert {r.dataset_type.name for r in prov.actual_inputs} == {"dia_source_unassociated", "difference",
                                                                      "calexp", "preloaded_dia_objects"}
        assert isinstance(src, pa.Table)


def test_a_missing_template_is_planned_not_dropped(ap_repo: Butler) -> None:
    """Without a template the subtraction quanta are still planned (they fail when run, naming the dataset:
    tests/ap/test_ap_pipeline.py), so a missing template is a visible failure, not a silent drop."""
    ref = ap_repo.find("ap_template", {"instrument": INSTRUMENT}, collections=["ap/inputs"])
    ap_repo.remove_datasets([ref])
    graph = build_quantum_graph(ap_repo.registry, _pipeline(), collections=["raw/all", "ap/inputs"],
                                run="u/ap/missing")
    assert graph.counts() == {"isr": 2, "characterize": 2, "subtract": 2, "detect": 2, "associate": 2}
    assert not graph.metadata.get("dropped")
