"""Publishing metrics to a REST endpoint (REQ-0072), against a real local HTTP server."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_support import populate

from nightshift.butler import DatasetType
from nightshift.butler._butler import Butler
from nightshift.butler.datastores import DatastoreError, StorageUnavailableError


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []
    status = 201

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def qa_service() -> Iterator[tuple[str, type[_Collector]]]:
    handler = type("C", (_Collector,), {"received": [], "status": 201})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/metrics", handler
    finally:
        server.shutdown()
        server.server_close()


def make_butler(tmp_path: Path, url: str) -> Butler:
    cfg = {"cls": "chained", "datastores": [
        {"cls": "posix", "root": "datastore"},
        {"cls": "rest", "url": url, "accept": ["metric"], "max_attempts": 2},
    ]}
    Butler.create(tmp_path / "repo", datastore=cfg).close()
    b = Butler(tmp_path / "repo", run="ci")
    populate(b.registry)
    b.register_dataset_type(DatasetType("metric", ["instrument", "visit"], "StructuredDataDict"))
    b.register_dataset_type(DatasetType("other", ["instrument", "visit"], "StructuredDataDict"))
    return b


def test_metric_is_stored_and_published(tmp_path: Path, qa_service) -> None:
    url, handler = qa_service
    with make_butler(tmp_path, url) as b:
        ref = b.put({"value": 0.93, "unit": "arcsec"}, "metric", instrument="Cam", visit=1)
        b.put({"x": 1}, "other", instrument="Cam", visit=1)  # not accepted by the REST child
        assert handler.received == [{"dataset_type": "metric", "data_id": {"instrument": "Cam", "visit": 1},
                                     "run": "ci", "id": str(ref.id), "value": {"value": 0.93, "unit": "arcsec"}}]
        assert b.get("metric", instrument="Cam", visit=1) == {"value": 0.93, "unit": "arcsec"}


def test_service_errors_fail_the_put_and_leave_nothing(tmp_path: Path, qa_service) -> None:
    url, handler = qa_service
    handler.status = 503
    with make_butler(tmp_path, url) as b:
        with pytest.raises(StorageUnavailableError):
            b.put({"value": 1}, "metric", instrument="Cam", visit=1)
        assert len(handler.received) == 2  # retried once
        assert not b.exists("metric", instrument="Cam", visit=1)
        assert not any(p.is_file() for p in (tmp_path / "repo" / "datastore").rglob("*") if "_records" not in str(p))
        handler.status = 400
        with pytest.raises(DatastoreError):
            b.put({"value": 1}, "metric", instrument="Cam", visit=1)
