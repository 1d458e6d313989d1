"""The datastore-writer service against the real Kafka and S3 server: dataset.write -> the staged file in the
datastore (POSIX and S3) -> dataset.stored v2; checksum mismatch and conflicts dead-lettered; redelivery idempotent.
No registry row is written (the registry service does that)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import boto3
import pytest
from confluent_kafka import Producer

from nightshift.butler import Butler
from nightshift.butler.datastores import open_file_datastore, staged_dataset_ref
from nightshift.events import DatasetStored, DatasetWrite, decode, encode, ensure_topics

from .ap_support import ServiceProcess, TopicReader, header

pytestmark = pytest.mark.integration

RUN = "TestCam/prompt/20261206"


def _write_event(dataset_id: uuid.UUID, detector: int, staging_uri: str, checksum: str) -> DatasetWrite:
    return DatasetWrite(dataset_id=dataset_id, dataset_type="ap_metrics", storage_class="StructuredDataDict", run=RUN,
                        data_id={"instrument": "TestCam", "visit": "2026120600001", "detector": str(detector)},
                        staging_uri=staging_uri, checksum=checksum)


@pytest.mark.parametrize("datastore", ["posix", "s3"])
def test_staged_files_are_persisted_once_and_bad_writes_dead_lettered(
        datastore: str, tmp_path: Path, kafka_bootstrap: str, s3_endpoint: str, unique_name: str) -> None:
    prefix = f"{unique_name}."
    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=unique_name)
    config = ({"cls": "s3", "name": "s3", "bucket": unique_name, "prefix": "repo", "endpoint_url": s3_endpoint}
              if datastore == "s3" else None)
    repo = tmp_path / "repo"
    Butler.create(repo, datastore=config, register=False).close()
    staging = tmp_path / "staging"
    staging.mkdir()
    docs = {}
    for name, doc in {"a": {"detector": 0}, "b": {"detector": 1}, "c": {"detector": 2}}.items():
        path = staging / f"{name}.json"
        path.write_text(json.dumps(doc))
        docs[name] = (path, hashlib.sha256(path.read_bytes()).hexdigest())
    s3.upload_file(str(docs["b"][0]), unique_name, "staging/b.json")  # b is staged on S3
    ids = {n: uuid.uuid4() for n in docs}
    writes = [
        _write_event(ids["a"], 0, str(docs["a"][0]), docs["a"][1]),
        _write_event(ids["b"], 1, f"s3://{unique_name}/staging/b.json", docs["b"][1]),
        _write_event(ids["a"], 0, str(docs["a"][0]), docs["a"][1]),  # a redelivery
        _write_event(ids["c"], 2, str(docs["c"][0]), docs["a"][1]),  # c's bytes, a's checksum: mismatch
        _write_event(ids["a"], 0, str(docs["c"][0]), docs["c"][1]),  # other bytes for a's id: conflict
    ]
    topics = [prefix + t for t in ("dataset.write", "dataset.write.dlq", "dataset.stored")]
    ensure_topics(kafka_bootstrap, topics, partitions=1)  # one partition: the writes are handled in order
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for event in writes:
        producer.produce(topics[0], encode(event), key=str(event.dataset_id))
    assert producer.flush(60) == 0
    svc = ServiceProcess("datastore-writer", {
        "NIGHTSHIFT_KAFKA_BOOTSTRAP": kafka_bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": prefix,
        "NIGHTSHIFT_CONSUMER_GROUP": f"writer-{unique_name}", "NIGHTSHIFT_BUTLER_REPO": str(repo),
        "NIGHTSHIFT_S3_ENDPOINT_URL": s3_endpoint, "NIGHTSHIFT_MAX_BATCH": "1",
    }, tmp_path)
    reader = TopicReader(kafka_bootstrap, topics)
    try:
        reader.until(lambda m: len(m[topics[2]]) >= 3 and len(m[topics[1]]) >= 2, "3 dataset.stored and 2 DLQ",
                     svc.alive, svc.output)
        stored = [decode(m.value()) for m in reader.messages[topics[2]]]
        assert all(isinstance(e, DatasetStored) for e in stored)
        events = [e for e in stored if isinstance(e, DatasetStored)]
        assert [e.dataset_id for e in events] == [ids["a"], ids["b"], ids["a"]]
        assert [m.key().decode() for m in reader.messages[topics[2]]] == [str(e.dataset_id) for e in events]
        a, b, a_again = events
        assert (a.checksum, a.size_bytes, a.storage_class) == (docs["a"][1], docs["a"][0].stat().st_size,
                                                               "StructuredDataDict")
        assert a.data_id == {"instrument": "TestCam", "visit": "2026120600001", "detector": "0"}
        assert (a_again.uri, a_again.checksum, a_again.size_bytes) == (a.uri, a.checksum, a.size_bytes)
        assert b.checksum == docs["b"][1] and a.uri.startswith("s3://" if datastore == "s3" else "file://")
        metrics = svc.get("/metrics")
        for outcome, n in (("stored", 2), ("already_stored", 1), ("failed", 2)):
            assert f'nightshift_datastore_writes_total{{outcome="{outcome}"}} {n}.0' in metrics
        mismatch, conflict = reader.messages[topics[1]]
        assert header(mismatch, "dlq.error_type") == "checksum_mismatch"
        assert header(conflict, "dlq.error_type") == "dataset_conflict"
        assert "already stored" in header(conflict, "dlq.error_message")
        store = open_file_datastore(repo)
        for name, det in (("a", 0), ("b", 1)):
            ref = staged_dataset_ref("ap_metrics", "StructuredDataDict",
                                     {"instrument": "TestCam", "visit": "2026120600001", "detector": str(det)}, RUN,
                                     ids[name])
            assert store.get(ref) == {"detector": det}
        c_ref = staged_dataset_ref("ap_metrics", "StructuredDataDict",
                                   {"instrument": "TestCam", "visit": "2026120600001", "detector": "2"}, RUN, ids["c"])
        assert not store.exists(c_ref)
        with Butler(repo) as butler:  # the writer wrote no registry row: not even the dataset type or the run
            assert "ap_metrics" not in {t.name for t in butler.registry.query_dataset_types()}
            assert RUN not in butler.registry.query_collections()
    finally:
        assert svc.stop() == 0, svc.output()
        reader.close()


def test_a_writer_killed_mid_stream_and_restarted_stores_every_dataset_once(
        tmp_path: Path, kafka_bootstrap: str, unique_name: str) -> None:
    prefix = f"{unique_name}."
    repo = tmp_path / "repo"
    Butler.create(repo, register=False).close()
    writes = []
    for det in range(12):
        path = tmp_path / f"staged-{det}.json"
        path.write_text(json.dumps({"detector": det}))
        writes.append(_write_event(uuid.uuid4(), det, str(path), hashlib.sha256(path.read_bytes()).hexdigest()))
    topics = [prefix + t for t in ("dataset.write", "dataset.write.dlq", "dataset.stored")]
    ensure_topics(kafka_bootstrap, topics, partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for event in writes:
        producer.produce(topics[0], encode(event), key=str(event.dataset_id))
    assert producer.flush(60) == 0
    env = {"NIGHTSHIFT_KAFKA_BOOTSTRAP": kafka_bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": prefix,
           "NIGHTSHIFT_CONSUMER_GROUP": f"writer-{unique_name}", "NIGHTSHIFT_BUTLER_REPO": str(repo),
           "NIGHTSHIFT_MAX_BATCH": "2", "NIGHTSHIFT_CONCURRENCY": "2"}
    reader = TopicReader(kafka_bootstrap, topics)
    first = ServiceProcess("datastore-writer", env, tmp_path)
    second: ServiceProcess | None = None
    want = {e.dataset_id for e in writes}
    try:
        reader.until(lambda m: len(m[topics[2]]) >= 1, "the first dataset.stored", first.alive, first.output)
        first.proc.kill()  # SIGKILL: no drain
        first.proc.wait(60)
        second = ServiceProcess("datastore-writer", env, tmp_path)
        reader.until(lambda m: {getattr(decode(x.value()), "dataset_id", None) for x in m[topics[2]]} >= want,
                     "dataset.stored of every write", second.alive, second.output)
        assert second.stop() == 0, second.output()
        by_id: dict[uuid.UUID, set[tuple[str, str | None]]] = {}
        for m in reader.messages[topics[2]]:
            stored = decode(m.value())
            assert isinstance(stored, DatasetStored)
            by_id.setdefault(stored.dataset_id, set()).add((stored.uri, stored.checksum))
        assert all(len(v) == 1 for v in by_id.values())  # a repeat is the same dataset, same file
        store = open_file_datastore(repo)
        for event in writes:
            ref = staged_dataset_ref(event.dataset_type, event.storage_class, event.data_id, event.run,
                                     event.dataset_id)
            assert store.get(ref) == {"detector": int(event.data_id["detector"])}
        assert reader.messages[topics[1]] == []
    finally:
        for svc in (first, second):
            if svc is not None:
                svc.stop()
        reader.close()
