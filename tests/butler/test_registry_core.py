"""Registry conformance: repository life cycle, dataset types, collections, datasets.

Every test runs against SQLite and the real PostgreSQL server (``make_registry`` is parametrized).
"""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest
import sqlalchemy as sa
from registry_support import (  # noqa: F401 - fixtures
    BIAS,
    CALEXP,
    RAW,
    SECOND,
    T0,
    RegistryFactory,
    all_data_ids,
    make_registry,
    populate,
    registry,
)

from nightshift.butler import DatasetRef, DatasetType
from nightshift.butler.registry import (
    SCHEMA_VERSION,
    CollectionCycleError,
    CollectionType,
    CollectionTypeError,
    ConflictingDefinitionError,
    DataIdError,
    DimensionRecordError,
    MigrationRequiredError,
    MissingCollectionError,
    MissingDatasetTypeError,
    Registry,
    RegistryError,
    RepositoryVersionError,
    Timespan,
)

# ---------------------------------------------------------------- life cycle


def test_sqlite_default_is_one_wal_file_in_repo_root(tmp_path) -> None:
    reg = Registry.create(tmp_path / "repo")
    try:
        path = tmp_path / "repo" / "registry.sqlite3"
        assert path.is_file()
        assert reg.describe()["database"] == f"sqlite:///{path}"
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        with reg._db.reading() as c:
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        reg.close()


def test_describe_reports_versions(registry: Registry) -> None:
    info = registry.describe()
    assert info["schema_version"] == SCHEMA_VERSION
    assert info["universe_version"] == f"nightshift:{registry.universe.version}"
    uuid.UUID(info["repository_id"])


def test_create_twice_and_open_missing(make_registry: RegistryFactory) -> None:
    loc, schema = make_registry.location()
    reg = Registry.create(loc, schema=schema)
    make_registry._created.append((reg, schema))
    with pytest.raises(ConflictingDefinitionError, match="already exists"):
        Registry.create(loc, schema=schema)
    loc2, schema2 = make_registry.location()
    if schema2 is not None:
        make_registry._created.append((reg, schema2))  # dropped at teardown even if never created
    with pytest.raises(RegistryError, match="no nightshift registry"):
        Registry(loc2, schema=schema2)
    if schema2 is None:  # SQLite: opening a missing repository creates nothing
        from pathlib import Path

        assert not Path(loc2).exists()


def _set_version(reg: Registry, version: int) -> None:
    t = reg._storage.tables.attributes
    with reg._db.transaction() as conn:
        conn.execute(t.update().where(t.c.name == "schema_version").values(value=str(version)))


def test_newer_schema_is_refused(make_registry: RegistryFactory) -> None:
    reg = make_registry.create()
    _set_version(reg, SCHEMA_VERSION + 1)
    with pytest.raises(RepositoryVersionError, match="newer than this nightshift"):
        make_registry.open(reg)


def test_older_schema_needs_explicit_migration(make_registry: RegistryFactory) -> None:
    reg = make_registry.create()
    populate(reg, n_visits=1, n_detectors=1)
    reg.register_run("run")
    reg.register_dataset_type(CALEXP)
    (ref,) = reg.insert_datasets("calexp", [{"instrument": "Cam", "visit": 0, "detector": 0}], "run")
    # make it look like a schema-1 repository: no data-quality table, no quantum.execution_id
    with reg._db.transaction() as conn:
        reg._storage.tables.dataset_quality.drop(conn)
        table = conn.dialect.identifier_preparer.format_table(reg._storage.tables.quantum)
        conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN execution_id"))
    _set_version(reg, 1)
    with pytest.raises(MigrationRequiredError, match="migrate"):
        make_registry.open(reg)
    schema = next(s for r, s in make_registry._created if r is reg)
    steps = Registry.migrate(reg.url, schema=schema)
    assert steps == ["1 -> 2: created table dataset_quality (data-quality flags)",
                     "2 -> 3: added column quantum.execution_id (which execution wrote a quantum's outputs)"]
    again = make_registry.open(reg)
    assert again.describe()["schema_version"] == SCHEMA_VERSION
    again.flag_datasets([ref], "bad")
    assert again.get_dataset_flags(ref) == {"bad": None}
    again.register_dataset_type(BIAS)
    (bias,) = again.insert_datasets("bias", [{"instrument": "Cam", "detector": 0}], "run")
    again.record_quantum("isr", config_hash="c", code_version="1", data_id={"instrument": "Cam"},
                         predicted_inputs=[ref], actual_inputs=None, outputs=[bias], run="run", execution_id="e1")
    prov = again.get_provenance(bias)
    assert prov is not None and prov.execution_id == "e1"
    assert Registry.migrate(reg.url, schema=schema) == []


# ---------------------------------------------------------------- dimension records


def test_dimension_records_round_trip(registry: Registry) -> None:
    populate(registry, n_visits=2, n_detectors=2)
    rec = registry.get_dimension_record("visit", {"instrument": "Cam", "visit": 1})
    assert rec is not None
    assert rec.seeing == pytest.approx(0.6) and rec.physical_filter == "r_01"
    assert rec.timespan == Timespan(T0 + 100 * SECOND, T0 + 130 * SECOND)
    assert rec.region[0] == (10.6, 10.0)
    assert registry.get_dimension_record("visit", {"instrument": "Cam", "visit": 99}) is None


def test_bad_dimension_records_write_nothing(registry: Registry) -> None:
    registry.insert_dimension_records("instrument", [{"name": "Cam"}])
    good = {"instrument": "Cam", "id": 1}
    with pytest.raises(DimensionRecordError, match="field 'full_name' must be string"):
        registry.insert_dimension_records("detector", [good, {"instrument": "Cam", "id": 2, "full_name": 3}])
    with pytest.raises(DimensionRecordError, match="unknown field"):
        registry.insert_dimension_records("detector", [{"instrument": "Cam", "id": 2, "colour": "red"}])
    with pytest.raises(DimensionRecordError, match="lacks key field 'instrument'"):
        registry.insert_dimension_records("detector", [{"id": 2}])
    with pytest.raises(ConflictingDefinitionError):  # references an instrument without a record
        registry.insert_dimension_records("detector", [good, {"instrument": "Nope", "id": 2}])
    assert registry.query_dimension_records("detector") == []
    registry.insert_dimension_records("detector", [good])
    with pytest.raises(ConflictingDefinitionError):
        registry.insert_dimension_records("detector", [good])
    assert registry.insert_dimension_records("detector", [good, {"instrument": "Cam", "id": 2}],
                                             skip_existing=True) == 1


# ---------------------------------------------------------------- dataset types


def test_dataset_type_registration(registry: Registry) -> None:
    assert registry.register_dataset_type(CALEXP) is True
    assert registry.register_dataset_type(CALEXP) is False
    assert registry.get_dataset_type("calexp") == CALEXP
    other = DatasetType("calexp", ["instrument", "exposure", "detector"], "ExposureF")
    with pytest.raises(ConflictingDefinitionError, match="cannot be redefined"):
        registry.register_dataset_type(other)
    with pytest.raises(ConflictingDefinitionError):
        registry.register_dataset_type(DatasetType("calexp", CALEXP.dimensions, "Other", metadata=CALEXP.metadata))
    assert registry.get_dataset_type("calexp") == CALEXP
    with pytest.raises(MissingDatasetTypeError, match="not registered"):
        registry.get_dataset_type("nope")


def test_dataset_type_needs_required_dimensions(registry: Registry) -> None:
    with pytest.raises(DataIdError, match=r"require \['instrument'\]"):
        registry.register_dataset_type(DatasetType("x", ["visit", "detector"], "S"))
    with pytest.raises(LookupError, match="unknown dimension 'vist'"):
        registry.register_dataset_type(DatasetType("x", ["instrument", "vist"], "S"))
    assert registry.query_dataset_types() == []


# ---------------------------------------------------------------- collections


def test_collections_and_chains(registry: Registry) -> None:
    registry.register_run("a")
    registry.register_run("b")
    registry.register_collection("tag", CollectionType.TAGGED, doc="hand-picked")
    registry.register_collection("chain", CollectionType.CHAINED)
    registry.register_collection("outer", CollectionType.CHAINED)
    registry.set_collection_chain("chain", ["b", "a"])
    registry.set_collection_chain("outer", ["tag", "chain"])
    assert registry.get_collection_chain("outer") == ("tag", "chain")
    assert [c.name for c in registry.resolve_collections("outer")] == ["tag", "b", "a"]
    assert registry.get_collection_type("chain") is CollectionType.CHAINED
    assert registry.get_collection_doc("tag") == "hand-picked"
    assert registry.query_collections("c*") == ["chain"]
    assert registry.query_collections(types=[CollectionType.RUN]) == ["a", "b"]
    with pytest.raises(CollectionTypeError, match="exists as RUN"):
        registry.register_collection("a", CollectionType.TAGGED)
    with pytest.raises(MissingCollectionError):
        registry.set_collection_chain("chain", ["missing"])


def test_chain_cycles_are_refused(registry: Registry) -> None:
    for name in ("x", "y", "z"):
        registry.register_collection(name, CollectionType.CHAINED)
    registry.register_run("r")
    registry.set_collection_chain("x", ["y", "r"])
    registry.set_collection_chain("y", ["z"])
    with pytest.raises(CollectionCycleError, match="z -> x -> y -> z|cycle"):
        registry.set_collection_chain("z", ["x"])
    with pytest.raises(CollectionCycleError):
        registry.set_collection_chain("x", ["x"])
    assert registry.get_collection_chain("z") == ()  # nothing changed
    assert registry.get_collection_chain("x") == ("y", "r")


# ---------------------------------------------------------------- datasets


def test_insert_and_find_datasets(registry: Registry) -> None:
    populate(registry)
    registry.register_run("run")
    registry.register_dataset_type(CALEXP)
    refs = registry.insert_datasets(CALEXP, all_data_ids(), "run")
    assert len(refs) == 24
    first = refs[0]
    assert first.id == DatasetRef(CALEXP, first.data_id, "run").id  # deterministic uuid5
    assert registry.get_dataset(first.id) == first
    found = registry.find_dataset("calexp", {"instrument": "Cam", "visit": 2, "detector": 3, "band": "r"}, "run")
    assert found is not None and dict(found.data_id) == {"instrument": "Cam", "visit": 2, "detector": 3}
    assert registry.find_dataset("calexp", {"instrument": "Cam", "visit": 2, "detector": 9}, "run") is None


def test_dataset_errors_write_nothing(registry: Registry) -> None:
    populate(registry, n_visits=2, n_detectors=2)
    registry.register_run("run")
    registry.register_dataset_type(CALEXP)
    with pytest.raises(DataIdError, match="lacks required key"):
        registry.insert_datasets("calexp", [{"instrument": "Cam", "visit": 0}], "run")
    with pytest.raises(DataIdError, match="must be an int"):
        registry.insert_datasets("calexp", [{"instrument": "Cam", "visit": "0", "detector": 0}], "run")
    batch = [{"instrument": "Cam", "visit": 0, "detector": 0}, {"instrument": "Cam", "visit": 7, "detector": 0}]
    with pytest.raises(DataIdError, match="visit=7 which has no dimension record"):
        registry.insert_datasets("calexp", batch, "run")
    assert registry.query_datasets("calexp", "run") == []
    registry.insert_datasets("calexp", batch[:1], "run")
    with pytest.raises(ConflictingDefinitionError, match="already exists"):
        registry.insert_datasets("calexp", [{"instrument": "Cam", "visit": 1, "detector": 1}, batch[0]], "run")
    assert len(registry.query_datasets("calexp", "run")) == 1
    again = registry.insert_datasets("calexp", batch[:1], "run", skip_existing=True)
    assert again == registry.query_datasets("calexp", "run")
    with pytest.raises(MissingCollectionError):
        registry.insert_datasets("calexp", batch[:1], "nope")
    registry.register_collection("tag")
    with pytest.raises(CollectionTypeError, match="RUN"):
        registry.insert_datasets("calexp", batch[:1], "tag")


def test_bulk_insert_in_batches(registry: Registry) -> None:
    populate(registry, n_visits=50, n_detectors=40)
    registry.register_run("run")
    registry.register_dataset_type(CALEXP)
    refs = registry.insert_datasets("calexp", all_data_ids(n_visits=50, n_detectors=40), "run", batch_size=700)
    assert len(refs) == 2000
    assert len(registry.query_datasets("calexp", "run", where="detector = 5")) == 50


def test_transaction_groups_writes(registry: Registry) -> None:
    populate(registry, n_visits=1, n_detectors=1)
    registry.register_dataset_type(CALEXP)
    with pytest.raises(RuntimeError), registry.transaction():
        registry.register_run("run")
        registry.insert_datasets("calexp", [{"instrument": "Cam", "visit": 0, "detector": 0}], "run")
        assert registry.get_collection_type("run") is CollectionType.RUN  # visible inside
        raise RuntimeError("boom")
    assert registry.query_collections() == []
    with pytest.raises(MissingCollectionError):
        registry.get_collection_type("run")
    assert registry.register_run("run") is True  # really created now
    assert registry.query_datasets("calexp", "run") == []


def test_tagged_collections(registry: Registry) -> None:
    populate(registry, n_visits=2, n_detectors=2)
    registry.register_run("r1")
    registry.register_run("r2")
    registry.register_dataset_type(CALEXP)
    a = registry.insert_datasets("calexp", all_data_ids(n_visits=2, n_detectors=2), "r1")
    b = registry.insert_datasets("calexp", all_data_ids(n_visits=2, n_detectors=2), "r2")
    registry.register_collection("best", CollectionType.TAGGED)
    registry.associate("best", [a[0], b[1]])
    registry.associate("best", [a[0]])  # idempotent
    assert {r.id for r in registry.query_datasets("calexp", "best")} == {a[0].id, b[1].id}
    with pytest.raises(ConflictingDefinitionError):
        registry.associate("best", [b[0]])  # same data ID as a[0]
    registry.disassociate("best", [a[0]])
    assert [r.id for r in registry.query_datasets("calexp", "best")] == [b[1].id]
    with pytest.raises(CollectionTypeError):
        registry.associate("r1", [a[0]])


def test_chained_lookup_and_override(registry: Registry) -> None:
    """REQ-0081/0087/0012: a chain searches its children in order; putting an override first wins."""
    populate(registry, n_visits=2, n_detectors=2)
    for run in ("release", "personal"):
        registry.register_run(run)
    registry.register_dataset_type(CALEXP)
    base = registry.insert_datasets("calexp", all_data_ids(n_visits=2, n_detectors=2), "release")
    mine = registry.insert_datasets("calexp", [{"instrument": "Cam", "visit": 1, "detector": 1}], "personal")
    registry.register_collection("layered", CollectionType.CHAINED)
    registry.set_collection_chain("layered", ["personal", "release"])
    refs = registry.query_datasets("calexp", "layered")
    assert len(refs) == 4
    by_did = {(r.data_id["visit"], r.data_id["detector"]): r for r in refs}
    assert by_did[(1, 1)] == mine[0]
    assert by_did[(0, 0)].run == "release"
    assert len(registry.query_datasets("calexp", "layered", find_first=False)) == 5
    registry.set_collection_chain("layered", ["release", "personal"])
    assert registry.find_dataset("calexp", {"instrument": "Cam", "visit": 1, "detector": 1}, "layered") == base[3]


def test_calibration_certify_and_lookup_by_time(registry: Registry) -> None:
    populate(registry, n_visits=1, n_detectors=2)
    registry.register_run("calib/run1")
    registry.register_run("calib/run2")
    registry.register_dataset_type(BIAS)
    registry.register_collection("calib", CollectionType.CALIBRATION)
    old = registry.insert_datasets("bias", [{"instrument": "Cam", "detector": 0}], "calib/run1")
    new = registry.insert_datasets("bias", [{"instrument": "Cam", "detector": 0}], "calib/run2")
    t1, t2 = T0, T0 + 1000 * SECOND
    registry.certify("calib", old, Timespan(None, t1))
    registry.certify("calib", new, Timespan(t1, None))
    did = {"instrument": "Cam", "detector": 0}
    assert registry.find_dataset("bias", did, "calib", time=t1 - 1) == old[0]
    assert registry.find_dataset("bias", did, "calib", time=t2) == new[0]
    with pytest.raises(ConflictingDefinitionError, match="valid during part"):
        registry.certify("calib", old, Timespan(t2, t2 + SECOND))
    with pytest.raises(CollectionTypeError, match="needs a time"):
        registry.find_dataset("bias", did, "calib")
    # decertify splits the open range around [t2, t2 + 10 s)
    assert registry.decertify("calib", "bias", Timespan(t2, t2 + 10 * SECOND)) == 1
    assert registry.find_dataset("bias", did, "calib", time=t2 + SECOND) is None
    assert registry.find_dataset("bias", did, "calib", time=t2 + 11 * SECOND) == new[0]
    assert registry.find_dataset("bias", did, "calib", time=t2 - SECOND) == new[0]
    with pytest.raises(CollectionTypeError, match="not a calibration"):
        registry.register_dataset_type(CALEXP)
        registry.register_run("r")
        ref = registry.insert_datasets("calexp", [{"instrument": "Cam", "visit": 0, "detector": 0}], "r")
        registry.certify("calib", ref, Timespan(t1, t2))


def test_calibration_lookup_by_exposure_time_with_astropy(registry: Registry) -> None:
    from astropy.time import Time

    populate(registry, n_visits=1, n_detectors=1)
    registry.register_run("c")
    registry.register_dataset_type(BIAS)
    registry.register_collection("calib", CollectionType.CALIBRATION)
    ref = registry.insert_datasets("bias", [{"instrument": "Cam", "detector": 0}], "c")
    registry.certify("calib", ref, Timespan(Time("2025-01-01T00:00:00", scale="utc"),
                                            Time("2025-02-01T00:00:00", scale="utc")))
    assert registry.find_dataset("bias", {"instrument": "Cam", "detector": 0}, "calib",
                                 time=Time("2025-01-15T00:00:00", scale="utc")) == ref[0]
    assert registry.find_dataset("bias", {"instrument": "Cam", "detector": 0}, "calib",
                                 time="2025-03-01T00:00:00") is None


def test_second_handle_sees_writes(make_registry: RegistryFactory) -> None:
    reg = make_registry.create()
    other = make_registry.open(reg)
    reg.register_run("run")
    assert other.get_collection_type("run") is CollectionType.RUN


def test_raw_universe_is_stored_in_repo(registry: Registry) -> None:
    t = registry._storage.tables.attributes
    with registry._db.reading() as conn:
        stored = json.loads(conn.execute(sa.select(t.c.value).where(t.c.name == "universe")).scalar_one())
    assert stored["version"] == registry.universe.version
    assert set(stored["elements"]) == set(registry.universe.names)


def test_repository_index_names_repositories(make_registry: RegistryFactory, tmp_path, monkeypatch) -> None:
    """REQ-0024: a repository is registered by name as it is created and opened by that name."""
    from nightshift.butler.registry import RepositoryIndex

    index = tmp_path / "repos.yaml"
    monkeypatch.setenv("NIGHTSHIFT_REPOSITORY_INDEX", str(index))
    loc, schema = make_registry.location()
    reg = Registry.create(loc, schema=schema, register_as="dp1")
    make_registry._created.append((reg, schema))
    reg.register_run("in_dp1")
    again = Registry.from_name("dp1")
    make_registry._created.append((again, None))
    assert again.get_collection_type("in_dp1") is CollectionType.RUN
    assert RepositoryIndex().get("dp1") == (loc, schema)
    loc2, schema2 = make_registry.location()
    with pytest.raises(ConflictingDefinitionError, match="already maps"):
        Registry.create(loc2, schema=schema2, register_as="dp1")
    with pytest.raises(LookupError, match="'dp2' is not in the index"):
        Registry.from_name("dp2")
