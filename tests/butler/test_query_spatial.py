"""Region predicates are exact below one cell of the registry's spatial index (~0.46 deg).

The SQL index (HEALPix ranges of order 7 per region) finds candidates; the
query keeps only the rows whose regions really overlap (nightshift.sky).
The sky map here is not HEALPix-aligned (like Rubin's rings sky maps): its
patches are inserted as plain polygons, so their index cells straddle their
edges, and a detector-sized visit 0.05 deg from a patch shares a cell with it.
"""

from __future__ import annotations

import itertools

import pytest
from registry_support import COADD, make_registry, populate, registry, visit_region  # noqa: F401

from nightshift.butler.registry import Registry
from nightshift.sky import COMMON_ORDER, ConvexPolygon, pixel_ranges

# visits (registry_support.visit_region): 0.5 deg squares at dec [10, 10.5], ra [10 + 0.6 v, 10.5 + 0.6 v]
PATCHES = {
    0: [(10.0, 10.55), (10.5, 10.55), (10.5, 11.0), (10.0, 11.0)],  # 0.05 deg north of visit 0: no overlap
    1: [(10.2, 10.4), (10.9, 10.4), (10.9, 10.9), (10.2, 10.9)],    # overlaps visits 0 and 1
    2: [(11.12, 10.0), (11.18, 10.0), (11.18, 10.5), (11.12, 10.5)],  # in the gap between visits 1 and 2
}


def _cells(vertices: list[tuple[float, float]]) -> set[int]:
    return {p for lo, hi in pixel_ranges(ConvexPolygon(vertices), COMMON_ORDER).tolist() for p in range(lo, hi)}


@pytest.fixture
def sky(registry: Registry) -> Registry:  # noqa: F811
    populate(registry)
    registry.insert_dimension_records("skymap", [{"name": "rings", "hash": "r1", "kind": "rings", "tract_max": 1,
                                                  "patch_max": 3}])
    registry.insert_dimension_records("tract", [{"skymap": "rings", "id": 0, "region": [
        (9.5, 9.5), (12.5, 9.5), (12.5, 11.5), (9.5, 11.5)]}])
    registry.insert_dimension_records("patch", [
        {"skymap": "rings", "tract": 0, "id": p, "region": v, "cell_x": p, "cell_y": 0} for p, v in PATCHES.items()
    ])
    return registry


def _truth() -> set[tuple[int, int]]:
    return {(v, p) for v, p in itertools.product(range(6), PATCHES)
            if ConvexPolygon(visit_region(v)).overlaps(ConvexPolygon(PATCHES[p]))}


def test_the_index_alone_is_coarse_here() -> None:
    """The premise: the index matches pairs that do not overlap (so the exact cut below is needed)."""
    index_pairs = {(v, p) for v, p in itertools.product(range(6), PATCHES)
                   if _cells(visit_region(v)) & _cells(PATCHES[p])}
    assert (0, 0) in index_pairs and (0, 0) not in _truth()
    assert _truth() < index_pairs
    assert _truth() == {(0, 1), (1, 1)}


def test_spatial_join_is_exact(sky: Registry) -> None:
    auto = sky.query_data_ids(["visit", "patch"], where="skymap = 'rings'")
    assert {(d["visit"], d["patch"]) for d in auto} == _truth()
    explicit = sky.query_data_ids(["visit", "patch"],
                                  where="skymap = 'rings' AND visit.region OVERLAPS patch.region")
    assert explicit == auto
    assert sky.query_data_ids(["patch"], where="visit = 0 AND skymap = 'rings'") == [
        {"skymap": "rings", "tract": 0, "patch": 1}
    ]
    records = sky.query_dimension_records("patch", where="visit = 0")
    assert [r["id"] for r in records] == [1]
    visits = sky.query_data_ids(["visit"], where="skymap = 'rings' AND tract = 0 AND patch = 2")
    assert visits == []  # patch 2 sits in the gap between visits 1 and 2


def test_point_predicates_are_exact(sky: Registry) -> None:
    gap = sky.query_data_ids(["visit"], where="visit.region OVERLAPS POINT(10.55, 10.25)")
    assert gap == []  # between visits 0 and 1, inside the index cell of both
    inside = sky.query_data_ids(["visit"], where="visit.region OVERLAPS POINT(ra, dec) AND visit.seeing < 2",
                                bind={"ra": 10.7, "dec": 10.25})
    assert [d["visit"] for d in inside] == [1]
    records = sky.query_dimension_records("visit", where="visit.region OVERLAPS POINT(10.25, 10.25)")
    assert [r["id"] for r in records] == [0]
    either = sky.query_data_ids(
        ["visit"], where="visit.region OVERLAPS POINT(10.25, 10.25) OR visit.region OVERLAPS POINT(10.7, 10.25)"
    )
    assert {0, 1} <= {d["visit"] for d in either}  # under OR the index's (coarse) answer stands


def test_dataset_queries_are_exact_and_find_first_after_the_cut(sky: Registry) -> None:
    sky.register_dataset_type(COADD)
    for run in ("old", "new"):
        sky.register_run(run)
    (old0, old1) = sky.insert_datasets("deepCoadd", [{"skymap": "rings", "tract": 0, "patch": p, "band": "g"}
                                                     for p in (0, 1)], "old")
    (new1,) = sky.insert_datasets("deepCoadd", [{"skymap": "rings", "tract": 0, "patch": 1, "band": "g"}], "new")
    found = sky.query_datasets("deepCoadd", ["new", "old"], where="visit = 0")
    assert [r.id for r in found] == [new1.id]
    every = sky.query_datasets("deepCoadd", ["new", "old"], where="visit = 0", find_first=False)
    assert {r.id for r in every} == {new1.id, old1.id}
    assert old0.id not in {r.id for r in every}
    limited = sky.query_datasets("deepCoadd", ["old"], where="visit IN (0, 1)", limit=1)
    assert [r.id for r in limited] == [old1.id]
    at_point = sky.query_datasets("deepCoadd", "old", where="patch.region OVERLAPS POINT(10.1, 10.7)")
    assert [r.id for r in at_point] == [old0.id]
