"""Queries on a populated repository: data IDs, datasets, records, ``where`` errors, filters, graph.

Runs on SQLite and the real PostgreSQL (module-scoped ``populated`` fixture per backend).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from registry_support import SECOND, T0, populated  # noqa: F401 - fixture

from nightshift.butler.registry import (
    DimensionNameError,
    ExclusionList,
    QueryNameError,
    QuerySyntaxError,
    QueryTypeError,
    Registry,
)
from nightshift.butler.registry._timespan import to_tai_ns

SEEING = {v: 0.5 + 0.1 * v for v in range(6)}


def visits(data_ids) -> list[int]:
    return sorted({d["visit"] for d in data_ids})


# ---------------------------------------------------------------- data IDs and records (REQ-0088)


def test_query_data_ids_filters_on_record_fields(populated: Registry) -> None:
    ids = populated.query_data_ids(["visit", "detector"], where="visit.seeing < 0.75 AND detector = 2")
    assert ids == [{"instrument": "Cam", "detector": 2, "visit": v} for v in (0, 1, 2)]
    ids = populated.query_data_ids(["visit"], where="visit.airmass >= 1.1 AND visit.seeing < 0.85")
    assert visits(ids) == [2, 3]


def test_implied_dimensions_and_bind(populated: Registry) -> None:
    ids = populated.query_data_ids(["visit"], where="band = b AND visit > low", bind={"b": "r", "low": 1})
    assert visits(ids) == [3, 5]
    ids = populated.query_data_ids(["visit"], where="visit IN (vs)", bind={"vs": [1, 4, 40]})
    assert visits(ids) == [1, 4]
    ids = populated.query_data_ids(["exposure"], where="exposure.physical_filter = 'g_01'")
    assert [d["exposure"] for d in ids] == [0, 2, 4]


def test_in_ranges_not_and_or(populated: Registry) -> None:
    assert visits(populated.query_data_ids(["visit"], where="visit IN (0..4:2)")) == [0, 2, 4]
    assert visits(populated.query_data_ids(["visit"], where="visit NOT IN (1..3)")) == [0, 4, 5]
    assert visits(populated.query_data_ids(["visit"], where="NOT (visit = 1 OR visit = 2) AND visit < 4")) == [0, 3]


def test_time_predicates(populated: Registry) -> None:
    t = T0 + 210 * SECOND  # inside exposure 2 [200 s, 230 s)
    ids = populated.query_data_ids(["exposure"], where="exposure.timespan OVERLAPS t", bind={"t": t})
    assert [d["exposure"] for d in ids] == [2]
    ids = populated.query_data_ids(["visit"], where="visit.timespan.begin >= t", bind={"t": T0 + 300 * SECOND})
    assert visits(ids) == [3, 4, 5]
    from astropy.time import Time

    begin = Time("2023-11-14T22:13:00", scale="tai")  # T0 is 2023-11-14T22:13:20 TAI
    assert to_tai_ns(begin) == T0 - 20 * SECOND
    ids = populated.query_data_ids(
        ["visit"], where="visit.timespan OVERLAPS (T'2023-11-14T22:13:00', T'2023-11-14T22:15:00')"
    )
    assert visits(ids) == [0, 1]  # TAI-UTC = 37 s shifts the UTC literals: [T0+17 s, T0+137 s)


def test_region_predicates_and_spatial_join(populated: Registry) -> None:
    ids = populated.query_data_ids(["visit"], where="visit.region OVERLAPS POINT(10.85, 10.25)")
    assert 1 in visits(ids) and not {4, 5} & set(visits(ids))  # coarse at one HEALPix cell
    patches = populated.query_data_ids(["patch"], where="visit = 0")
    assert patches, "visit 0 must overlap at least one patch"
    p = patches[0]
    back = populated.query_data_ids(["visit"], where="skymap = 'hpx' AND tract = t AND patch = p",
                                    bind={"t": p["tract"], "p": p["patch"]})
    assert 0 in visits(back)
    far = populated.query_data_ids(["visit"], where="visit.region OVERLAPS POINT(200, -40)")
    assert far == []


def test_visit_exposure_join(populated: Registry) -> None:
    ids = populated.query_data_ids(["exposure", "visit"], where="visit.seeing > 0.85")
    assert [(d["exposure"], d["visit"]) for d in ids] == [(4, 4), (5, 5)]


def test_query_dimension_records(populated: Registry) -> None:
    recs = populated.query_dimension_records("visit", where="band = 'g' AND visit.seeing < 0.8")
    assert [r.id for r in recs] == [0, 2]
    assert recs[1].seeing == pytest.approx(SEEING[2])
    dets = populated.query_dimension_records("detector", data_id={"instrument": "Cam"})
    assert [d.full_name for d in dets] == [f"R00_S{i}" for i in range(4)]
    tracts = populated.query_dimension_records("tract", where="skymap = 'hpx'")
    assert tracts and all(len(t.region) == 4 for t in tracts)


def test_data_ids_constrained_by_datasets(populated: Registry) -> None:
    populated.register_run("sparse")
    populated.insert_datasets("calexp", [{"instrument": "Cam", "visit": 3, "detector": 1}], "sparse")
    ids = populated.query_data_ids(["visit", "detector"], datasets=["calexp"], collections="sparse")
    assert ids == [{"instrument": "Cam", "detector": 1, "visit": 3}]


# ---------------------------------------------------------------- datasets


def test_query_datasets_where_visit_range_and_detector(populated: Registry) -> None:
    refs = populated.query_datasets("calexp", "run", where="visit IN (1..3) AND detector = 0")
    assert [(r.data_id["visit"], r.data_id["detector"]) for r in refs] == [(1, 0), (2, 0), (3, 0)]
    assert all(r.run == "run" for r in refs)
    refs = populated.query_datasets("calexp", ["run"], where="visit.seeing < 0.65", data_id={"detector": 3})
    assert [r.data_id["visit"] for r in refs] == [0, 1]
    refs = populated.query_datasets("raw", "run", where="band = 'r' AND exposure.exposure_time > 10", limit=2)
    assert len(refs) == 2


# ---------------------------------------------------------------- where errors


def test_where_rejects_sql(populated: Registry) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        populated.query_datasets("calexp", "run", where="1=1; DROP TABLE dataset")
    assert info.value.position == 3
    with pytest.raises(QuerySyntaxError):
        populated.query_data_ids(["visit"], where="visit = 1 OR 1=1 --")
    with pytest.raises(QuerySyntaxError):
        populated.query_data_ids(["visit"], where="visit = '1' OR ''='")
    # the table is still there and quoted input is only ever a bound value
    assert len(populated.query_datasets("calexp", "run")) == 24
    assert populated.query_data_ids(["instrument"], where="instrument = x", bind={"x": "Cam'; DROP TABLE x; --"}) == []


def test_unknown_names_raise_specific_errors(populated: Registry) -> None:
    with pytest.raises(QueryNameError, match="unknown dimension 'vist'") as info:
        populated.query_data_ids(["visit"], where="vist.seeing < 1")
    assert info.value.position == 0 and isinstance(info.value, LookupError)
    with pytest.raises(QueryNameError, match="has no field 'seing'.*seeing") as info:
        populated.query_data_ids(["visit"], where="visit = 1 AND visit.seing < 1")
    assert info.value.position == 14
    with pytest.raises(QueryNameError, match="not a dimension .* nor a bind value"):
        populated.query_data_ids(["visit"], where="visit > minimum")
    with pytest.raises(DimensionNameError):
        populated.query_data_ids(["visits"])
    with pytest.raises(QueryNameError, match="is a dimension name"):
        populated.query_data_ids(["visit"], where="visit > 1", bind={"visit": 2})


def test_type_errors(populated: Registry) -> None:
    with pytest.raises(QueryTypeError, match="cannot compare a int with a string"):
        populated.query_data_ids(["visit"], where="visit = 'one'")
    with pytest.raises(QueryTypeError, match="must be a condition"):
        populated.query_data_ids(["visit"], where="visit")
    with pytest.raises(QueryTypeError, match="OVERLAPS"):
        populated.query_data_ids(["visit"], where="visit.seeing OVERLAPS POINT(1, 2)")
    with pytest.raises(QueryTypeError, match="bad time literal"):
        populated.query_data_ids(["visit"], where="visit.timespan OVERLAPS T'yesterday'")


# ---------------------------------------------------------------- filters (REQ-0089, REQ-0090)


def test_data_quality_flags_filter(populated: Registry) -> None:
    bad = populated.query_datasets("raw", "run", where="exposure = 2")
    populated.flag_datasets(bad[:1], "bad", comment="satellite trail")
    try:
        assert populated.get_dataset_flags(bad[0]) == {"bad": "satellite trail"}
        refs = populated.query_datasets("raw", "run", where="exposure = 2", exclude_flags=["bad"])
        assert bad[0] not in refs and len(refs) == len(bad) - 1
        ids = populated.query_data_ids(["exposure", "detector"], where="exposure = 2", datasets=["raw"],
                                       collections="run", exclude_flags=["bad"])
        assert dict(bad[0].data_id) not in ids and len(ids) == 3
    finally:
        populated.unflag_datasets(bad[:1], "bad")
    assert len(populated.query_datasets("raw", "run", where="exposure = 2", exclude_flags=["bad"])) == 4


def test_exclusion_list_from_file(populated: Registry, tmp_path) -> None:
    victim = populated.query_datasets("calexp", "run", where="visit = 1 AND detector = 1")[0]
    path = tmp_path / "exclude.txt"
    path.write_text(f"# not yet flagged globally\n{victim.id}\ninstrument=Cam visit=4  # a whole visit\n")
    refs = populated.query_datasets("calexp", "run", exclude=path)
    assert len(refs) == 24 - 1 - 4
    assert victim not in refs and all(r.data_id["visit"] != 4 for r in refs)
    ids = populated.query_data_ids(["visit"], exclude=ExclusionList.from_file(path))
    assert visits(ids) == [0, 1, 2, 3, 5]
    bad = tmp_path / "bad.txt"
    bad.write_text("visit 4\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: .*neither a dataset UUID nor key=value"):
        populated.query_datasets("calexp", "run", exclude=bad)


# ---------------------------------------------------------------- introspection (REQ-0092)


def test_introspection_for_completion(populated: Registry) -> None:
    assert "visit" in populated.get_dimension_names()
    assert {"seeing", "region", "timespan"} <= set(populated.get_record_fields("visit"))
    assert populated.complete("cal") == ["calexp"]
    assert "visit.seeing" in populated.complete("visit.se")
    assert "run" in populated.complete("ru")
    assert [d.name for d in populated.query_dataset_types("*a*")] == ["calexp", "deepCoadd", "raw"]
    assert [d.name for d in populated.query_dataset_types("r*")] == ["raw"]


# ---------------------------------------------------------------- parallel lookup (REQ-0082)


def test_same_dataset_from_parallel_collections(populated: Registry) -> None:
    for name in ("stack_v1", "stack_v2"):
        populated.register_run(name)
        populated.insert_datasets("calexp", [{"instrument": "Cam", "visit": 5, "detector": 0}], name)
    populated.register_run("nothing_here")
    did = {"instrument": "Cam", "visit": 5, "detector": 0}
    found = populated.find_dataset_in_each("calexp", did, ["run", "stack_v1", "stack_v2", "nothing_here"])
    assert set(found) == {"run", "stack_v1", "stack_v2"}
    assert len({r.id for r in found.values()}) == 3
    assert {dict(r.data_id)["visit"] for r in found.values()} == {5}


# ---------------------------------------------------------------- pre-flight graph (REQ-0080, REQ-0083..0086)


def test_preflight_graph_for_a_coadd(populated: Registry) -> None:
    """Which calexps could build the coadd of one patch? (REQ-0080)"""
    patch = populated.query_data_ids(["patch"], where="visit = 0")[0]
    graph = populated.query_graph(
        ["skymap", "tract", "patch", "band"], ["calexp"], "run",
        where="skymap = 'hpx' AND tract = t AND patch = p AND band = 'g'",
        bind={"t": patch["tract"], "p": patch["patch"]},
    )
    assert len(graph) == 1
    (node,) = graph.data_ids()
    assert node == {"band": "g", "skymap": "hpx", "tract": patch["tract"], "patch": patch["patch"]}
    inputs = graph.inputs(node, "calexp")
    expected = populated.query_data_ids(
        ["visit", "detector"], where="skymap = 'hpx' AND tract = t AND patch = p AND band = 'g'",
        bind={"t": patch["tract"], "p": patch["patch"]},
    )
    assert sorted((r.data_id["visit"], r.data_id["detector"]) for r in inputs) == sorted(
        (d["visit"], d["detector"]) for d in expected
    )
    assert 0 in {r.data_id["visit"] for r in inputs}
    assert all(populated.get_dimension_record("visit", r.data_id).physical_filter == "g_01" for r in inputs)
    again = type(graph).from_dict(graph.to_dict())
    assert again.data_ids() == graph.data_ids() and len(again.datasets()) == len(graph.datasets())


def test_preflight_graph_per_visit_detector(populated: Registry) -> None:
    graph = populated.query_graph(["visit", "detector"], ["raw"], "run", where="visit.seeing < 0.65")
    assert len(graph) == 8
    for node in graph.data_ids():
        (raw,) = graph.inputs(node)
        assert raw.data_id["exposure"] == node["visit"] and raw.data_id["detector"] == node["detector"]


def test_where_values_are_bound_parameters(populated: Registry) -> None:
    """The compiled SQL text holds placeholders, never the expression's values."""
    from nightshift.butler.registry._queries import WhereCompiler, parse_where, plan_join, referenced_names

    text = "visit.science_program = 'DROP TABLE x' AND visit IN (7, 8)"
    tree = parse_where(text)
    dims, elements = referenced_names(tree, populated.universe, {}, text)
    plan = plan_join(populated.universe, populated._storage.tables, dims, field_elements=elements)
    cond = WhereCompiler(populated.universe, populated._storage.tables, plan, {}, text).compile(tree)
    sql = str(sa.select(sa.literal(1)).where(cond).compile(dialect=populated._db.engine.dialect))
    assert "DROP TABLE" not in sql and " 7" not in sql


def test_region_overlaps_region(populated: Registry) -> None:
    auto = populated.query_data_ids(["visit", "patch"], where="visit IN (0, 5)")
    explicit = populated.query_data_ids(
        ["visit", "patch"], where="visit IN (0, 5) AND visit.region OVERLAPS patch.region"
    )
    assert auto == explicit and auto
    assert {d["visit"] for d in auto} == {0, 5}


def test_cached_statements_use_new_bind_values(populated: Registry) -> None:
    """The same query shape re-runs with new values (statement cache), including POINT and IN lists."""
    for v in (1, 4):
        refs = populated.query_datasets("calexp", "run", where="visit = v AND detector IN (ds)",
                                        bind={"v": v, "ds": [0, 3]})
        assert [(r.data_id["visit"], r.data_id["detector"]) for r in refs] == [(v, 0), (v, 3)]
    where = "visit.region OVERLAPS POINT(ra, dec)"
    near0 = populated.query_data_ids(["visit"], where=where, bind={"ra": 10.25, "dec": 10.25})
    near5 = populated.query_data_ids(["visit"], where=where, bind={"ra": 13.25, "dec": 10.25})
    assert 0 in visits(near0) and 5 not in visits(near0)
    assert 5 in visits(near5) and 0 not in visits(near5)
    ids = [populated.query_data_ids(["visit"], data_id={"visit": v}) for v in (2, 3)]
    assert [visits(i) for i in ids] == [[2], [3]]
