"""The prompt-processing planner against a real (SQLite) butler repository of simulated calibrations and templates.

Expectations come from :mod:`planner_support`: the simulator's per-detector WCS
and a brute-force overlap test against every patch of the sky map.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from planner_support import (
    CALIBRATED,
    INSTRUMENT,
    SKYMAP,
    Repo,
    Truth,
    make_repo,
    next_visit,
    truth,
)

from nightshift.ap import (
    AP_OUTPUT_DATASET_TYPES,
    MISSING_INPUTS_KEY,
    PlannerConfig,
    PlanningError,
    VisitPlanner,
    ap_quantum_id,
)
from nightshift.butler import Butler, deterministic_dataset_id
from nightshift.obs import UnknownDetectorError, UnknownFilterError, UnknownInstrumentError
from nightshift.sky import ConvexPolygon

CONFIG = PlannerConfig(skymap=SKYMAP, template_collections=("templates/planner",))


@pytest.fixture(scope="module")
def expected() -> dict[int, Truth]:
    return truth()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, expected: dict[int, Truth]) -> Repo:
    # templates under the centre detector only: the others are planned with the template missing
    return make_repo(tmp_path_factory.mktemp("planner") / "repo", sorted(expected[94].patches))


@pytest.fixture
def butler(repo: Repo) -> Iterator[Butler]:
    with Butler(repo.path) as b:
        yield b


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def test_planned_detectors_are_exactly_those_whose_simulator_footprint_overlaps_the_sky_map(
        butler: Butler, expected: dict[int, Truth]) -> None:
    plan = VisitPlanner(butler.registry, CONFIG).plan(next_visit())
    inside = {d for d, t in expected.items() if t.patches}
    assert 0 < len(inside) < 189  # the field straddles the sky map's edge
    assert {p.detector for p in plan.detectors} == inside
    assert set(plan.outside) == set(range(189)) - inside
    for p in plan.detectors:
        t = expected[p.detector]
        # the planner's footprint holds the sky positions of the corner pixels the simulator renders
        assert p.footprint.contains(t.corner_pixels[:, 0], t.corner_pixels[:, 1]).all()
        # and is the simulator's footprint: the same corners to far below a pixel (0.2")
        ours = _unit(*np.array(p.footprint.vertices).T)
        theirs = _unit(*np.array(t.footprint.vertices).T)
        chord = np.linalg.norm(ours[:, None, :] - theirs[None, :, :], axis=2).min(axis=1)  # radians
        assert np.degrees(chord.max()) * 3600 < 1e-3
        assert set(p.patches) == t.patches


def test_inputs_are_the_certified_calibrations_and_the_overlapping_templates(
        butler: Butler, repo: Repo, expected: dict[int, Truth]) -> None:
    plan = VisitPlanner(butler.registry, CONFIG, butler_repo=str(repo.path)).plan(next_visit())
    events = {e.detector: e for e in plan.events()}
    with_templates = 0
    for p in plan.detectors:
        d = p.detector
        templates = {repo.templates[tp] for tp in expected[d].patches if tp in repo.templates}
        want_missing = [n for n, ok in (("bias", d in CALIBRATED), ("flat", d in CALIBRATED),
                                        ("template_coadd", bool(templates))) if not ok]
        assert list(p.missing) == want_missing
        assert set(p.inputs.get("bias", ())) == ({repo.bias[d]} if d in CALIBRATED else set())
        assert set(p.inputs.get("flat", ())) == ({repo.flat[d]} if d in CALIBRATED else set())
        assert set(p.inputs.get("template_coadd", ())) == templates
        with_templates += bool(templates)
        event = events[d]
        assert set(event.inputs) == {r.id for refs in p.inputs.values() for r in refs}
        assert event.data_id.get(MISSING_INPUTS_KEY) == (",".join(want_missing) or None)
        assert event.butler_repo == str(repo.path) and event.run == f"{INSTRUMENT}/prompt/20261206"
        assert event.collections == [f"{INSTRUMENT}/calib", "templates/planner", f"{INSTRUMENT}/raw/all"]
        assert event.graph_uri is None and event.quantum_index is None and event.task_label == "ap"
    calibrated_with_template = [p.detector for p in plan.detectors if not p.missing]
    assert with_templates >= 2 and calibrated_with_template and {94, 95} <= set(events)


def test_calibrations_are_found_by_validity_time_and_flats_by_filter(butler: Butler, repo: Repo) -> None:
    planner = VisitPlanner(butler.registry, CONFIG)
    (on_time,) = planner.plan(next_visit(2, [93])).detectors
    assert on_time.inputs["bias"] == (repo.bias[93],) and on_time.inputs["flat"] == (repo.flat[93],)
    late = planner.plan(next_visit(2, [93], begin="2027-02-01T03:00:00"))  # after the certification ends
    assert [(p.detector, p.missing[:2]) for p in late.detectors] == [(93, ("bias", "flat"))]
    g = planner.plan(next_visit(3, [93], physical_filter="g_6"))  # biases serve any filter, the flats are r_57
    (p,) = g.detectors
    assert "bias" in p.inputs and "flat" in p.missing and g.band == "g"


def test_a_redelivered_next_visit_plans_the_same_ids(butler: Butler) -> None:
    nv = next_visit(4, [93, 94, 100])
    first = VisitPlanner(butler.registry, CONFIG).plan(nv).events()
    again = VisitPlanner(butler.registry, CONFIG).plan(nv).events()
    assert [e.model_dump(exclude={"planned_at"}) for e in first] == [e.model_dump(exclude={"planned_at"})
                                                                     for e in again]
    for e in first:
        assert e.quantum_id == ap_quantum_id(INSTRUMENT, nv.visit, e.detector)
        data_id: dict[str, int | str] = {"instrument": INSTRUMENT, "visit": nv.visit, "detector": e.detector or 0}
        assert e.outputs == [deterministic_dataset_id(t, data_id, e.run or "") for t in AP_OUTPUT_DATASET_TYPES]
    other = VisitPlanner(butler.registry, CONFIG).plan(next_visit(5, [93])).events()
    assert other[0].quantum_id != first[0].quantum_id


def test_footprints_wind_north_through_east_as_the_event_schema_says(butler: Butler) -> None:
    (event,) = VisitPlanner(butler.registry, CONFIG).plan(next_visit(6, [100])).events()
    assert event.footprint_deg is not None
    v = _unit(*np.array(event.footprint_deg).reshape(-1, 2).T)
    centre = v.sum(axis=0)
    turns = [float(np.dot(np.cross(v[i], v[(i + 1) % 4]), centre)) for i in range(4)]
    assert all(t < 0 for t in turns)  # counter-clockwise seen from inside the sphere
    assert ConvexPolygon.from_radec(event.footprint_deg[::2], event.footprint_deg[1::2])  # a valid polygon
    # the simulator begins the exposure at 2026-12-07T03:00:00 TAI and issues nextVisit 20 s before
    assert event.visit_start_mjd_tai == pytest.approx(61381.125, abs=1e-8)


def test_unknown_instrument_detector_or_filter_plans_nothing(butler: Butler) -> None:
    planner = VisitPlanner(butler.registry, CONFIG)
    with pytest.raises(UnknownInstrumentError, match="NoSuchCam"):
        planner.plan(next_visit(7, [1], instrument="NoSuchCam"))
    with pytest.raises(UnknownDetectorError, match=r"\[189, 400\]"):
        planner.plan(next_visit(8, [1, 189, 400]))
    with pytest.raises(UnknownFilterError):
        planner.plan(next_visit(9, [1], physical_filter="HSC-R"))


def test_a_sky_map_the_repository_lacks_fails_at_check(butler: Butler) -> None:
    with pytest.raises(PlanningError, match="not registered"):
        VisitPlanner(butler.registry, PlannerConfig(skymap="no_such_sky")).check()
    # without a sky map every requested detector is planned, no template is looked for
    plan = VisitPlanner(butler.registry, PlannerConfig()).plan(next_visit(10, [0, 94, 188]))
    assert [p.detector for p in plan.detectors] == [0, 94, 188]
    assert all("template_coadd" not in p.missing for p in plan.detectors)


def test_reference_catalog_shards_covering_each_detector_are_inputs(tmp_path: Path, butler: Butler,
                                                                    expected: dict[int, Truth]) -> None:
    from cdshealpix.nested import vertices

    from nightshift.butler import ingest_reference_catalog
    from nightshift.sky import Circle, pixel_ranges, point_pixel

    order = 5
    pixels = [p for lo, hi in pixel_ranges(Circle(150.0, 2.0, 2.5), order).tolist() for p in range(lo, hi)]
    shards = tmp_path / "shards"
    shards.mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    for pixel in pixels:
        pq.write_table(pa.table({"ra": [150.0], "dec": [2.0], "mag": [18.0]}), shards / f"{pixel}.parquet")
    with Butler(butler.root, run="refcats/test") as b:
        ingest_reference_catalog(b, "test_refcat", shards, order=order)
    planner = VisitPlanner(butler.registry, PlannerConfig(skymap=SKYMAP, template_collections=("templates/planner",),
                                                          refcat="test_refcat",
                                                          refcat_collections=("refcats/test",)))
    plan = planner.plan(next_visit(11, [0, 94, 150]))
    for p in plan.detectors:
        got = {int(r.data_id[f"healpix{order}"]) for r in p.inputs["test_refcat"]}
        t = expected[p.detector]
        assert {point_pixel(float(r), float(d), order) for r, d in t.corner_pixels} <= got
        for pix in got:  # and every shard is one whose cell touches the detector
            lon, lat = vertices(np.array([pix], dtype=np.uint64), order)
            cell = ConvexPolygon(tuple(zip(lon.deg[0].tolist(), lat.deg[0].tolist(), strict=True)))
            assert cell.overlaps(t.footprint)
    assert "refcats/test" in plan.collections
