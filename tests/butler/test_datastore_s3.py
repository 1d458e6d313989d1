"""S3 failure handling against real HTTP servers: unreachable, 500s (retried with backoff), 403."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_datastore_conformance import calexp_ref, metric_ref
from test_formatters import make_exposure

from nightshift.butler.datastores import (
    DatasetCorruptError,
    DatastoreCache,
    DatastoreError,
    DatastorePermissionError,
    FileDatastore,
    MissingLocalFileError,
    S3Backend,
    StorageUnavailableError,
    datastore_from_config,
)
from nightshift.butler.formatters import Box, FormatterFactory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 500
    hits: list[str] = []

    def _reply(self) -> None:
        type(self).hits.append(self.command)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
        if self.status == 403:
            body = b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>"
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _reply

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def failing_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"hits": [], "status": 500})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_server_is_retriable_error_after_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    ds = FileDatastore(S3Backend("b", endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=2,
                                 connect_timeout=0.5))
    with pytest.raises(StorageUnavailableError) as info:
        ds.put({"v": 1}, metric_ref())
    assert info.value.retriable
    assert "cannot reach" in str(info.value) and "2 attempt" in str(info.value)
    assert list(ds.backend._staging.iterdir()) == []  # nothing staged locally either


def test_server_500s_are_retried_then_reported(failing_server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = failing_server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    ds = FileDatastore(S3Backend("b", endpoint_url=url, max_attempts=3))
    with pytest.raises(StorageUnavailableError, match="HTTP 500"):
        ds.get(metric_ref())
    assert len(handler.hits) == 3  # one request + two retries, then the error (not retried forever)


def test_access_denied_is_permission_error(failing_server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = failing_server
    handler.status = 403
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    ds = FileDatastore(S3Backend("b", endpoint_url=url, max_attempts=3))
    with pytest.raises(DatastorePermissionError):
        ds.put({"v": 1}, metric_ref())
    assert len(handler.hits) <= 2  # not retried (a 403 will not go away)


@pytest.mark.integration
def test_remote_reads_go_through_the_cache(tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    """REQ-0058: the second read is served from the local cache."""
    cache = DatastoreCache(tmp_path / "cache")
    ds = FileDatastore(S3Backend(unique_name, endpoint_url=s3_endpoint, create_bucket=True), cache=cache)
    ds.put({"v": 1}, metric_ref())
    assert ds.get(metric_ref()) == {"v": 1}
    assert (cache.misses, cache.hits) == (1, 0)
    assert ds.get(metric_ref()) == {"v": 1}
    assert (cache.misses, cache.hits) == (1, 1)


@pytest.mark.integration
def test_fail_rather_than_fetch(tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    """REQ-0054: configured not to fetch, a dataset missing locally is an error."""
    config = {"cls": "s3", "bucket": unique_name, "endpoint_url": s3_endpoint, "create_bucket": True}
    writer = datastore_from_config(config, base=tmp_path)
    writer.put({"v": 1}, metric_ref())
    reader = datastore_from_config({**config, "cache": {"directory": "c", "fetch": False}}, base=tmp_path)
    with pytest.raises(MissingLocalFileError):
        reader.get(metric_ref())
    fetching = datastore_from_config({**config, "cache": {"directory": "c"}}, base=tmp_path)
    assert fetching.get(metric_ref()) == {"v": 1}  # now cached ...
    assert reader.get(metric_ref()) == {"v": 1}  # ... so the no-fetch reader succeeds


@pytest.mark.integration
def test_corrupt_download_is_not_cached(tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    cache = DatastoreCache(tmp_path / "cache")
    ds = FileDatastore(S3Backend(unique_name, endpoint_url=s3_endpoint, create_bucket=True), cache=cache)
    ds.put({"v": 1}, metric_ref())
    b = ds.backend
    b.client.put_object(Bucket=b.bucket, Key=b.key(ds.record(metric_ref()).path), Body=b'{"v": 2}')
    with pytest.raises(DatasetCorruptError):
        ds.get(metric_ref())
    assert cache.entries() == []


# ------------------------------------------------------------------------------------ no folder markers
_WRITES = ("PutObject", "CreateMultipartUpload", "UploadPart", "CopyObject")


def _record_written_keys(backend: S3Backend) -> list[str]:
    """Every object key the client sends a write request for, from botocore's own event hooks."""
    return _record_keys(backend, _WRITES)


def _record_keys(backend: S3Backend, operations: tuple[str, ...]) -> list[str]:
    """Every object key the client sends one of ``operations`` for, from now on."""
    keys: list[str] = []

    def hook(params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        if model.name in operations:
            keys.append(params["Key"])

    backend.client.meta.events.register("provide-client-params.s3.*", hook)
    return keys


def _raw_keys(backend: S3Backend) -> list[str]:
    pages = backend.client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.integration
def test_no_folder_marker_keys_are_written(s3_endpoint: str, unique_name: str) -> None:
    """The datastore writes object keys only, never ``prefix/``-style folder markers.

    S3Proxy's filesystem backend *lists* each directory of its store as a key
    ending in ``/`` (real S3 does not); those entries must be neither written
    by us nor treated as datastore files (deleting one takes S3Proxy ~10 s).
    """
    backend = S3Backend(unique_name, prefix="deep/repo", endpoint_url=s3_endpoint, create_bucket=True)
    assert _raw_keys(backend) == []  # creating a datastore with a prefix writes nothing, no "deep/repo/"
    written = _record_written_keys(backend)
    ds = FileDatastore(backend, clobber=True, formatters=FormatterFactory(
        {"storage_classes": {"Exposure": {"formatter": "hdf5_exposure", "options": {"compression": "gzip"}}}}))
    refs = [metric_ref(v) for v in range(3)]
    for ref in refs:
        ds.put({"v": 1}, ref)
    ds.put({"v": 2}, refs[0])  # clobber: copy aside, upload, delete the copy
    exposure = make_exposure((32, 32))
    ds.put(exposure, calexp_ref())
    cut = ds.get(calexp_ref(), parameters={"bbox": Box(4, 8, 20, 16)})  # HDF5 through S3
    np.testing.assert_array_equal(cut.image, exposure.image[8:16, 4:20])
    assert written and all(k.startswith("deep/repo/") for k in written)
    assert [k for k in written if k.endswith("/")] == []
    files = sorted(backend.list(""))  # listing by prefix needs no markers
    assert len(files) == 8 and not any(f.endswith("/") for f in files)
    assert sorted(backend.list("_records")) == sorted(f for f in files if f.startswith("_records/"))
    assert len(list(ds.records())) == 4 and ds.get(refs[0]) == {"v": 2}
    # Whatever ends in "/" in the raw listing is S3Proxy's view of a directory holding our objects.
    objects = [k for k in _raw_keys(backend) if not k.endswith("/")]
    assert sorted(objects) == sorted(f"deep/repo/{f}" for f in files)
    assert all(any(o.startswith(d) for o in objects) for d in _raw_keys(backend) if d.endswith("/"))
    deleted = _record_keys(backend, ("DeleteObject", "DeleteObjects"))
    for ref in [*refs, calexp_ref()]:
        ds.remove(ref)
    assert sorted(deleted) == sorted(objects)  # only real objects were deleted, each once; no directory entry
    assert _raw_keys(backend) == [] and list(backend.list("")) == []  # and no marker is left behind


@pytest.mark.integration
def test_purge_trash_deletes_files_not_directory_entries(s3_endpoint: str, unique_name: str) -> None:
    """A trash left by a crash is purged file by file; S3Proxy's directory entries are not "files"."""
    ds = FileDatastore(S3Backend(unique_name, prefix="repo", endpoint_url=s3_endpoint, create_bucket=True))
    for visit in (1, 2):
        ds.put({"v": visit}, metric_ref(visit))
    ds.trash([metric_ref(1), metric_ref(2)])  # the process dies before DatastoreTrash.empty()
    assert not any(k.endswith("/") for k in ds.backend.list("_trash"))
    trashed = [k for k in _raw_keys(ds.backend) if k.startswith("repo/_trash/") and not k.endswith("/")]
    assert len(trashed) == 4  # two records + two files
    deleted = _record_keys(ds.backend, ("DeleteObject", "DeleteObjects"))
    assert ds.purge_trash() == 4  # directory entries were once counted and deleted too (~10 s each on S3Proxy)
    assert sorted(deleted) == sorted(trashed)  # each trashed object once, no directory entry
    assert _raw_keys(ds.backend) == []


def test_writing_a_directory_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    backend = S3Backend("b", prefix="repo", endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    for rel in ("", "a/dir/"):
        with pytest.raises(DatastoreError, match="folder markers"):
            backend.put_bytes(rel, b"")
        with pytest.raises(DatastoreError, match="folder markers"):
            backend.move("a/file", rel)
