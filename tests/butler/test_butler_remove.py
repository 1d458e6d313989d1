"""Butler.remove_datasets: rows and bytes both, or neither (REQ-0004), and merging with ``replace`` (REQ-0007)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_butler import RUN, fail_commit, files_under, setup_repo

from nightshift.butler import DatasetRef
from nightshift.butler._butler import Butler
from nightshift.butler.datastores import (
    ChainedDatastore,
    DatastoreError,
    DatastorePermissionError,
    DatastoreTrash,
    FileDatastore,
    InMemoryDatastore,
    PosixBackend,
)
from nightshift.butler.registry import DatasetInUseError, MissingDatasetError, RegistryError

TASK = dict(config_hash="sha256:1", code_version="v1")


@pytest.fixture
def butler(tmp_path: Path) -> Iterator[Butler]:
    Butler.create(tmp_path / "repo").close()
    with Butler(tmp_path / "repo", run=RUN) as b:
        yield setup_repo(b)


def _put_metrics(butler: Butler, n: int = 3) -> list[Any]:
    return [butler.put({"v": v}, "metric", instrument="Cam", visit=v) for v in range(n)]


def _state(butler: Butler) -> tuple[set[str], list[str]]:
    """Every file of the datastore and every dataset id of the registry."""
    ids = sorted(str(r.id) for r in butler.all_datasets())
    return files_under(butler.root / "datastore"), ids


def test_remove_deletes_rows_and_bytes(butler: Butler) -> None:
    refs = _put_metrics(butler)
    keep_files, _ = _state(butler)
    assert butler.remove_datasets(refs[:2]) == 2
    for ref in refs[:2]:
        assert not butler.exists(ref) and butler.registry.get_dataset(ref.id) is None
        assert not butler.datastore.exists(ref)
    assert butler.get("metric", instrument="Cam", visit=2) == {"v": 2}
    files, ids = _state(butler)
    assert ids == [str(refs[2].id)]
    assert len(files) == len(keep_files) - 4  # two data files and two records; no trash left behind
    assert not any(f.startswith("_trash") for f in files)
    # the data ID can be written again afterwards
    assert butler.put({"v": "again"}, "metric", instrument="Cam", visit=0).id == refs[0].id
    assert butler.get("metric", instrument="Cam", visit=0) == {"v": "again"}


def test_unstored_dataset_loses_its_row_too(butler: Butler) -> None:
    (ref,) = _put_metrics(butler, 1)
    butler.unstore(ref)
    assert butler.registry.get_dataset(ref.id) is not None and not butler.exists(ref)
    assert butler.remove_datasets([ref]) == 1
    assert butler.registry.get_dataset(ref.id) is None
    with pytest.raises(MissingDatasetError):
        butler.remove_datasets([ref])


def test_provenance_refusal_changes_nothing(butler: Butler) -> None:
    inp, out, _ = _put_metrics(butler)
    butler.registry.record_quantum("t", data_id={"instrument": "Cam", "visit": 1}, predicted_inputs=[inp],
                                   actual_inputs=None, outputs=[out], **TASK)
    before = _state(butler)
    with pytest.raises(DatasetInUseError, match="force=True"):
        butler.remove_datasets([inp])
    assert _state(butler) == before and butler.get(inp) == {"v": 0}
    assert butler.remove_datasets([inp], force=True) == 1
    assert not butler.exists(inp) and butler.get(out) == {"v": 1}


def test_storage_permission_is_respected(butler: Butler) -> None:
    """REQ-0004: a file this user may not delete refuses the whole removal, rows included."""
    refs = _put_metrics(butler)
    before = _state(butler)
    locked = Path(butler.datastore.backend.local_path(butler.datastore.record(refs[1]).path)).parent  # type: ignore[attr-defined]  # a FileDatastore
    subprocess.run(["chattr", "+i", str(locked)], check=True)  # binds root as well (tests run as root)
    try:
        with pytest.raises(DatastorePermissionError, match="not allowed"):
            butler.remove_datasets(refs)
        assert _state(butler) == before
        assert [butler.get(r) for r in refs] == [{"v": 0}, {"v": 1}, {"v": 2}]
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert butler.remove_datasets(refs) == 3


@pytest.mark.parametrize("fail_at", range(6))
def test_datastore_failure_at_every_move_changes_nothing(butler: Butler, monkeypatch: pytest.MonkeyPatch,
                                                         fail_at: int) -> None:
    """Strong guarantee: the n-th file move fails -> moved files come back, rows stay."""
    refs = _put_metrics(butler)  # 3 datasets = 6 moves (record, then file)
    before = _state(butler)
    backend = butler.datastore.backend  # type: ignore[attr-defined]  # a FileDatastore
    real_move = backend.move
    calls = {"n": 0}

    def flaky_move(src: str, dst: str) -> None:
        if dst.startswith("_trash"):
            calls["n"] += 1
            if calls["n"] == fail_at + 1:
                raise OSError(f"disk on fire while moving {src} (injected)")
        real_move(src, dst)

    monkeypatch.setattr(backend, "move", flaky_move)
    with pytest.raises(DatastoreError, match="injected"):
        butler.remove_datasets(refs)
    monkeypatch.undo()
    assert _state(butler) == before
    assert [butler.get(r) for r in refs] == [{"v": 0}, {"v": 1}, {"v": 2}]


def test_commit_failure_puts_the_bytes_back(butler: Butler, monkeypatch: pytest.MonkeyPatch) -> None:
    refs = _put_metrics(butler)
    before = _state(butler)
    fail_commit(butler, monkeypatch)
    with pytest.raises(RuntimeError, match="injected"):
        butler.remove_datasets(refs[1:])
    monkeypatch.undo()
    assert _state(butler) == before
    assert [butler.get(r) for r in refs] == [{"v": 0}, {"v": 1}, {"v": 2}]


def test_failed_restore_is_reported_on_the_original_error(butler: Butler, monkeypatch: pytest.MonkeyPatch) -> None:
    (ref,) = _put_metrics(butler, 1)
    fail_commit(butler, monkeypatch)
    backend = butler.datastore.backend  # type: ignore[attr-defined]  # a FileDatastore
    real_move = backend.move

    def no_way_back(src: str, dst: str) -> None:
        if src.startswith("_trash"):
            raise OSError("read-only file system (injected)")
        real_move(src, dst)

    monkeypatch.setattr(backend, "move", no_way_back)
    with pytest.raises(RuntimeError, match="at commit") as info:
        butler.remove_datasets([ref])
    monkeypatch.undo()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "restoring the datastore" in notes and "move them back by hand" in notes and "_trash" in notes
    assert butler.registry.get_dataset(ref.id) is not None  # the rows were rolled back


def test_chained_datastore_removal_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Butler.create(tmp_path / "repo").close()
    chained = ChainedDatastore([FileDatastore(PosixBackend(tmp_path / "files")), InMemoryDatastore()])
    with Butler(tmp_path / "repo", run=RUN, datastore=chained) as b:
        setup_repo(b)
        refs = _put_metrics(b, 2)
        memory = chained.children[1]
        fail_commit(b, monkeypatch)
        with pytest.raises(RuntimeError, match="injected"):
            b.remove_datasets(refs)
        monkeypatch.undo()
        assert all(c.exists(r) for c in chained.children for r in refs)
        assert b.remove_datasets(refs) == 2
        assert not any(c.exists(r) for c in chained.children for r in refs)
        assert list(memory.refs()) == [] and files_under(tmp_path / "files") == set()


@pytest.mark.integration
def test_remove_on_s3_and_postgresql(tmp_path: Path, s3_endpoint: str, pg_dsn: str, unique_name: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {"cls": "s3", "bucket": unique_name, "endpoint_url": s3_endpoint, "create_bucket": True}
    Butler.create(tmp_path / "r", datastore=cfg, registry_db=pg_dsn, registry_schema=unique_name).close()
    with Butler(tmp_path / "r", run=RUN) as b:
        setup_repo(b)
        refs = _put_metrics(b, 2)
        fail_commit(b, monkeypatch)
        with pytest.raises(RuntimeError, match="injected"):
            b.remove_datasets(refs)
        monkeypatch.undo()
        assert [b.get(r) for r in refs] == [{"v": 0}, {"v": 1}]
        assert b.remove_datasets(refs) == 2
        assert not any(b.datastore.exists(r) for r in refs) and b.all_datasets() == []
        assert list(b.datastore.backend.list("")) == []  # type: ignore[attr-defined]  # no trash left


def _repo_with(tmp_path: Path, name: str, values: dict[int, Any]) -> Butler:
    Butler.create(tmp_path / name).close()
    b = setup_repo(Butler(tmp_path / name, run=RUN))
    for visit, v in values.items():
        b.put({"d": v}, "metric", instrument="Cam", visit=visit)
    return b


def test_merge_with_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REQ-0007: ``replace`` takes theirs for conflicting datasets, all or nothing."""
    a = _repo_with(tmp_path, "a", {0: "ours", 1: "ours"})
    b = _repo_with(tmp_path, "b", {0: "theirs", 2: "theirs"})
    with a, b:
        before = _state(a)
        real_import = a.registry.import_datasets

        def failing_import(*args: Any, **kwargs: Any) -> Any:
            real_import(*args, **kwargs)
            raise RuntimeError("registry import failed (injected)")

        monkeypatch.setattr(a.registry, "import_datasets", failing_import)
        with pytest.raises(RuntimeError, match="injected"):
            a.import_from(b, conflict="replace")
        monkeypatch.undo()
        assert _state(a) == before and a.get("metric", instrument="Cam", visit=0) == {"d": "ours"}
        done = a.import_from(b, conflict="replace")
        assert sorted(r.data_id["visit"] for r in done) == [0, 2]
        assert [a.get("metric", instrument="Cam", visit=v) for v in range(3)] == [
            {"d": "theirs"}, {"d": "ours"}, {"d": "theirs"}]
        assert len(a.all_datasets()) == 3
        assert not any(f.startswith("_trash") for f in files_under(a.root / "datastore"))
        with pytest.raises(ValueError, match="'replace'"):
            a.import_from(b, conflict="overwrite")


def test_trash_left_by_a_crash_after_commit_is_purged(butler: Butler, monkeypatch: pytest.MonkeyPatch) -> None:
    from nightshift.butler.datastores import DatastoreTrash

    refs = _put_metrics(butler, 2)
    monkeypatch.setattr(DatastoreTrash, "empty", lambda self: None)  # the process dies right after the commit
    butler.remove_datasets(refs)
    monkeypatch.undo()
    left = [f for f in files_under(butler.root / "datastore") if f.startswith("_trash")]
    assert len(left) == 4 and butler.all_datasets() == [] and list(butler.datastore.refs()) == []
    assert butler.datastore.purge_trash() == 4  # type: ignore[attr-defined]  # a FileDatastore
    assert files_under(butler.root / "datastore") == set()


def test_default_trash_defers_deletion_until_empty() -> None:
    """A datastore without its own ``trash`` deletes at ``empty()``; ``restore()`` leaves it intact."""
    from test_datastore_conformance import metric_ref

    from nightshift.butler.datastores import Datastore

    class PlainMemory(InMemoryDatastore):
        def trash(self, refs: Iterable[DatasetRef]) -> DatastoreTrash:
            return Datastore.trash(self, refs)

    ds = PlainMemory()
    ds.put({"v": 1}, metric_ref())
    trash = ds.trash([metric_ref(), metric_ref(99)])  # the second is not stored: skipped
    assert trash.refs == [metric_ref()]
    trash.restore()
    trash.empty()  # after restore, empty is a no-op
    assert ds.get(metric_ref()) == {"v": 1}
    ds.trash([metric_ref()]).empty()
    assert not ds.exists(metric_ref())


def test_removing_a_repository_on_s3_and_postgresql_leaves_no_bytes_or_rows(
        tmp_path: Path, s3_endpoint: str, pg_dsn: str, unique_name: str) -> None:
    """REQ-0005/0006: deleting the repository directory alone would orphan its objects and rows."""
    cfg = {"cls": "s3", "bucket": unique_name, "prefix": "repo", "endpoint_url": s3_endpoint, "create_bucket": True}
    Butler.create(tmp_path / "r", datastore=cfg, registry_db=pg_dsn, registry_schema=unique_name).close()
    with Butler(tmp_path / "r", run=RUN) as b:
        setup_repo(b)
        _put_metrics(b, 3)
        backend = b.datastore.backend  # type: ignore[attr-defined]  # a FileDatastore
        assert list(backend.list(""))
    assert Butler.remove_repository(tmp_path / "r") == 0
    assert not (tmp_path / "r").exists()
    assert list(backend.list("")) == []  # no object left in the bucket
    from nightshift.butler.registry import Registry

    assert not Registry.exists(pg_dsn, schema=unique_name)  # the repository's schema is dropped, rows and all
    with pytest.raises(RegistryError, match="no nightshift registry"):
        Registry(pg_dsn, schema=unique_name)
