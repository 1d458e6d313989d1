"""The ingest service and the raw watcher against the real Kafka (and S3): raws dropped -> raw.arrived ->
ingested into the repository -> raw.ingested; duplicates; unreadable raws dead-lettered with the reason.

The service runs as ``nightshift service ingest`` (a subprocess) with the watcher on (``NIGHTSHIFT_WATCH``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import pytest
from confluent_kafka import Message, Producer

from nightshift.butler import Butler
from nightshift.events import RawArrived, RawIngested, decode, encode, ensure_topics
from nightshift.obs import describe_raw
from nightshift.obs.sim import load_night, plan_night, write_night

from .ap_support import ServiceProcess, TopicReader, header

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two visits x two detectors of small (256 px) simulated raws."""
    out = tmp_path_factory.mktemp("night")
    write_night(out, plan_night(2, instrument="TestCam"), [0, 1], detector_size=256)
    return out


def _raws(night: Path) -> list[Path]:
    return sorted((night / "raw").rglob("*.fits"))


def test_dropped_raws_are_announced_ingested_once_and_bad_ones_dead_lettered(
        night: Path, tmp_path: Path, kafka_bootstrap: str, s3_endpoint: str, unique_name: str) -> None:
    prefix = f"{unique_name}."
    repo = tmp_path / "repo"
    Butler.create(repo, register=False).close()
    drop = tmp_path / "drop"
    drop.mkdir()
    topics = [prefix + t for t in ("raw.arrived", "raw.arrived.dlq", "raw.ingested")]
    ensure_topics(kafka_bootstrap, topics, partitions=2)
    raws = _raws(night)
    for raw in raws[:2]:  # some raws before the service starts, the rest while it runs
        shutil.copyfile(raw, drop / raw.name)
    svc = ServiceProcess("ingest", {
        "NIGHTSHIFT_KAFKA_BOOTSTRAP": kafka_bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": prefix,
        "NIGHTSHIFT_CONSUMER_GROUP": f"ingest-{unique_name}", "NIGHTSHIFT_BUTLER_REPO": str(repo),
        "NIGHTSHIFT_WATCH": str(drop), "NIGHTSHIFT_WATCH_STATE": str(tmp_path / "watch.state"),
        "NIGHTSHIFT_WATCH_INTERVAL_S": "0.2", "NIGHTSHIFT_WATCH_REJECT_AFTER_S": "1",
    }, tmp_path)
    reader = TopicReader(kafka_bootstrap, topics)
    arrived, dlq, ingested = topics
    try:
        for raw in raws[2:]:
            tmp = drop / f".{raw.name}.tmp"
            shutil.copyfile(raw, tmp)
            tmp.rename(drop / raw.name)
        (drop / "broken.fits").write_bytes(b"SIMPLE  = T" + b"\0" * 200)  # no END card: unreadable header
        reader.until(lambda m: len(m[ingested]) >= 4 and len(m[dlq]) >= 1, "4 raw.ingested and 1 watcher reject",
                     svc.alive, svc.output)
        events = [decode(m.value()) for m in reader.messages[ingested]]
        assert all(isinstance(e, RawIngested) for e in events)
        got = {(e.visit, e.detector) for e in events if isinstance(e, RawIngested)}
        assert got == {(v, d) for v in (2026120600001, 2026120600002) for d in (0, 1)}
        keys = {m.key().decode() for m in reader.messages[ingested]}
        assert keys == {"TestCam/0", "TestCam/1"}  # keyed "{instrument}/{detector}"
        with Butler(repo) as butler:
            refs = butler.registry.query_datasets("raw", collections="TestCam/raw/all")
            assert {r.id for r in refs} == {e.dataset_id for e in events if isinstance(e, RawIngested)}
        (reject,) = reader.messages[dlq]
        assert "broken.fits" in header(reject, "uri") and "END" in header(reject, "dlq.error_message")

        # Redelivery: the same raw.arrived twice more, and one for a raw nobody can read.
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        (again,) = describe_raw(str(drop / raws[0].name))
        for _ in range(2):
            producer.produce(arrived, encode(again), key=b"TestCam/0")
        ghost = RawArrived(instrument="TestCam", group_id="g", visit=1, detector=0, snap=0,
                           uri=str(drop / "never-written.fits"), size_bytes=1, checksum="0" * 64,
                           observed_at=again.observed_at)
        producer.produce(arrived, encode(ghost), key=b"TestCam/0")
        assert producer.flush(60) == 0
        reader.until(lambda m: len(m[ingested]) >= 6 and len(m[dlq]) >= 2, "the redelivered raw.ingested and the DLQ",
                     svc.alive, svc.output)
        first = next(e for e in events if isinstance(e, RawIngested) and (e.visit, e.detector) == (again.visit, 0))
        for m in reader.messages[ingested][4:]:
            repeat = decode(m.value())
            assert isinstance(repeat, RawIngested)
            assert (repeat.dataset_id, repeat.uri, repeat.run) == (first.dataset_id, first.uri, first.run)
        dead = reader.messages[dlq][1]
        assert header(dead, "dlq.error_type") == "obs_raw_ingest"
        assert "never-written.fits" in header(dead, "dlq.error_message")
        with Butler(repo) as butler:
            assert len(butler.registry.query_datasets("raw", collections="TestCam/raw/all")) == 4
        assert len(reader.messages[arrived]) == 4 + 3  # the watcher announced each good raw once
        metrics = svc.get("/metrics")
        assert 'nightshift_ingest_raws_total{outcome="ingested"} 4.0' in metrics
        assert 'nightshift_ingest_raws_total{outcome="already_ingested"} 2.0' in metrics
        assert 'nightshift_ingest_raws_total{outcome="dead_lettered"} 1.0' in metrics
        assert '"ready": true' in svc.get("/readyz")
        assert svc.stop() == 0, svc.output()
        # A restarted watcher remembers what it announced: nothing new on raw.arrived.
        restarted = ServiceProcess("ingest", {
            "NIGHTSHIFT_KAFKA_BOOTSTRAP": kafka_bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": prefix,
            "NIGHTSHIFT_CONSUMER_GROUP": f"ingest-{unique_name}", "NIGHTSHIFT_BUTLER_REPO": str(repo),
            "NIGHTSHIFT_WATCH": str(drop), "NIGHTSHIFT_WATCH_STATE": str(tmp_path / "watch.state"),
            "NIGHTSHIFT_WATCH_INTERVAL_S": "0.2",
        }, tmp_path)
        shutil.copyfile(raws[0], drop / "late-copy-of-a-raw.fits")  # one genuinely new file: the marker
        reader.until(lambda m: len(m[arrived]) >= 8, "the restarted watcher's announcement", restarted.alive,
                     restarted.output)
        late = decode(reader.messages[arrived][-1].value())
        assert isinstance(late, RawArrived) and late.uri.endswith("late-copy-of-a-raw.fits")
        reader.until(lambda m: len(m[ingested]) >= 7, "the late copy's raw.ingested", restarted.alive,
                     restarted.output)
        assert restarted.stop() == 0, restarted.output()
        assert len(reader.messages[arrived]) == 8  # nothing announced twice after the restart
    finally:
        svc.stop()
        reader.close()


def test_a_raw_dropped_on_s3_is_announced_and_ingested(night: Path, tmp_path: Path, kafka_bootstrap: str,
                                                       s3_endpoint: str, unique_name: str) -> None:
    prefix = f"{unique_name}."
    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=unique_name)
    repo = tmp_path / "repo"
    Butler.create(repo, register=False).close()
    topics = [prefix + t for t in ("raw.arrived", "raw.arrived.dlq", "raw.ingested")]
    ensure_topics(kafka_bootstrap, topics, partitions=1)
    svc = ServiceProcess("ingest", {
        "NIGHTSHIFT_KAFKA_BOOTSTRAP": kafka_bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": prefix,
        "NIGHTSHIFT_CONSUMER_GROUP": f"ingest-{unique_name}", "NIGHTSHIFT_BUTLER_REPO": str(repo),
        "NIGHTSHIFT_S3_ENDPOINT_URL": s3_endpoint, "NIGHTSHIFT_WATCH": f"s3://{unique_name}/incoming/",
        "NIGHTSHIFT_WATCH_INTERVAL_S": "0.2",
    }, tmp_path)
    reader = TopicReader(kafka_bootstrap, topics)
    try:
        raw = _raws(night)[0]
        s3.upload_file(str(raw), unique_name, f"incoming/{raw.name}")
        reader.until(lambda m: len(m[topics[2]]) >= 1, "raw.ingested of the S3 raw", svc.alive, svc.output)
        (arrived,) = [decode(m.value()) for m in reader.messages[topics[0]]]
        assert isinstance(arrived, RawArrived) and arrived.uri == f"s3://{unique_name}/incoming/{raw.name}"
        out = decode(reader.messages[topics[2]][0].value())
        assert isinstance(out, RawIngested) and (out.visit, out.detector) == (arrived.visit, arrived.detector)
        with Butler(repo) as butler:
            (ref,) = butler.registry.query_datasets("raw", collections="TestCam/raw/all")
            assert ref.id == out.dataset_id and butler.get(ref).metadata["DETECTOR"] == arrived.detector
        assert reader.messages[topics[1]] == []
    finally:
        assert svc.stop() == 0, svc.output()
        reader.close()


def test_an_ingest_killed_mid_stream_and_restarted_loses_and_duplicates_no_dataset(
        tmp_path: Path, kafka_bootstrap: str, unique_name: str) -> None:
    night = tmp_path / "night"
    write_night(night, plan_night(4, instrument="TestCam"), [0, 1, 2, 3], detector_size=64)
    raws = _raws(night)
    prefix = f"{unique_name}."
    repo = tmp_path / "repo"
    Butler.create(repo, register=False).close()
    topics = [prefix + t for t in ("raw.arrived", "raw.arrived.dlq", "raw.ingested")]
    ensure_topics(kafka_bootstrap, topics, partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for raw in raws:
        (event,) = describe_raw(str(raw))
        producer.produce(topics[0], encode(event), key=f"TestCam/{event.detector}".encode())
    assert producer.flush(60) == 0
    env = {"NIGHTSHIFT_KAFKA_BOOTSTRAP": kafka_bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": prefix,
           "NIGHTSHIFT_CONSUMER_GROUP": f"ingest-{unique_name}", "NIGHTSHIFT_BUTLER_REPO": str(repo),
           "NIGHTSHIFT_MAX_BATCH": "2"}  # small batches: the kill lands between commits
    reader = TopicReader(kafka_bootstrap, topics)
    first = ServiceProcess("ingest", env, tmp_path)
    second: ServiceProcess | None = None
    try:
        reader.until(lambda m: len(m[topics[2]]) >= 1, "the first raw.ingested", first.alive, first.output)
        first.proc.kill()  # SIGKILL: no drain, whatever was in flight is redelivered
        first.proc.wait(60)
        second = ServiceProcess("ingest", env, tmp_path)
        want = {(v.visit, d) for v in load_night(night) for d in range(4)}

        def all_ingested(m: dict[str, list[Message]]) -> bool:
            return {(e.visit, e.detector) for e in (decode(x.value()) for x in m[topics[2]])
                    if isinstance(e, RawIngested)} >= want

        reader.until(all_ingested, f"raw.ingested of all {len(want)} raws", second.alive, second.output)
        assert second.stop() == 0, second.output()
        events = [decode(m.value()) for m in reader.messages[topics[2]]]
        ids = {(e.visit, e.detector): e.dataset_id for e in events if isinstance(e, RawIngested)}
        assert all(isinstance(e, RawIngested) and ids[(e.visit, e.detector)] == e.dataset_id for e in events)
        with Butler(repo) as butler:
            refs = butler.registry.query_datasets("raw", collections="TestCam/raw/all")
            assert sorted(str(r.id) for r in refs) == sorted(str(i) for i in ids.values())  # each raw once
            for ref in refs:  # every dataset's file is in the datastore
                assert butler.get(ref).metadata["DETECTOR"] == ref.data_id["detector"]
        assert reader.messages[topics[1]] == []
    finally:
        for svc in (first, second):
            if svc is not None:
                svc.stop()
        reader.close()
