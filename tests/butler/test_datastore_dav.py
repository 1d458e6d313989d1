"""The WebDAV datastore against the real wsgidav server of the local stack (DMS-MWBT-REQ-0028, 0029).

Beyond the conformance suite (``test_datastore_conformance.TestDavDatastore``):
cutouts transfer only the bytes they need (HTTP ``Range``), errors name the
URL and the HTTP status and never the token, and a repository whose files are
on the WebDAV server works through the ordinary ``Butler`` API.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
from test_datastore_conformance import calexp_ref, metric_ref
from test_formatters import make_exposure

from nightshift.butler import DatasetType
from nightshift.butler._butler import Butler
from nightshift.butler.datastores import (
    DatasetNotFoundError,
    DatastorePermissionError,
    DavBackend,
    FileDatastore,
    StorageUnavailableError,
    datastore_from_config,
)
from nightshift.butler.formatters import Box

pytestmark = pytest.mark.integration


def _datastore(dav_endpoint: str, name: str, **kw: object) -> FileDatastore:
    return FileDatastore(DavBackend(f"{dav_endpoint}/{name}/repo"), name="dav", **kw)  # type: ignore[arg-type]  # test options forwarded as given


def test_cutout_reads_only_the_bytes_it_needs(dav_endpoint: str, unique_name: str) -> None:
    """A 32x32 cutout of a 1024x1024 exposure transfers its rows and the headers, not the 12 MB file."""
    ds = _datastore(dav_endpoint, unique_name)
    exp = make_exposure((1024, 1024))
    ref = calexp_ref()
    ds.put(exp, ref)
    size = ds.record(ref).size
    backend = ds.backend
    before = backend.stats.bytes_received
    cut = ds.get(ref, parameters={"bbox": Box(100, 200, 132, 232)})
    cutout_bytes = backend.stats.bytes_received - before
    np.testing.assert_array_equal(cut.image, exp.image[200:232, 100:132])
    np.testing.assert_array_equal(cut.mask, exp.mask[200:232, 100:132])
    np.testing.assert_array_equal(cut.variance, exp.variance[200:232, 100:132])
    assert cut.origin == (exp.origin[0] + 100, exp.origin[1] + 200)
    assert size > 10_000_000
    assert cutout_bytes < size // 50, f"a 32x32 cutout pulled {cutout_bytes} of {size} bytes"
    # a component read (the WCS, from a header) is also ranged
    before = backend.stats.bytes_received
    wcs = ds.get(ref.make_component_ref("wcs"))
    np.testing.assert_allclose(wcs.wcs.crval, exp.wcs.wcs.crval)
    assert backend.stats.bytes_received - before < size // 100
    # a full read is checksum-verified, so it fetches the file
    before = backend.stats.bytes_received
    np.testing.assert_array_equal(ds.get(ref).image, exp.image)
    assert backend.stats.bytes_received - before >= size


def test_wrong_token_names_url_and_status_never_the_token(dav_endpoint: str, unique_name: str) -> None:
    secret = "not-the-token-" + unique_name
    backend = DavBackend(f"{dav_endpoint}/{unique_name}", token=secret, max_attempts=1)
    ds = FileDatastore(backend, name="dav")
    with pytest.raises(DatastorePermissionError) as info:
        ds.put({"v": 1}, metric_ref())
    message = str(info.value)
    assert "401" in message and f"{dav_endpoint}/{unique_name}/" in message
    assert secret not in message and secret not in repr(backend) and secret not in repr(ds.to_dict())
    with pytest.raises(DatastorePermissionError, match="401"):
        ds.get(metric_ref())


def test_no_token_is_refused(dav_endpoint: str, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAV_TOKEN")
    backend = DavBackend(f"{dav_endpoint}/{unique_name}", max_attempts=1)
    with pytest.raises(DatastorePermissionError, match="HTTP 401.*DAV_TOKEN"):
        backend.put_bytes("x.json", b"{}")


def test_server_down_names_the_url(unique_name: str) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = DavBackend(f"dav://127.0.0.1:{port}/{unique_name}", token="t0ken-" + unique_name, max_attempts=2)
    with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{port}.*after 2 attempt") as info:
        backend.put_bytes("x.json", b"{}")
    assert info.value.retriable and "t0ken-" not in str(info.value)


def test_missing_file_and_listing(dav_endpoint: str, unique_name: str) -> None:
    backend = DavBackend(f"{dav_endpoint}/{unique_name}")
    assert backend.get_bytes("nope.json") is None and backend.size("nope.json") is None
    with pytest.raises(DatasetNotFoundError, match="404"):
        backend.open_ranged("nope.json")
    for rel in ("a/1.json", "a/b/2.json", "c d/3 %.json"):
        backend.put_bytes(rel, rel.encode())
    assert sorted(backend.list("")) == ["a/1.json", "a/b/2.json", "c d/3 %.json"]
    assert sorted(backend.list("a")) == ["a/1.json", "a/b/2.json"]
    assert backend.get_bytes("c d/3 %.json") == b"c d/3 %.json"
    backend.delete("a/1.json")
    backend.delete("a/1.json")  # absent is fine
    assert sorted(backend.list("a")) == ["a/b/2.json"]


def test_configured_from_the_environment(dav_endpoint: str, unique_name: str) -> None:
    """``cls: dav`` with no url takes ``DAV_ENDPOINT``; the token only ever comes from ``DAV_TOKEN``."""
    ds = datastore_from_config({"cls": "dav", "url": f"{dav_endpoint}/{unique_name}"})
    assert isinstance(ds, FileDatastore) and isinstance(ds.backend, DavBackend)
    ds.put({"v": 2}, metric_ref())
    assert ds.get(metric_ref()) == {"v": 2}
    assert ds.get_uri(metric_ref()).startswith(f"{dav_endpoint}/{unique_name}/")
    assert os.environ["DAV_TOKEN"] not in str(ds.to_dict())
    default = datastore_from_config({"cls": "dav"})
    assert isinstance(default, FileDatastore) and default.backend.root_url == dav_endpoint


def test_butler_repository_on_webdav(tmp_path: Path, dav_endpoint: str, unique_name: str) -> None:
    """REQ-0028: the ordinary Butler API over a repository whose files are on the WebDAV server."""
    cfg = {"cls": "dav", "url": f"{dav_endpoint}/{unique_name}/repo"}
    with Butler.create(tmp_path / "r", datastore=cfg) as b:
        b.registry.insert_dimension_records("instrument", [{"name": "Cam", "visit_max": 100, "detector_max": 10}])
        b.registry.insert_dimension_records("band", [{"name": "r"}])
        b.registry.insert_dimension_records("physical_filter", [{"instrument": "Cam", "name": "r_01", "band": "r"}])
        b.registry.insert_dimension_records("day_obs", [{"instrument": "Cam", "id": 20260101}])
        b.registry.insert_dimension_records("detector", [{"instrument": "Cam", "id": 1, "full_name": "D1",
                                                          "purpose": "SCIENCE"}])
        b.registry.insert_dimension_records("visit", [{"instrument": "Cam", "id": 1, "physical_filter": "r_01",
                                                       "day_obs": 20260101}])
        b.register_dataset_type(DatasetType("calexp", ["instrument", "visit", "detector"], "Exposure"))
        exp = make_exposure((64, 64))
        ref = b.put(exp, "calexp", instrument="Cam", visit=1, detector=1, run="r1")
        assert b.get_uri(ref).startswith(f"{dav_endpoint}/{unique_name}/repo/r1/")
    with Butler(tmp_path / "r", collections=["r1"]) as b:
        cut = b.get("calexp", instrument="Cam", visit=1, detector=1, parameters={"bbox": Box(1, 2, 11, 12)})
        np.testing.assert_array_equal(cut.image, exp.image[2:12, 1:11])


def test_the_token_is_never_logged(dav_endpoint: str, unique_name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Even at DEBUG (httpx and httpcore log every request), no log line holds the token."""
    token = os.environ["DAV_TOKEN"]
    with caplog.at_level("DEBUG"):
        ds = _datastore(dav_endpoint, unique_name)
        ds.put(make_exposure((16, 16)), calexp_ref())
        ds.get(calexp_ref(), parameters={"bbox": Box(0, 0, 4, 4)})
        bad = DavBackend(f"{dav_endpoint}/{unique_name}", token=token + "x", max_attempts=1)
        with pytest.raises(DatastorePermissionError):
            bad.get_bytes("x")
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # the requests were logged...
    assert token not in caplog.text  # ...without the token


def test_server_errors_are_retried_then_reported(unique_name: str) -> None:
    """5xx answers are retried with backoff; then StorageUnavailableError names the URL and the status."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            hits.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"dav://127.0.0.1:{server.server_address[1]}/{unique_name}"
        backend = DavBackend(url, token="t", max_attempts=3)
        with pytest.raises(StorageUnavailableError, match=rf"{url}/x\.json: HTTP 503 .*after 3 attempt"):
            backend.get_bytes("x.json")
        assert len(hits) == 3
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_dav_urls() -> None:
    from nightshift.butler.datastores import DatastoreError
    from nightshift.butler.datastores._dav import http_url

    assert http_url("dav://h:1/p") == "http://h:1/p" and http_url("davs://h/p") == "https://h/p"
    assert http_url("https://h/p") == "https://h/p"
    with pytest.raises(DatastoreError, match="not a WebDAV URL"):
        http_url("s3://bucket/key")
