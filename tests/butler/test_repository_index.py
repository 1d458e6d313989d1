"""DMS-MWBT-REQ-0024: repositories are registered in the repository index automatically, as they are created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from registry_support import drop_schema
from test_butler import RUN, setup_repo

from nightshift.butler._butler import Butler, ButlerConfigError
from nightshift.butler.registry import ConflictingDefinitionError, Registry, RepositoryIndex


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RepositoryIndex:
    """The site's repository index, configured the way a site configures it: by the environment."""
    path = tmp_path / "site" / "repositories.yaml"
    monkeypatch.setenv("NIGHTSHIFT_REPOSITORY_INDEX", str(path))
    return RepositoryIndex(path)


def test_creating_a_repository_registers_it(tmp_path: Path, index: RepositoryIndex) -> None:
    Butler.create(tmp_path / "dp1").close()  # nothing asked for registration
    Butler.create(tmp_path / "scratch-area" / "x", name="u_me_test").close()
    assert index.entries() == {"dp1": {"location": str(tmp_path / "dp1"), "schema": None},
                               "u_me_test": {"location": str(tmp_path / "scratch-area" / "x"), "schema": None}}
    with setup_repo(Butler.from_name("dp1", run=RUN)) as b:
        b.put({"v": 1}, "metric", instrument="Cam", visit=1)
    with Registry.from_name("dp1") as reg:  # the registry behind the name, for registry-level tools
        assert [dict(r.data_id) for r in reg.query_datasets("metric", [RUN])] == [{"instrument": "Cam", "visit": 1}]


def test_a_subset_export_is_registered_and_a_staging_scratch_is_not(tmp_path: Path, index: RepositoryIndex) -> None:
    Butler.create(tmp_path / "main").close()
    with setup_repo(Butler(tmp_path / "main", run=RUN)) as b:
        ref = b.put({"v": 1}, "metric", instrument="Cam", visit=1)
        b.export_subset(tmp_path / "sub", ["metric"]).close()
        b.stage_in([ref], tmp_path / "node-local").close()
    assert sorted(index.entries()) == ["main", "sub"]
    with Butler.from_name("sub", collections=[RUN]) as sub:
        assert sub.get("metric", instrument="Cam", visit=1) == {"v": 1}


def test_a_taken_name_is_refused_before_anything_is_created(tmp_path: Path, index: RepositoryIndex) -> None:
    Butler.create(tmp_path / "a" / "repo").close()
    with pytest.raises(ConflictingDefinitionError, match="'repo' already maps to"):
        Butler.create(tmp_path / "b" / "repo")
    assert not (tmp_path / "b").exists()
    Butler.create(tmp_path / "b" / "repo", name="repo-b").close()
    assert index.get("repo-b") == (str(tmp_path / "b" / "repo"), None)


def test_a_name_without_an_index_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIGHTSHIFT_REPOSITORY_INDEX", raising=False)
    with pytest.raises(ButlerConfigError, match="no repository index"):
        Butler.create(tmp_path / "r", name="r")
    assert not (tmp_path / "r").exists()
    Butler.create(tmp_path / "r").close()  # no index configured: nothing to register in


CREATE = """
import sys
from nightshift.butler import Butler
for i in range(int(sys.argv[3])):
    Butler.create(f"{sys.argv[1]}/{sys.argv[2]}-{i}").close()
"""


def test_repositories_created_concurrently_are_all_registered(tmp_path: Path, index: RepositoryIndex) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", CREATE, str(tmp_path), f"w{w}", "4"]) for w in range(4)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0, 0, 0]
    assert sorted(index.entries()) == sorted(f"w{w}-{i}" for w in range(4) for i in range(4))


@pytest.mark.integration
def test_a_postgresql_repository_is_registered_and_opened_by_name(
        tmp_path: Path, pg_dsn: str, unique_name: str, index: RepositoryIndex) -> None:
    try:
        Butler.create(tmp_path / "shared", registry_db=pg_dsn, registry_schema=unique_name).close()
        with setup_repo(Butler.from_name("shared", run=RUN)) as b:
            b.put({"v": 2}, "metric", instrument="Cam", visit=2)
        with Registry.from_name("shared") as reg:
            assert reg.is_postgresql
            assert [r.data_id["visit"] for r in reg.query_datasets("metric", [RUN])] == [2]
    finally:
        drop_schema(pg_dsn, unique_name)
