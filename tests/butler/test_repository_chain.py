"""DMS-MWBT-REQ-0081 (chained) and DMS-MWBT-REQ-0082 (parallel): several repositories read as one.

A user's local repository (SQLite + POSIX) in front of a remote one (the real
PostgreSQL + S3), each with its own registry and datastore. Every answer says
which repository it came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_support import drop_schema
from test_butler import RUN, setup_repo

from nightshift.butler import DatasetType, LocatedDataset, RepositoryChain
from nightshift.butler._butler import Butler
from nightshift.butler.datastores import DatasetNotFoundError
from nightshift.butler.registry import ConflictingDefinitionError

MINE = "u/me/rerun"


@pytest.fixture
def chain(tmp_path: Path, s3_endpoint: str, pg_dsn: str, unique_name: str) -> Iterator[RepositoryChain]:
    s3 = {"cls": "s3", "bucket": unique_name, "prefix": "release", "endpoint_url": s3_endpoint,
          "create_bucket": True}
    Butler.create(tmp_path / "release", datastore=s3, registry_db=pg_dsn, registry_schema=unique_name).close()
    Butler.create(tmp_path / "mine").close()
    release = setup_repo(Butler(tmp_path / "release", run=RUN, collections=[RUN]))
    mine = setup_repo(Butler(tmp_path / "mine", run=MINE, collections=[MINE]))
    try:
        for v in range(3):
            release.put({"v": v, "by": "release"}, "metric", instrument="Cam", visit=v)
        mine.put({"v": 1, "by": "me"}, "metric", instrument="Cam", visit=1)  # my reprocessing of visit 1
        mine.put({"v": 9, "by": "me"}, "metric", instrument="Cam", visit=2)
        yield RepositoryChain({"mine": mine, "release": release})
    finally:
        mine.close()
        release.close()
        drop_schema(pg_dsn, unique_name)


@pytest.mark.integration
def test_a_local_and_a_remote_repository_read_as_one(chain: RepositoryChain) -> None:
    """REQ-0081: scanning each in turn, the first repository holding a dataset answers."""
    assert chain.get("metric", instrument="Cam", visit=1) == {"v": 1, "by": "me"}
    assert chain.get("metric", instrument="Cam", visit=0) == {"v": 0, "by": "release"}  # only the release has it
    found = chain.find("metric", instrument="Cam", visit=0)
    release = chain.butler("release")
    assert found == LocatedDataset(found.ref, "release", release.registry.describe()["repository_id"],
                                   str(release.root))
    assert release.get_uri(found.ref).startswith("s3://")
    listing = chain.query_datasets("metric", where="visit IN (0..2)")
    assert [(f.ref.data_id["visit"], f.repository) for f in sorted(listing, key=lambda f: f.ref.data_id["visit"])] \
        == [(0, "release"), (1, "mine"), (2, "mine")]
    with pytest.raises(DatasetNotFoundError, match="any of"):
        chain.get("metric", instrument="Cam", visit=5)


@pytest.mark.integration
def test_the_same_logical_dataset_from_every_repository(chain: RepositoryChain) -> None:
    """REQ-0082: the same dataset retrieved from each repository that has it, for comparison."""
    assert chain.get_from_each("metric", instrument="Cam", visit=1) == {
        "mine": {"v": 1, "by": "me"}, "release": {"v": 1, "by": "release"}}
    each = chain.find_in_each("metric", instrument="Cam", visit=2)
    assert [f.repository for f in each] == ["mine", "release"]
    assert len({f.repository_id for f in each}) == 2
    every = chain.query_datasets("metric", find_first=False)
    assert sorted((f.ref.data_id["visit"], f.repository) for f in every) == [
        (0, "release"), (1, "mine"), (1, "release"), (2, "mine"), (2, "release")]


@pytest.mark.integration
def test_repositories_that_disagree_on_a_dataset_type_are_refused(chain: RepositoryChain) -> None:
    chain.butler("mine").register_dataset_type(DatasetType("stats", ["instrument", "visit"], "StructuredDataDict"))
    chain.butler("release").register_dataset_type(DatasetType("stats", ["instrument"], "StructuredDataDict"))
    with pytest.raises(ConflictingDefinitionError, match="differs between repositories"):
        chain.find("stats", instrument="Cam", visit=1)


def test_a_chain_needs_collections_to_search(tmp_path: Path) -> None:
    Butler.create(tmp_path / "r").close()
    with Butler(tmp_path / "r") as b, pytest.raises(ValueError, match="no default collections"):
        RepositoryChain([b])
