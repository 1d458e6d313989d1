"""DMS-MWBT-REQ-0057: database queries as first-class datasets.

A ``QueryDefinition`` (SQL + the name of the environment variable holding
the database URL) is put like any dataset; ``get`` runs it read-only with
binds from the data ID and returns the result table. The queried database is
the real PostgreSQL (a table in a unique schema) and a SQLite file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from astropy.table import Table
from registry_support import drop_schema, pg_url

from nightshift.butler import Butler, DatasetType
from nightshift.butler.datastores import DatasetNotFoundError
from nightshift.butler.external import (
    QueryBindError,
    QueryDefinition,
    QueryDefinitionError,
    QueryEnvironmentError,
    QueryExecutionError,
    run_query,
)

ENV = "NIGHTSHIFT_TEST_QUERY_DB"
RUN = "u/tester/queries"
DIA = DatasetType("dia_sources_of_visit", ["instrument", "visit"], "QueryDefinition")
ROWS = [  # (id, visit, flux, note)
    (1, 12, 5.5, "a"), (2, 12, 7.25, None), (3, 12, 1.0, "c"), (4, 13, 9.0, "d"), (5, 14, 3.0, "e"),
]


@dataclass
class QueryDb:
    """The queried database: URL (exported as $ENV) and the qualified table name."""

    backend: str
    url: str
    table: str


def _fill(conn: sa.Connection, table: str) -> None:
    conn.exec_driver_sql(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, visit INTEGER NOT NULL, "
                         "flux DOUBLE PRECISION NOT NULL, note VARCHAR(16))")
    conn.execute(sa.text(f"INSERT INTO {table} (id, visit, flux, note) VALUES (:id, :visit, :flux, :note)"),
                 [dict(zip(("id", "visit", "flux", "note"), r, strict=True)) for r in ROWS])


@pytest.fixture(params=["sqlite", "postgresql"])
def query_db(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[QueryDb]:
    if request.param == "sqlite":
        path = tmp_path / "apdb.sqlite3"
        engine = sa.create_engine(f"sqlite:///{path}")
        with engine.begin() as conn:
            _fill(conn, "dia_source")
        engine.dispose()
        db = QueryDb("sqlite", f"sqlite:///{path}", "dia_source")
    else:
        dsn = request.getfixturevalue("pg_dsn")
        engine = sa.create_engine(pg_url(dsn))
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{unique_name}"')
            _fill(conn, f"{unique_name}.dia_source")
            conn.exec_driver_sql(f"CREATE SEQUENCE {unique_name}.counter")
        engine.dispose()
        db = QueryDb("postgresql", dsn, f"{unique_name}.dia_source")
    monkeypatch.setenv(ENV, db.url)
    yield db
    if request.param == "postgresql":
        drop_schema(request.getfixturevalue("pg_dsn"), unique_name)


@pytest.fixture
def butler(tmp_path: Path) -> Iterator[Butler]:
    Butler.create(tmp_path / "repo").close()
    with Butler(tmp_path / "repo", run=RUN) as b:
        b.registry.insert_dimension_records("instrument", [{"name": "X"}])
        b.registry.insert_dimension_records("visit", [{"instrument": "X", "id": v} for v in (12, 13, 14)])
        b.register_dataset_type(DIA)
        yield b


def files_under(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_put_then_get_returns_the_query_result(butler: Butler, query_db: QueryDb) -> None:
    sql = f"SELECT id, flux, note FROM {query_db.table} WHERE visit = :visit ORDER BY id"
    definition = QueryDefinition(sql, dsn_env=ENV, description="DIA sources of one visit")
    refs = butler.put_many([(definition, {"instrument": "X", "visit": v}) for v in (12, 13)], "dia_sources_of_visit")
    assert len(refs) == 2
    table = butler.get("dia_sources_of_visit", instrument="X", visit=12)
    assert isinstance(table, Table) and table.colnames == ["id", "flux", "note"]
    assert list(table["id"]) == [1, 2, 3]
    np.testing.assert_allclose(table["flux"], [5.5, 7.25, 1.0])
    assert table["note"][0] == "a" and bool(table["note"].mask[1]) and table["note"][2] == "c"  # NULL is masked
    assert list(butler.get("dia_sources_of_visit", instrument="X", visit=13)["id"]) == [4]
    # the same dataset as pyarrow, and the stored definition itself
    arrow = butler.get("dia_sources_of_visit", instrument="X", visit=12, storage_class="ArrowTable")
    assert isinstance(arrow, pa.Table) and arrow.column("id").to_pylist() == [1, 2, 3]
    assert arrow.column("note").to_pylist() == ["a", None, "c"]
    stored = butler.get("dia_sources_of_visit", instrument="X", visit=12, storage_class="QueryDefinition")
    assert stored == definition and stored.bind_names == ("visit",)
    # the stored form holds the variable's name, never the URL
    stored_files = [Path(butler.root / "datastore" / f) for f in files_under(butler.root / "datastore")]
    texts = [p.read_text() for p in stored_files if p.suffix == ".yaml"]
    assert len(texts) == 2 and all(ENV in t and query_db.url not in t for t in texts)


def test_extra_parameters_and_defaults(butler: Butler, query_db: QueryDb) -> None:
    sql = f"SELECT id FROM {query_db.table} WHERE visit = :visit AND flux > :min_flux ORDER BY id"
    butler.put(QueryDefinition(sql, ENV, defaults={"min_flux": 0.0}), "dia_sources_of_visit",
               instrument="X", visit=12)
    did = {"instrument": "X", "visit": 12}
    assert list(butler.get("dia_sources_of_visit", did)["id"]) == [1, 2, 3]
    assert list(butler.get("dia_sources_of_visit", did, parameters={"min_flux": 5.0})["id"]) == [1, 2]
    assert len(butler.get("dia_sources_of_visit", did, parameters={"min_flux": 100.0})) == 0
    # a value is bound, never spliced into the SQL: a hostile string is just a value that matches nothing
    sql2 = f"SELECT id FROM {query_db.table} WHERE note = :note"
    butler.put(QueryDefinition(sql2, ENV), "dia_sources_of_visit", instrument="X", visit=13)
    evil = "x' OR '1'='1"
    assert len(butler.get("dia_sources_of_visit", instrument="X", visit=13, parameters={"note": evil})) == 0
    assert list(butler.get("dia_sources_of_visit", instrument="X", visit=13, parameters={"note": "d"})["id"]) == [4]


def test_bind_errors(butler: Butler, query_db: QueryDb) -> None:
    sql = f"SELECT id FROM {query_db.table} WHERE visit = :visit AND note = :band"
    butler.put(QueryDefinition(sql, ENV), "dia_sources_of_visit", instrument="X", visit=12)
    with pytest.raises(QueryBindError, match=r"no value for bind parameter\(s\) \['band'\]"):
        butler.get("dia_sources_of_visit", instrument="X", visit=12)
    with pytest.raises(QueryBindError, match="not used by the query"):
        butler.get("dia_sources_of_visit", instrument="X", visit=12, parameters={"band": "a", "typo": 1})
    with pytest.raises(QueryBindError, match="data ID keys"):
        butler.get("dia_sources_of_visit", instrument="X", visit=12, parameters={"band": "a", "visit": 13})
    assert list(butler.get("dia_sources_of_visit", instrument="X", visit=12, parameters={"band": "a"})["id"]) == [1]


def test_missing_or_bad_environment_variable(butler: Butler, query_db: QueryDb,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    butler.put(QueryDefinition(f"SELECT id FROM {query_db.table} WHERE visit = :visit", ENV),
               "dia_sources_of_visit", instrument="X", visit=12)
    monkeypatch.delenv(ENV)
    with pytest.raises(QueryEnvironmentError, match=f"environment variable {ENV} is not set"):
        butler.get("dia_sources_of_visit", instrument="X", visit=12)
    monkeypatch.setenv(ENV, "no url here, password=hunter2")
    with pytest.raises(QueryEnvironmentError, match=f"{ENV} does not hold a usable database URL") as info:
        butler.get("dia_sources_of_visit", instrument="X", visit=12)
    assert "hunter2" not in str(info.value)
    # a database that cannot be reached: the error names the variable, never the password
    monkeypatch.setenv(ENV, "postgresql://reader:hunter2@127.0.0.1:1/nowhere")
    with pytest.raises(QueryExecutionError, match=ENV) as info2:
        butler.get("dia_sources_of_visit", instrument="X", visit=12)
    assert "hunter2" not in str(info2.value) and info2.value.retriable


@pytest.mark.parametrize("sql, reason", [
    ("DELETE FROM dia_source", "starts with 'DELETE'"),
    ("delete from dia_source where visit = :visit", "starts with 'delete'"),
    ("SELECT 1; DELETE FROM dia_source", "more than one statement"),
    ("SELECT * FROM dia_source; SELECT 2", "more than one statement"),
    ("WITH gone AS (DELETE FROM dia_source RETURNING *) SELECT * FROM gone", "uses DELETE"),
    ("SELECT * INTO copy_of FROM dia_source", "uses INTO"),
    ("SELECT * FROM dia_source FOR UPDATE", "uses UPDATE"),
    ("UPDATE dia_source SET flux = 0", "starts with 'UPDATE'"),
    ("   ", "empty"),
    ("SELECT 'unterminated FROM t", "never closed"),
])
def test_only_single_read_only_statements_are_accepted(sql: str, reason: str) -> None:
    with pytest.raises(QueryDefinitionError, match=reason):
        QueryDefinition(sql, ENV)


def test_statements_that_only_look_dangerous_are_accepted() -> None:
    ok = QueryDefinition(
        "-- DELETE in a comment\nWITH v AS (SELECT 'a; DROP TABLE x' AS s, \"update\" FROM t WHERE k = :k)"
        " SELECT s, x::int AS n, $$;INSERT$$ AS d FROM v /* ; */ ;", ENV)
    assert ok.bind_names == ("k",)


def test_put_rejects_unsafe_definitions_and_stores_nothing(butler: Butler, query_db: QueryDb) -> None:
    before = files_under(butler.root / "datastore")
    with pytest.raises(QueryDefinitionError, match="more than one statement"):
        butler.put(QueryDefinition(f"SELECT 1; DROP TABLE {query_db.table}", ENV), "dia_sources_of_visit",
                   instrument="X", visit=12)
    # a definition tampered with after construction is still refused by the put itself
    tampered = QueryDefinition(f"SELECT id FROM {query_db.table}", ENV)
    object.__setattr__(tampered, "sql", f"DELETE FROM {query_db.table}")
    with pytest.raises(QueryDefinitionError, match="DELETE"):
        butler.put(tampered, "dia_sources_of_visit", instrument="X", visit=12)
    assert files_under(butler.root / "datastore") == before
    with pytest.raises(DatasetNotFoundError):
        butler.find("dia_sources_of_visit", instrument="X", visit=12)
    with pytest.raises(QueryDefinitionError, match="NAME of an environment variable"):
        QueryDefinition("SELECT 1", dsn_env=query_db.url)
    with pytest.raises(QueryDefinitionError, match="not a bind parameter"):
        QueryDefinition("SELECT 1 WHERE 1 = :a", ENV, defaults={"b": 1})


def test_queries_run_read_only(butler: Butler, query_db: QueryDb) -> None:
    """What slips past the lexical check is refused by the database (read-only transaction / connection)."""
    if query_db.backend == "postgresql":
        schema = query_db.table.split(".")[0]
        sql = f"SELECT nextval('{schema}.counter') AS n"  # writes: advances a sequence
    else:
        sql = "WITH RECURSIVE r(n) AS (SELECT 1) SELECT n FROM r"  # reads fine: SQLite is opened read-only
    butler.put(QueryDefinition(sql, ENV), "dia_sources_of_visit", instrument="X", visit=14)
    if query_db.backend == "postgresql":
        with pytest.raises(QueryExecutionError, match="read-only transaction"):
            butler.get("dia_sources_of_visit", instrument="X", visit=14)
        engine = sa.create_engine(pg_url(query_db.url))
        with engine.connect() as conn:  # the sequence did not advance
            assert conn.exec_driver_sql(f"SELECT nextval('{schema}.counter')").scalar_one() == 1
        engine.dispose()
    else:
        assert list(butler.get("dia_sources_of_visit", instrument="X", visit=14)["n"]) == [1]
    # A SELECT cannot write to SQLite, so a write that a checker bug let through is simulated: the checked
    # statement is replaced after the check. The database itself must refuse it, on both backends.
    path = Path(query_db.url.removeprefix("sqlite:///")) if query_db.backend == "sqlite" else None
    stamp = path.stat().st_mtime_ns if path is not None else None
    smuggled = QueryDefinition(f"SELECT id FROM {query_db.table}", ENV)
    object.__setattr__(smuggled, "_checked",
                       dataclasses.replace(smuggled._checked, text=f"DELETE FROM {query_db.table} RETURNING id"))
    with pytest.raises(QueryExecutionError, match="read-only transaction|readonly database"):
        run_query(smuggled, {})
    engine = sa.create_engine(pg_url(query_db.url) if query_db.backend == "postgresql" else query_db.url)
    try:
        with engine.connect() as conn:  # nothing was deleted
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {query_db.table}").scalar_one() == len(ROWS)
    finally:
        engine.dispose()
    if path is not None:
        assert path.stat().st_mtime_ns == stamp  # the file was not even touched


def test_database_errors_are_reported(butler: Butler, query_db: QueryDb) -> None:
    butler.put(QueryDefinition("SELECT no_such_column FROM " + query_db.table + " WHERE visit = :visit", ENV),
               "dia_sources_of_visit", instrument="X", visit=12)
    with pytest.raises(QueryExecutionError, match="no_such_column"):
        butler.get("dia_sources_of_visit", instrument="X", visit=12)
