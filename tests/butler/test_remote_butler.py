"""The registry service's library on a real PostgreSQL registry: batched registration and the remote butler.

Registration: one batch, idempotent on the dataset id, with every kind of
rejection reported by index and the rest registered. The remote butler: a
client with only an URL and a token queries, finds and reads (full and
cutout) datasets through the HTTP read API, and is refused without the token.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from pydantic import SecretStr
from registry_support import populate
from test_formatters import make_exposure

from nightshift.butler import Butler, DatasetRef, DatasetType
from nightshift.butler.datastores import DatasetNotFoundError
from nightshift.butler.formatters import Box
from nightshift.butler.registry import QuerySyntaxError, QueryTypeError
from nightshift.butler.remote import (
    BatchRegistrar,
    ButlerReadAPI,
    RemoteAuthenticationError,
    RemoteButler,
    StoredDataset,
)

pytestmark = pytest.mark.integration

CALEXP = DatasetType("calexp", ["instrument", "visit", "detector"], "Exposure")
RUN = "Cam/prompt/20250101"
TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def repo(tmp_path: Path, pg_dsn: str, unique_name: str) -> Iterator[Path]:
    Butler.create(tmp_path / "repo", registry_db=pg_dsn, registry_schema=unique_name).close()
    with Butler(tmp_path / "repo") as b:
        populate(b.registry)
        b.register_dataset_type(CALEXP)
    yield tmp_path / "repo"


def _stored(visit: int, detector: int, run: str = RUN, dataset_type: str = "calexp",
            storage_class: str | None = None, dataset_id: uuid.UUID | None = None) -> StoredDataset:
    data_id = {"instrument": "Cam", "visit": str(visit), "detector": str(detector)}
    typed = {"instrument": "Cam", "visit": visit, "detector": detector}
    ref_id = dataset_id or DatasetRef(DatasetType(dataset_type, list(typed), "Exposure"), typed, run).id
    return StoredDataset(ref_id, dataset_type, run, data_id, storage_class)


def test_a_batch_is_registered_once_and_bad_datasets_are_rejected_with_reasons(repo: Path) -> None:
    with Butler(repo) as butler:
        registrar = BatchRegistrar(butler.registry)
        good = [_stored(v, d) for v in range(3) for d in range(4)]
        first = registrar.register(good)
        assert (first.inserted, first.existing, first.rejected) == (12, 0, [])
        assert RUN in butler.registry.query_collections()  # the run was created
        again = registrar.register(good + good[:2])  # a redelivered batch, with duplicates inside it
        assert (again.inserted, again.existing, again.rejected) == (0, 14, [])

        new_type = StoredDataset(uuid.uuid4(), "diffim", RUN,
                                 {"instrument": "Cam", "visit": "1", "detector": "1", "band": "r"}, "Exposure")
        bad = [
            _stored(5, 0),                                                  # fine
            _stored(0, 1, dataset_id=good[5].dataset_id),                   # registered id, other data ID
            _stored(0, 0, dataset_id=uuid.uuid4()),                         # other id, registered data ID
            _stored(99, 0),                                                 # visit 99 has no record
            StoredDataset(uuid.uuid4(), "nosuchtype", RUN, {"instrument": "Cam"}),  # no storage class
            StoredDataset(uuid.uuid4(), "calexp", RUN, {"instrument": "Cam", "visit": "x", "detector": "0"}),
            new_type,                                                       # registered from its storage class
        ]
        butler.registry.register_collection("Cam/tagged")  # TAGGED: no datasets can be written to it
        bad.append(_stored(1, 1, run="Cam/tagged"))
        result = registrar.register(bad)
        reasons = {r.index: (r.error_type, r.reason) for r in result.rejected}
        assert set(reasons) == {1, 2, 3, 4, 5, 7}
        assert reasons[7][0] == "bad_run" and "TAGGED" in reasons[7][1]
        assert reasons[1][0] == "conflict" and "one id names one dataset" in reasons[1][1]
        assert reasons[2][0] == "conflict" and "already exists" in reasons[2][1]
        assert reasons[3][0] == "missing_dimension_record" and "visit=99" in reasons[3][1]
        assert reasons[4][0] == "unknown_dataset_type" and "storage_class" in reasons[4][1]
        assert reasons[5][0] == "bad_data_id"
        assert result.inserted == 2
        assert butler.registry.get_dataset_type("diffim").dimensions == ("detector", "instrument", "visit")
        assert len(butler.registry.query_datasets("calexp", RUN)) == 13
        assert butler.registry.get_dataset(new_type.dataset_id) is not None


class _Server:
    """The read API served by aiohttp on a loopback port, in a thread (the client under test is synchronous)."""

    def __init__(self, api: ButlerReadAPI) -> None:
        self._app = api.app()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._stop = asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> _Server:
        self._thread.start()
        assert self._started.wait(60), "the read API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        self._loop.close()


def test_the_remote_butler_reads_with_a_token_and_is_refused_without(repo: Path) -> None:
    exposures = {}
    with Butler(repo, run=RUN) as writer:
        for d in range(2):
            exposures[d] = make_exposure((512, 384), seed=d)  # large enough that a cutout is a small part
            writer.put(exposures[d], "calexp", instrument="Cam", visit=1, detector=d)
    api = ButlerReadAPI(lambda: Butler(repo), SecretStr(TOKEN), workers=2)
    with _Server(api) as server:
        url = f"http://127.0.0.1:{server.port}"
        with Butler.from_url(url, token=TOKEN, collections=RUN) as remote:
            assert isinstance(remote, RemoteButler) and TOKEN not in repr(remote)
            assert RUN in remote.registry.query_collections()
            refs = remote.registry.query_datasets("calexp", RUN, where="visit = v AND detector > d",
                                                  bind={"v": 1, "d": 0})
            assert [dict(r.data_id) for r in refs] == [{"detector": 1, "instrument": "Cam", "visit": 1}]
            # the where text is parsed on the server: a value cannot become SQL
            with pytest.raises((QueryTypeError, QuerySyntaxError)):
                remote.registry.query_datasets("calexp", RUN, where="visit = v", bind={"v": "1; DROP TABLE dataset"})
            with pytest.raises(QuerySyntaxError):
                remote.registry.query_datasets("calexp", RUN, where="visit = = 1")
            (visit,) = remote.registry.query_dimension_records("visit", data_id={"instrument": "Cam", "visit": 1})
            assert visit.seeing == pytest.approx(0.6) and visit.timespan is not None
            assert remote.registry.query_data_ids(["visit", "detector"], datasets=["calexp"], collections=RUN) == [
                {"instrument": "Cam", "visit": 1, "detector": 0}, {"instrument": "Cam", "visit": 1, "detector": 1}]
            whole = remote.get("calexp", instrument="Cam", visit=1, detector=1)
            np.testing.assert_array_equal(whole.image, exposures[1].image)
            stats = remote.datastore.backend.stats
            before = stats.bytes_received
            cut = remote.get(refs[0], parameters={"bbox": Box(2, 3, 10, 12)})
            np.testing.assert_array_equal(cut.image, exposures[1].image[3:12, 2:10])
            # a cutout travels as byte ranges: less than the file
            assert stats.bytes_received - before < remote.datastore.record(refs[0]).size
            assert remote.get_uri(refs[0]).startswith(f"{url}/api/v1/datastore/")
            assert remote.exists(refs[0])
            with pytest.raises(DatasetNotFoundError):
                remote.get("calexp", instrument="Cam", visit=2, detector=0)
        with pytest.raises(RemoteAuthenticationError, match="not accepted"):
            RemoteButler(url, token="wrong-" + TOKEN)
        with pytest.raises(RemoteAuthenticationError, match="no bearer token"):
            RemoteButler(url, token=None)


def test_the_remote_butler_reads_an_s3_datastore_by_byte_ranges(
        tmp_path: Path, pg_dsn: str, s3_endpoint: str, unique_name: str) -> None:
    """The datastore route serves an object store too: HEAD -> size, Range -> a ranged GetObject."""
    cfg = {"cls": "s3", "bucket": unique_name, "prefix": "repo", "endpoint_url": s3_endpoint, "create_bucket": True}
    Butler.create(tmp_path / "s3repo", datastore=cfg, registry_db=pg_dsn, registry_schema=unique_name).close()
    exposure = make_exposure((512, 384), seed=3)
    with Butler(tmp_path / "s3repo", run=RUN) as writer:
        populate(writer.registry)
        writer.register_dataset_type(CALEXP)
        ref = writer.put(exposure, "calexp", instrument="Cam", visit=2, detector=1)
    api = ButlerReadAPI(lambda: Butler(tmp_path / "s3repo"), SecretStr(TOKEN), workers=2)
    with _Server(api) as server, Butler.from_url(f"http://127.0.0.1:{server.port}", token=TOKEN) as remote:
        np.testing.assert_array_equal(remote.get(ref).image, exposure.image)  # a full read, checksum verified
        stats = remote.datastore.backend.stats
        before = stats.bytes_received
        cut = remote.get(ref, parameters={"bbox": Box(100, 200, 140, 230)})
        np.testing.assert_array_equal(cut.image, exposure.image[200:230, 100:140])
        assert stats.bytes_received - before < remote.datastore.record(ref).size
