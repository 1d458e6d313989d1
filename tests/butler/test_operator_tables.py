"""REQ-0088: registry queries filtered on operator tables outside the dimension universe (SQLite and PostgreSQL).

A night log's per-exposure quality table and an EFD-derived per-visit table are
registered by name with their key dimensions and typed columns, filled, and then
used in ``where`` expressions of dataset, data-ID and dimension-record queries,
joined with dimension record fields. Values are bound parameters, never SQL text.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from registry_support import RegistryFactory, make_registry, populate  # noqa: F401 - fixture

from nightshift.butler.registry import (
    ConflictingDefinitionError,
    OperatorTable,
    OperatorTableError,
    QueryNameError,
    QueryTypeError,
    Registry,
)

RAW = ("raw", ["instrument", "exposure", "detector"], "Exposure")
CALEXP = ("calexp", ["instrument", "visit", "detector"], "ExposureF")


def _repo(make_registry: RegistryFactory) -> Registry:  # noqa: F811 - the fixture, by argument name
    from nightshift.butler import DatasetType

    reg = make_registry.create()
    populate(reg)  # Cam: exposures = visits 0..5 (seeing 0.5..1.0), detectors 0..3
    reg.register_run("run")
    for name, dims, sc in (RAW, CALEXP):
        reg.register_dataset_type(DatasetType(name, dims, sc))
    reg.insert_datasets("raw", [{"instrument": "Cam", "exposure": e, "detector": d}
                                for e in range(6) for d in range(2)], "run")
    reg.insert_datasets("calexp", [{"instrument": "Cam", "visit": v, "detector": d}
                                   for v in range(6) for d in range(2)], "run")
    reg.register_operator_table("nightlog", ["exposure"], {"quality": "str", "comment": "string"},
                                doc="exposures the night log commented on")
    reg.insert_operator_rows("nightlog", [
        {"instrument": "Cam", "exposure": 1, "quality": "bad", "comment": "clouds"},
        {"instrument": "Cam", "exposure": 3, "quality": "good"},
        {"instrument": "Cam", "exposure": 4, "quality": "bad", "comment": "x' OR '1'='1"},
    ])
    return reg


def _exposures(refs: list) -> list[int]:
    return sorted({r.data_id["exposure"] for r in refs})


def test_night_log_filters_datasets_data_ids_and_records(make_registry: RegistryFactory) -> None:  # noqa: F811
    reg = _repo(make_registry)
    assert _exposures(reg.query_datasets("raw", "run", where="nightlog.quality = 'bad'")) == [1, 4]
    assert _exposures(reg.query_datasets("raw", "run", where="nightlog")) == [1, 3, 4]  # has a night-log row
    assert _exposures(reg.query_datasets("raw", "run", where="NOT nightlog")) == [0, 2, 5]
    # an exposure-keyed table constrains visit-keyed datasets through visit_definition
    bad_calexps = reg.query_datasets("calexp", "run", where="nightlog.quality = 'bad' AND detector = 1")
    assert [(r.data_id["visit"], r.data_id["detector"]) for r in bad_calexps] == [(1, 1), (4, 1)]
    ids = reg.query_data_ids(["visit"], where="nightlog.quality != q", bind={"q": "bad"})
    assert [d["visit"] for d in ids] == [3]
    recs = reg.query_dimension_records("exposure", where="nightlog.quality IN ('bad', 'good') AND exposure > 1")
    assert [r.id for r in recs] == [3, 4]
    # a comment holding SQL is only ever a value
    hit = reg.query_datasets("raw", "run", where="nightlog.comment = c", bind={"c": "x' OR '1'='1"})
    assert _exposures(hit) == [4]


def test_efd_per_visit_table_joins_record_fields(make_registry: RegistryFactory) -> None:  # noqa: F811
    reg = _repo(make_registry)
    assert reg.register_operator_table("efd_visit", ["visit"], {"dimm_seeing": "float", "dome_open": "bool"})
    assert not reg.register_operator_table("efd_visit", ["visit"], {"dimm_seeing": "float", "dome_open": "bool"})
    reg.insert_operator_rows("efd_visit", [
        {"instrument": "Cam", "visit": v, "dimm_seeing": 0.4 + 0.2 * v, "dome_open": v != 2} for v in range(6)
    ])
    where = "efd_visit.dimm_seeing < 1.3 AND efd_visit.dome_open AND visit.seeing < 0.95 AND NOT nightlog"
    assert [r.data_id["visit"] for r in reg.query_datasets("calexp", "run", where=where, data_id={"detector": 0})] \
        == [0]
    assert [r.id for r in reg.query_dimension_records("visit", where="efd_visit.dome_open = FALSE")] == [2]
    graph = reg.query_graph(["visit", "detector"], ["calexp"], "run", where="efd_visit.dimm_seeing >= 1.2")
    assert sorted({n["visit"] for n in graph.data_ids()}) == [4, 5]
    # replacing a value changes the answer; other rows stay
    reg.insert_operator_rows("efd_visit", [{"instrument": "Cam", "visit": 0, "dimm_seeing": 2.0, "dome_open": True}],
                             replace=True)
    assert [r.id for r in reg.query_dimension_records("visit", where="efd_visit.dimm_seeing > 1.5")] == [0]
    assert len(reg.query_operator_rows("efd_visit")) == 6


def test_definitions_persist_and_are_seen_by_another_handle(make_registry: RegistryFactory) -> None:  # noqa: F811
    reg = _repo(make_registry)
    other = make_registry.open(reg)
    assert other.get_operator_tables() == [
        OperatorTable("nightlog", ("instrument", "exposure"), {"quality": "string", "comment": "string"},
                      "exposures the night log commented on"),
    ]
    assert other.complete("nightlog.q") == ["nightlog.quality"] and "nightlog" in other.complete("night")  # REQ-0092
    # a table registered by one handle is usable at once by a handle that was already open
    reg.register_operator_table("focus", ["visit"], {"offset_um": "int"})
    reg.insert_operator_rows("focus", [{"instrument": "Cam", "visit": 5, "offset_um": 40}])
    assert [r.id for r in other.query_dimension_records("visit", where="focus.offset_um > 10")] == [5]
    assert reg.drop_operator_table("focus") and not reg.drop_operator_table("focus")
    with pytest.raises(QueryNameError, match="focus"):
        reg.query_dimension_records("visit", where="focus.offset_um > 10")
    assert [t.name for t in other.get_operator_tables()] == ["nightlog"]


def test_bad_definitions_rows_and_expressions_are_refused(make_registry: RegistryFactory) -> None:  # noqa: F811
    reg = _repo(make_registry)
    with pytest.raises(OperatorTableError, match="dimension name"):
        reg.register_operator_table("visit", ["visit"], {"x": "int"})
    with pytest.raises(OperatorTableError, match="not dimensions"):
        reg.register_operator_table("t1", ["nightshift"], {"x": "int"})
    with pytest.raises(OperatorTableError, match="type 'date'"):
        reg.register_operator_table("t1", ["visit"], {"x": "date"})
    with pytest.raises(OperatorTableError, match="lower-case"):
        reg.register_operator_table("Robert'); DROP TABLE dataset; --", ["visit"], {})
    with pytest.raises(ConflictingDefinitionError, match="exists with keys"):
        reg.register_operator_table("nightlog", ["visit"], {"quality": "string"})
    with pytest.raises(OperatorTableError, match="column 'quality' is string; got 3"):
        reg.insert_operator_rows("nightlog", [{"instrument": "Cam", "exposure": 5, "quality": 3}])
    with pytest.raises(OperatorTableError, match="lacks key 'exposure'"):
        reg.insert_operator_rows("nightlog", [{"instrument": "Cam", "quality": "bad"}])
    with pytest.raises(OperatorTableError, match="no column"):
        reg.insert_operator_rows("nightlog", [{"instrument": "Cam", "exposure": 5, "seeing": 1.0}])
    with pytest.raises(ConflictingDefinitionError, match="replace=True"):
        reg.insert_operator_rows("nightlog", [{"instrument": "Cam", "exposure": 5, "quality": "ok"},
                                              {"instrument": "Cam", "exposure": 1, "quality": "ok"}])
    assert len(reg.query_operator_rows("nightlog")) == 3  # all or nothing: exposure 5 was not written
    with pytest.raises(QueryNameError, match="its columns are: quality, comment"):
        reg.query_datasets("raw", "run", where="nightlog.seeing < 1")
    with pytest.raises(QueryTypeError, match="cannot compare a string with a int"):
        reg.query_datasets("raw", "run", where="nightlog.quality > 3")
    with pytest.raises(QueryNameError, match="operator table"):
        reg.query_datasets("raw", "run", where="nightlog", bind={"nightlog": 1})


def test_the_condition_is_sql_with_bound_values_only(make_registry: RegistryFactory) -> None:  # noqa: F811
    from nightshift.butler.registry._queries import WhereCompiler, parse_where, plan_join

    reg = _repo(make_registry)
    storage = reg._storage
    text = "nightlog.quality = 'sneaky' AND NOT nightlog"
    plan = plan_join(reg.universe, storage.tables, {"instrument", "exposure"})
    cond = WhereCompiler(reg.universe, storage.tables, plan, {}, text,
                         operator_tables=storage.operator_tables()).compile(parse_where(text))
    compiled = sa.select(sa.literal(1)).where(cond).compile(dialect=storage.db.engine.dialect)
    assert "sneaky" not in str(compiled) and "sneaky" in compiled.params.values()
    assert "op_nightlog" in str(compiled)


def test_removing_a_registry_without_a_schema_drops_its_operator_tables(pg_dsn: str, unique_name: str) -> None:
    """REQ-0005 with REQ-0088: a PostgreSQL registry in the default schema takes its operator tables along."""
    from registry_support import drop_schema, pg_url

    engine = sa.create_engine(pg_url(pg_dsn))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{unique_name}"')
    sep = "&" if "?" in pg_dsn else "?"
    url = f"{pg_dsn}{sep}options=-csearch_path%3D{unique_name}"  # the default schema of every connection
    try:
        reg = Registry.create(url)
        reg.register_operator_table("nightlog", ["exposure"], {"quality": "string"})
        reg.close()
        with engine.connect() as conn:
            assert "op_nightlog" in sa.inspect(conn).get_table_names(schema=unique_name)
        assert Registry.remove(url)
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names(schema=unique_name) == []
    finally:
        engine.dispose()
        drop_schema(pg_dsn, unique_name)
