"""DMS-MWBT-REQ-0005: removing a repository removes it from every storage: directory, database, index.

Against the real PostgreSQL: the repository's schema is dropped and its
repository-index entry removed. A removal that fails part-way leaves the
repository recognisable, says where it stopped, and a second call finishes it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from registry_support import drop_schema, pg_url
from test_butler import RUN, setup_repo

from nightshift.butler._butler import Butler, ButlerConfigError
from nightshift.butler.datastores import DatastorePermissionError
from nightshift.butler.registry import Registry, RegistryDatabaseError, RepositoryIndex


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RepositoryIndex:
    path = tmp_path / "repositories.yaml"
    monkeypatch.setenv("NIGHTSHIFT_REPOSITORY_INDEX", str(path))
    return RepositoryIndex(path)


def schema_exists(dsn: str, schema: str) -> bool:
    engine = sa.create_engine(pg_url(dsn))
    try:
        with engine.connect() as conn:
            return bool(sa.inspect(conn).has_schema(schema))
    finally:
        engine.dispose()


def make_pg_repo(root: Path, dsn: str, schema: str) -> None:
    Butler.create(root, registry_db=dsn, registry_schema=schema).close()
    with setup_repo(Butler(root, run=RUN)) as b:
        for v in range(3):
            b.put({"v": v}, "metric", instrument="Cam", visit=v)


@pytest.mark.integration
def test_removal_drops_the_schema_the_index_entry_and_the_directory(
        tmp_path: Path, pg_dsn: str, unique_name: str, index: RepositoryIndex) -> None:
    other = unique_name + "_other"
    try:
        make_pg_repo(tmp_path / "doomed", pg_dsn, unique_name)
        make_pg_repo(tmp_path / "kept", pg_dsn, other)
        assert sorted(index.entries()) == ["doomed", "kept"] and schema_exists(pg_dsn, unique_name)
        assert Butler.remove_repository(tmp_path / "doomed") == 0
        assert not (tmp_path / "doomed").exists()
        assert not schema_exists(pg_dsn, unique_name)
        assert sorted(index.entries()) == ["kept"]
        with pytest.raises(LookupError):
            Butler.from_name("doomed")
        with Butler.from_name("kept", collections=[RUN]) as kept:  # the neighbour in the same database is intact
            assert kept.get("metric", instrument="Cam", visit=2) == {"v": 2}
    finally:
        drop_schema(pg_dsn, unique_name)
        drop_schema(pg_dsn, other)


@pytest.mark.integration
def test_a_removal_stopped_by_the_database_changes_no_data_and_is_finished_by_a_second_call(
        tmp_path: Path, pg_dsn: str, unique_name: str, index: RepositoryIndex,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    try:
        make_pg_repo(root, pg_dsn, unique_name)

        def refused(*args: object, **kwargs: object) -> bool:
            raise RegistryDatabaseError("permission denied for schema (injected)")

        monkeypatch.setattr(Registry, "remove", refused)
        with pytest.raises(RegistryDatabaseError) as info:
            Butler.remove_repository(root)
        assert "stopped while deleting the registry database" in "\n".join(info.value.__notes__)
        monkeypatch.undo()
        monkeypatch.setenv("NIGHTSHIFT_REPOSITORY_INDEX", str(index.path))
        with Butler(root, collections=[RUN]) as b:  # the data are all still there
            assert [b.get("metric", instrument="Cam", visit=v) for v in range(3)] == [{"v": 0}, {"v": 1}, {"v": 2}]
        Butler.remove_repository(root)
        assert not root.exists() and not schema_exists(pg_dsn, unique_name) and index.entries() == {}
    finally:
        drop_schema(pg_dsn, unique_name)


@pytest.mark.integration
def test_a_removal_stopped_by_storage_permissions_is_finished_by_a_second_call(
        tmp_path: Path, pg_dsn: str, unique_name: str, index: RepositoryIndex) -> None:
    root = tmp_path / "repo"
    try:
        make_pg_repo(root, pg_dsn, unique_name)
        locked = next(p for p in (root / "datastore").rglob("*") if p.is_dir())
        subprocess.run(["chattr", "+i", str(locked)], check=True)  # binds root as well (tests run as root)
        try:
            with pytest.raises(DatastorePermissionError, match="not allowed") as info:
                Butler.remove_repository(root)
            assert "call Butler.remove_repository" in "\n".join(info.value.__notes__)
            assert (root / "butler.yaml").exists()  # still recognisable as a repository, so it can be finished
        finally:
            subprocess.run(["chattr", "-i", str(locked)], check=True)
        Butler.remove_repository(root)  # the registry is already gone: the second call skips it
        assert not root.exists() and not schema_exists(pg_dsn, unique_name) and index.entries() == {}
    finally:
        drop_schema(pg_dsn, unique_name)


def test_removing_a_sqlite_repository_unregisters_it(tmp_path: Path, index: RepositoryIndex) -> None:
    Butler.create(tmp_path / "r").close()
    assert list(index.entries()) == ["r"]
    Butler.remove_repository(tmp_path / "r")
    assert not (tmp_path / "r").exists() and index.entries() == {}
    with pytest.raises(ButlerConfigError, match="not a repository"):
        Butler.remove_repository(tmp_path / "r")
