"""The conformance suite every datastore passes, and its POSIX / S3 / WebDAV / in-memory / chained runs.

A datastore test class inherits :class:`DatastoreConformance` and provides a
``factory`` fixture (``factory(**options) -> Datastore``) and ``snapshot``
(everything the datastore has stored, to check a failed put left nothing).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.table import Table
from test_formatters import make_exposure

from nightshift.butler import DatasetRef, DatasetType
from nightshift.butler._storage_class import StorageClassError
from nightshift.butler.datastores import (
    ChainedDatastore,
    DatasetExistsError,
    DatasetNotFoundError,
    Datastore,
    DatastoreError,
    DavBackend,
    FileDatastore,
    InMemoryDatastore,
    PosixBackend,
    S3Backend,
)
from nightshift.butler.formatters import Box, FormatterError, UnsupportedParameterError

METRIC = DatasetType("metric", ["instrument", "visit"], "StructuredDataDict")
CALEXP = DatasetType("calexp", ["instrument", "visit", "detector"], "Exposure")
SRC = DatasetType("src", ["instrument", "visit", "detector"], "AstropyTable")
RUN = "u/tester/run1"

Factory = Callable[..., Datastore]


def metric_ref(visit: int = 1, run: str = RUN) -> DatasetRef:
    return DatasetRef(METRIC, {"instrument": "HSC", "visit": visit}, run)


def calexp_ref(visit: int = 1, detector: int = 2) -> DatasetRef:
    return DatasetRef(CALEXP, {"instrument": "HSC", "visit": visit, "detector": detector}, RUN)


def src_ref() -> DatasetRef:
    return DatasetRef(SRC, {"instrument": "HSC", "visit": 1, "detector": 2}, RUN)


def posix_snapshot(root: Path) -> set[str]:
    """Every file and directory under a POSIX root."""
    out = set()
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


class DatastoreConformance:
    """Behaviour every datastore must have."""

    def snapshot(self, ds: Datastore) -> Any:
        return sorted(str(r.id) for r in ds.refs())

    def test_put_get_round_trip(self, factory: Factory) -> None:
        ds = factory()
        ref = metric_ref()
        ds.put({"value": 1.5, "unit": "mag"}, ref)
        assert ds.exists(ref)
        assert ds.get(ref) == {"value": 1.5, "unit": "mag"}
        assert [r.id for r in ds.refs()] == [ref.id]

    def test_exposure_components_and_bbox(self, factory: Factory) -> None:
        ds = factory()
        ref = calexp_ref()
        exp = make_exposure((60, 70))
        ds.put(exp, ref)
        back = ds.get(ref)
        np.testing.assert_array_equal(back.image, exp.image)
        wcs = ds.get(ref.make_component_ref("wcs"))
        np.testing.assert_allclose(wcs.wcs.crval, exp.wcs.wcs.crval)
        psf = ds.get(ref.make_component_ref("psf"))
        np.testing.assert_array_equal(psf, exp.psf)
        cut = ds.get(ref, parameters={"bbox": Box(5, 6, 25, 16)})
        np.testing.assert_array_equal(cut.image, exp.image[6:16, 5:25])
        plane = ds.get(ref.make_component_ref("variance"), parameters={"bbox": Box(0, 0, 3, 4)})
        assert plane.shape == (4, 3)

    def test_table(self, factory: Factory) -> None:
        ds = factory()
        t = Table({"a": np.arange(4), "b": np.ones(4)})
        ds.put(t, src_ref())
        back = ds.get(src_ref())
        np.testing.assert_array_equal(back["a"], t["a"])
        assert ds.get(src_ref(), parameters={"columns": ["b"]}).colnames == ["b"]

    def test_missing_dataset_is_not_found(self, factory: Factory) -> None:
        ds = factory()
        with pytest.raises(DatasetNotFoundError):
            ds.get(metric_ref(99))
        with pytest.raises(LookupError):
            ds.remove(metric_ref(99))
        assert not ds.exists(metric_ref(99))

    def test_no_clobber_is_the_default(self, factory: Factory) -> None:
        ds = factory()
        ds.put({"v": 1}, metric_ref())
        before = self.snapshot(ds)
        with pytest.raises(DatasetExistsError):
            ds.put({"v": 2}, metric_ref())
        assert ds.get(metric_ref()) == {"v": 1}
        assert self.snapshot(ds) == before

    def test_clobber_replaces(self, factory: Factory) -> None:
        ds = factory(clobber=True)
        ds.put({"v": 1}, metric_ref())
        ds.put({"v": 2}, metric_ref())
        assert ds.get(metric_ref()) == {"v": 2}
        assert len(list(ds.refs())) == 1

    def test_remove(self, factory: Factory) -> None:
        ds = factory()
        empty = self.snapshot(ds)
        ds.put({"v": 1}, metric_ref())
        ds.remove(metric_ref())
        assert not ds.exists(metric_ref())
        assert self.snapshot(ds) == empty
        ds.put({"v": 3}, metric_ref())  # can be written again
        assert ds.get(metric_ref()) == {"v": 3}

    def test_wrong_python_type_is_rejected_and_leaves_nothing(self, factory: Factory) -> None:
        ds = factory()
        before = self.snapshot(ds)
        with pytest.raises(StorageClassError):
            ds.put([1, 2], metric_ref())
        assert self.snapshot(ds) == before

    def test_unknown_parameter_and_component(self, factory: Factory) -> None:
        ds = factory()
        ds.put(make_exposure((8, 8)), calexp_ref())
        with pytest.raises(UnsupportedParameterError):
            ds.get(calexp_ref(), parameters={"zoom": 2})
        with pytest.raises(StorageClassError):
            ds.get(calexp_ref().make_component_ref("nope"))
        with pytest.raises(DatastoreError):
            ds.put(np.zeros(2), calexp_ref().make_component_ref("psf"))

    def test_many_runs_and_data_ids(self, factory: Factory) -> None:
        ds = factory()
        refs = [metric_ref(v, run) for v in range(3) for run in ("a", "b/c")]
        for i, ref in enumerate(refs):
            ds.put({"i": i}, ref)
        assert [ds.get(r)["i"] for r in refs] == list(range(len(refs)))


# ----------------------------------------------------------------------------------------------
class FileDatastoreFaults:
    """Fault injection for file datastores: every step of put fails in turn (REQ-0076)."""

    # provided by each concrete test class (with DatastoreConformance); the datastore is its factory's FileDatastore
    snapshot: Callable[[Datastore], Any]
    fail_record_write: Callable[[Any, pytest.MonkeyPatch], None]
    fail_publish: Callable[[Any, pytest.MonkeyPatch], None]
    corrupt: Callable[[Any, DatasetRef, bytes], None]

    def test_formatter_failure_leaves_nothing(self, factory: Factory) -> None:
        ds = factory()
        before = self.snapshot(ds)
        with pytest.raises(FormatterError):
            ds.put({"bad": object()}, metric_ref())
        assert self.snapshot(ds) == before
        assert not ds.exists(metric_ref())

    def test_formatter_exception_after_partial_write_leaves_nothing(self, factory: Factory, monkeypatch) -> None:
        ds = factory()
        from nightshift.butler.formatters._plain import JsonFormatter

        def half_write(self: Any, obj: Any, path: Path) -> None:
            path.write_text('{"trunc')
            raise FormatterError("disk full (injected)")

        monkeypatch.setattr(JsonFormatter, "write", half_write)
        before = self.snapshot(ds)
        with pytest.raises(FormatterError):
            ds.put({"v": 1}, metric_ref())
        assert self.snapshot(ds) == before

    def test_checksum_failure_leaves_nothing(self, factory: Factory, monkeypatch) -> None:
        ds = factory()
        from nightshift.butler.datastores import _io

        def boom(*a: Any, **k: Any) -> Any:
            raise OSError("I/O error reading back (injected)")

        monkeypatch.setattr(_io, "checksum_file", boom)
        before = self.snapshot(ds)
        with pytest.raises(DatastoreError):
            ds.put({"v": 1}, metric_ref())
        assert self.snapshot(ds) == before

    def test_failed_clobber_restores_old_version(self, factory: Factory, monkeypatch) -> None:
        ds = factory(clobber=True)
        ds.put({"v": 1}, metric_ref())
        before = self.snapshot(ds)
        self.fail_record_write(ds, monkeypatch)
        with pytest.raises((OSError, DatastoreError)):
            ds.put({"v": 2}, metric_ref())
        monkeypatch.undo()
        assert ds.get(metric_ref()) == {"v": 1}
        assert self.snapshot(ds) == before

    def test_record_write_failure_leaves_nothing(self, factory: Factory, monkeypatch) -> None:
        ds = factory()
        before = self.snapshot(ds)
        self.fail_record_write(ds, monkeypatch)
        with pytest.raises((OSError, DatastoreError)):
            ds.put({"v": 1}, metric_ref())
        monkeypatch.undo()
        assert self.snapshot(ds) == before
        assert not ds.exists(metric_ref())

    def test_publish_failure_leaves_nothing(self, factory: Factory, monkeypatch) -> None:
        ds = factory()
        before = self.snapshot(ds)
        self.fail_publish(ds, monkeypatch)
        with pytest.raises((OSError, DatastoreError)):
            ds.put(make_exposure((8, 8)), calexp_ref())
        monkeypatch.undo()
        assert self.snapshot(ds) == before

    def test_corrupt_file_is_detected(self, factory: Factory) -> None:
        ds = factory()
        ds.put({"value": 12345}, metric_ref())
        self.corrupt(ds, metric_ref(), b'{"value": 99999}')
        from nightshift.butler.datastores import DatasetCorruptError

        with pytest.raises(DatasetCorruptError):
            ds.get(metric_ref())

    def test_paths_follow_templates(self, factory: Factory) -> None:
        ds = factory()
        assert isinstance(ds, FileDatastore)
        ds.put({"v": 1}, metric_ref())
        assert ds.record(metric_ref()).path == "u/tester/run1/metric/metric_instrument=HSC_visit=1_u_tester_run1.json"
        assert ds.get_uri(metric_ref()).startswith(("file://", "s3://", "dav://"))


# ---------------------------------------------------------------------------------------------- POSIX
class TestPosixDatastore(DatastoreConformance, FileDatastoreFaults):
    @pytest.fixture
    def factory(self, tmp_path: Path) -> Factory:
        def make(**kw: Any) -> Datastore:
            return FileDatastore(PosixBackend(tmp_path / "repo"), name="posix", **kw)

        return make

    def snapshot(self, ds: Datastore) -> Any:
        assert isinstance(ds, FileDatastore)
        return posix_snapshot(ds.backend.root)

    def fail_record_write(self, ds: FileDatastore, monkeypatch: pytest.MonkeyPatch) -> None:
        from nightshift.butler.datastores import _io

        real = _io.replace
        calls = []

        def replace(src: Path, dst: Path) -> None:
            calls.append(dst)
            if "_records" in str(dst):
                raise OSError("rename failed (injected)")
            real(src, dst)

        monkeypatch.setattr(_io, "replace", replace)

    def fail_publish(self, ds: FileDatastore, monkeypatch: pytest.MonkeyPatch) -> None:
        from nightshift.butler.datastores import _io

        def replace(src: Path, dst: Path) -> None:
            raise OSError("rename failed (injected)")

        monkeypatch.setattr(_io, "replace", replace)

    def corrupt(self, ds: FileDatastore, ref: DatasetRef, data: bytes) -> None:
        Path(ds.backend.local_path(ds.record(ref).path)).write_bytes(data)

    def test_fsync_failure_leaves_nothing(self, factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
        from nightshift.butler.datastores import _io

        ds = factory()
        before = self.snapshot(ds)

        def boom(path: Path) -> None:
            raise OSError("EIO on fsync (injected)")

        monkeypatch.setattr(_io, "fsync_file", boom)
        with pytest.raises(DatastoreError, match="fsync"):
            ds.put({"v": 1}, metric_ref())
        assert self.snapshot(ds) == before

    def test_truncated_file_is_detected(self, factory: Factory) -> None:
        from nightshift.butler.datastores import DatasetCorruptError

        ds = factory()
        ds.put(make_exposure((16, 16)), calexp_ref())
        path = Path(ds.backend.local_path(ds.record(calexp_ref()).path))  # type: ignore[attr-defined]  # a FileDatastore
        path.write_bytes(path.read_bytes()[:-2880])
        with pytest.raises(DatasetCorruptError):
            ds.get(calexp_ref().make_component_ref("wcs"))

    def test_relocation_by_changing_the_root(self, factory: Factory, tmp_path: Path) -> None:
        """REQ-0001: records hold relative paths; a moved root reads back unchanged."""
        ds = factory()
        ds.put({"v": 7}, metric_ref())
        (tmp_path / "repo").rename(tmp_path / "moved")
        moved = FileDatastore(PosixBackend(tmp_path / "moved"))
        assert moved.get(metric_ref()) == {"v": 7}

    def test_permission_respecting_removal(self, factory: Factory) -> None:
        """REQ-0004: where the file system forbids deleting the dataset, remove() refuses and keeps it."""
        import subprocess

        from nightshift.butler.datastores import DatastorePermissionError

        ds = factory()
        ds.put({"v": 1}, metric_ref())
        directory = Path(ds.backend.local_path(ds.record(metric_ref()).path)).parent  # type: ignore[attr-defined]  # a FileDatastore
        if os.geteuid() == 0:  # root ignores mode bits; the immutable attribute binds root too
            lock = ["chattr", "+i", str(directory)]
            unlock = ["chattr", "-i", str(directory)]
        else:  # pragma: no cover - CI runs as root
            lock, unlock = ["chmod", "555", str(directory)], ["chmod", "755", str(directory)]
        subprocess.run(lock, check=True)
        try:
            with pytest.raises(DatastorePermissionError):
                ds.remove(metric_ref())
            assert ds.get(metric_ref()) == {"v": 1}  # still fully there
        finally:
            subprocess.run(unlock, check=True)
        ds.remove(metric_ref())  # once permitted, it goes
        assert not ds.exists(metric_ref())


# ---------------------------------------------------------------------------------------------- S3
@pytest.mark.integration
class TestS3Datastore(DatastoreConformance, FileDatastoreFaults):
    @pytest.fixture
    def factory(self, s3_endpoint: str, unique_name: str) -> Factory:
        def make(**kw: Any) -> Datastore:
            return FileDatastore(S3Backend(unique_name, prefix="repo", endpoint_url=s3_endpoint, create_bucket=True),
                                 name="s3", **kw)

        return make

    def snapshot(self, ds: Datastore) -> Any:
        assert isinstance(ds, FileDatastore)
        b = ds.backend
        # S3Proxy's filesystem store lists directories as "dir/" keys; real S3 has none.
        keys = {o["Key"] for p in b.client.get_paginator("list_objects_v2").paginate(Bucket=b.bucket)
                for o in p.get("Contents", []) if not o["Key"].endswith("/")}
        staged = set(os.listdir(b._staging))  # local staging must be empty too
        return keys, staged

    def fail_record_write(self, ds: FileDatastore, monkeypatch: pytest.MonkeyPatch) -> None:
        def put_object(**kw: Any) -> None:
            raise OSError("connection reset (injected)")

        monkeypatch.setattr(ds.backend.client, "put_object", put_object)

    def fail_publish(self, ds: FileDatastore, monkeypatch: pytest.MonkeyPatch) -> None:
        real = ds.backend.client.upload_file

        def upload_file(*a: Any, **kw: Any) -> None:
            real(*a, **kw)  # the bytes arrive, then the acknowledgement is lost
            raise OSError("connection reset after upload (injected)")

        monkeypatch.setattr(ds.backend.client, "upload_file", upload_file)

    def corrupt(self, ds: FileDatastore, ref: DatasetRef, data: bytes) -> None:
        b = ds.backend
        b.client.put_object(Bucket=b.bucket, Key=b.key(ds.record(ref).path), Body=data)


# ---------------------------------------------------------------------------------------------- WebDAV
@pytest.mark.integration
class TestDavDatastore(DatastoreConformance, FileDatastoreFaults):
    """The same suite against the real wsgidav server of the local stack, with its bearer token."""

    @pytest.fixture
    def factory(self, dav_endpoint: str, unique_name: str) -> Factory:
        def make(**kw: Any) -> Datastore:
            return FileDatastore(DavBackend(f"{dav_endpoint}/{unique_name}/repo"), name="dav", **kw)

        return make

    def snapshot(self, ds: Datastore) -> Any:
        assert isinstance(ds, FileDatastore)
        b = ds.backend
        files = set(b.list(""))
        staged_remote = {p for p in _dav_files(b, "_staging")}  # uploads in flight must be gone too
        staged_local = set(os.listdir(b._staging))
        return files, staged_remote, staged_local

    def fail_record_write(self, ds: FileDatastore, monkeypatch: pytest.MonkeyPatch) -> None:
        def put_bytes(rel: str, data: bytes) -> None:
            raise OSError("connection reset (injected)")

        monkeypatch.setattr(ds.backend, "put_bytes", put_bytes)

    def fail_publish(self, ds: FileDatastore, monkeypatch: pytest.MonkeyPatch) -> None:
        real = ds.backend.move

        def move(src: str, dst: str) -> None:
            real(src, dst)  # the file is in place, then the answer is lost
            raise OSError("connection reset after MOVE (injected)")

        monkeypatch.setattr(ds.backend, "move", move)

    def corrupt(self, ds: FileDatastore, ref: DatasetRef, data: bytes) -> None:
        b = ds.backend
        r = b.client.put(b.url(ds.record(ref).path), content=data)
        assert r.status_code in (201, 204)


def _dav_files(backend: DavBackend, collection: str) -> list[str]:
    """Files in one collection of the backend, by a raw PROPFIND (the backend's list() skips ``_staging``)."""
    r = backend.client.request("PROPFIND", backend.url(collection + "/"), headers={"Depth": "1"})
    if r.status_code == 404:
        return []
    return [rel for rel, is_col in backend._parse_multistatus(r.content) if not is_col]


# ---------------------------------------------------------------------------------------------- memory
class TestInMemoryDatastore(DatastoreConformance):
    @pytest.fixture
    def factory(self) -> Factory:
        return lambda **kw: InMemoryDatastore(**kw)

    def test_get_returns_the_same_object(self, factory: Factory) -> None:
        """REQ-0027: storage elision — no I/O, the object itself comes back."""
        ds = factory()
        obj = {"v": 1}
        ds.put(obj, metric_ref())
        assert ds.get(metric_ref()) is obj


# ---------------------------------------------------------------------------------------------- chained
class TestChainedDatastore(DatastoreConformance):
    @pytest.fixture
    def factory(self, tmp_path: Path) -> Factory:
        from nightshift.butler.formatters import FormatterFactory

        def make(**kw: Any) -> Datastore:
            fits_store = FileDatastore(PosixBackend(tmp_path / "fits"), name="fits", **kw)
            parquet_store = FileDatastore(
                PosixBackend(tmp_path / "parquet"), name="parquet",
                formatters=FormatterFactory({"storage_classes": {"AstropyTable": "parquet"}}), **kw,
            )
            return ChainedDatastore([fits_store, parquet_store])

        return make

    def snapshot(self, ds: Datastore) -> Any:
        assert isinstance(ds, ChainedDatastore)
        return [posix_snapshot(c.backend.root) for c in ds.children]  # type: ignore[attr-defined]  # children are FileDatastores

    def test_one_put_writes_each_child_in_its_own_format(self, factory: Factory) -> None:
        """REQ-0063."""
        ds = factory()
        assert isinstance(ds, ChainedDatastore)
        ds.put(Table({"a": [1, 2]}), src_ref())
        uris = [c.get_uri(src_ref()) for c in ds.children]
        assert uris[0].endswith(".fits") and uris[1].endswith(".parq")
        for child in ds.children:
            assert list(child.get(src_ref())["a"]) == [1, 2]

    def test_failure_in_second_child_removes_first_copy(self, factory: Factory, monkeypatch) -> None:
        ds = factory()
        assert isinstance(ds, ChainedDatastore)
        before = self.snapshot(ds)
        from nightshift.butler.formatters._tables import ParquetFormatter

        def boom(self: Any, obj: Any, path: Path) -> None:
            raise FormatterError("injected")

        monkeypatch.setattr(ParquetFormatter, "write", boom)
        with pytest.raises(FormatterError):
            ds.put(Table({"a": [1]}), src_ref())
        assert self.snapshot(ds) == before

    def test_constraints_route_datasets(self, tmp_path: Path) -> None:
        from nightshift.butler.datastores import Constraints

        mem = InMemoryDatastore(constraints=Constraints(accept=["metric"]))
        files = FileDatastore(PosixBackend(tmp_path / "f"), constraints=Constraints(reject=["metric"]))
        ds = ChainedDatastore([mem, files])
        ds.put({"v": 1}, metric_ref())
        ds.put(Table({"a": [1]}), src_ref())
        assert mem.exists(metric_ref()) and not files.exists(metric_ref())
        assert files.exists(src_ref()) and not mem.exists(src_ref())
