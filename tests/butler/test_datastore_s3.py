"""S3 failure handling against real HTTP servers: unreachable, 500s (retried with backoff), 403."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nightshift.butler.datastores import (
    DatasetCorruptError,
    DatastoreCache,
    DatastorePermissionError,
    FileDatastore,
    MissingLocalFileError,
    S3Backend,
    StorageUnavailableError,
    datastore_from_config,
)
from test_datastore_conformance import metric_ref


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
    t0 = time.monotonic()
    with pytest.raises(StorageUnavailableError, match="HTTP 500"):
        ds.get(metric_ref())
    assert len(handler.hits) == 3  # one request + two retries
    assert time.monotonic() - t0 < 30


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
