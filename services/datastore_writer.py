"""The datastore-writer service: ``dataset.write`` in, the staged file in the datastore, ``dataset.stored`` out.

A thin shell over :func:`nightshift.butler.datastores.store_staged_file`
(output staging, DMS-MWBT-REQ-0079). Per event:

1. build the dataset's ref from the event (the announced id);
2. fetch the staged file (POSIX path or ``s3://`` staging URI), verify its
   sha256 against the event, ingest it into the repository's file datastore
   (POSIX or S3) with the strong exception guarantee: a failure leaves the
   datastore as it was;
3. produce ``dataset.stored`` v2 (data ID, storage class, size, checksum),
   keyed by the dataset id; then the offset is committed.

Idempotent: a redelivered write finds the dataset stored with the same
checksum and produces ``dataset.stored`` again. A checksum mismatch, a
different checksum for a stored id (a conflict) or a missing staged file go
to ``dataset.write.dlq`` with the reason. No registry row is written here: the
registry service registers from ``dataset.stored``.

::

    NIGHTSHIFT_KAFKA_BOOTSTRAP=127.0.0.1:19092 NIGHTSHIFT_BUTLER_REPO=./repo nightshift service datastore-writer
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka import Message
from prometheus_client import Counter, Histogram
from pydantic import AliasChoices, Field

from nightshift.butler.datastores import (
    DatastoreError,
    StoredFile,
    open_file_datastore,
    staged_dataset_ref,
    store_staged_file,
)
from nightshift.events import AsyncProducer, DatasetStored, DatasetWrite, Event, EventConsumer, ensure_topics
from nightshift.service import Service, ServiceConsumer, ServiceSettings, setup_logging

log = logging.getLogger("nightshift.datastore_writer")

WRITES = Counter("nightshift_datastore_writes_total", "dataset.write events handled", ["outcome"])
BYTES = Counter("nightshift_datastore_written_bytes_total", "Bytes persisted from staging")
STORE_SECONDS = Histogram("nightshift_datastore_store_seconds", "Fetch, verify and persist of one staged file")


class DatastoreWriterSettings(ServiceSettings):
    """Datastore-writer settings (environment ``NIGHTSHIFT_*``, plus the common ones)."""

    service_name: str = "datastore-writer"
    consumer_group: str | None = "nightshift-datastore-writer"
    topic_prefix: str = ""
    #: The repository (``NIGHTSHIFT_BUTLER_REPO``): its ``butler.yaml`` says where the datastore is.
    butler_repo: str
    s3_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NIGHTSHIFT_S3_ENDPOINT_URL", "S3_ENDPOINT"))
    #: Delete each staged file once it is stored (otherwise the staging area's lifecycle removes it).
    remove_staged: bool = False
    partitions: int = Field(default=4, ge=1)
    max_batch: int = Field(default=32, ge=1)
    concurrency: int = Field(default=8, ge=1)  # staged files fetched and stored in parallel


class StagedWriter:
    """Handles ``dataset.write`` events against one file datastore."""

    def __init__(self, settings: DatastoreWriterSettings, producer: AsyncProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.topic = settings.topic_prefix + "dataset.stored"
        self.datastore = open_file_datastore(settings.butler_repo)
        self._s3: Any = None
        self._s3_lock = threading.Lock()

    def _client(self) -> Any:
        with self._s3_lock:  # one client for every staged download (boto3 clients are thread-safe, slow to make)
            if self._s3 is None:
                import boto3

                self._s3 = boto3.session.Session().client(
                    "s3", endpoint_url=self.settings.s3_endpoint_url or os.environ.get("S3_ENDPOINT"))
            return self._s3

    def _store(self, event: DatasetWrite) -> StoredFile:
        ref = staged_dataset_ref(event.dataset_type, event.storage_class, event.data_id, event.run, event.dataset_id)
        client = self._client() if event.staging_uri.startswith("s3://") else None
        return store_staged_file(self.datastore, ref, event.staging_uri, event.checksum, s3_client=client,
                                 remove_staged=self.settings.remove_staged)

    async def handle(self, event: Event, msg: Message) -> None:
        """Persist the staged file, then produce ``dataset.stored``."""
        if not isinstance(event, DatasetWrite):  # pragma: no cover - the consumer decodes dataset.write only
            raise DatastoreError(f"expected dataset.write, got {type(event).__name__}")
        with STORE_SECONDS.time():
            try:
                stored = await asyncio.to_thread(self._store, event)
            except DatastoreError:
                WRITES.labels("failed").inc()
                raise
        WRITES.labels("already_stored" if stored.already_stored else "stored").inc()
        if not stored.already_stored:
            BYTES.inc(stored.size_bytes)
        out = DatasetStored(
            dataset_id=event.dataset_id, dataset_type=event.dataset_type, run=event.run, uri=stored.uri,
            data_id=dict(event.data_id), storage_class=event.storage_class, size_bytes=stored.size_bytes,
            checksum=stored.checksum,
        )
        await self.producer.send_event(out, self.topic, key=str(event.dataset_id))
        extra: dict[str, Any] = {"dataset_id": str(event.dataset_id), "dataset_type": event.dataset_type}
        for k in ("visit", "detector"):
            if k in event.data_id:
                extra[k] = event.data_id[k]
        log.info("stored %s at %s%s", event.dataset_type, stored.uri,
                 " (already stored)" if stored.already_stored else "", extra=extra)


class DatastoreWriterService:
    """The service built from settings (:attr:`service` runs it)."""

    def __init__(self, settings: DatastoreWriterSettings) -> None:
        self.settings = settings
        self.writers: list[StagedWriter] = []
        self.service = Service(settings, self._consumers)

    def _consumers(self, producer: AsyncProducer) -> list[ServiceConsumer]:
        s = self.settings
        topic = s.topic_prefix + "dataset.write"
        writer = StagedWriter(s, producer)
        self.writers.append(writer)
        return [EventConsumer(s.kafka, s.consumer_group or "nightshift-datastore-writer", [topic], writer.handle,
                              producer, max_batch=s.max_batch, concurrency=s.concurrency,
                              subjects={topic: "dataset.write"})]

    async def run(self, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """Ensure the topics, then run until stopped."""
        s = self.settings
        await asyncio.to_thread(ensure_topics, s.kafka, [
            s.topic_prefix + t for t in ("dataset.write", "dataset.write.dlq", "dataset.stored")], s.partitions)
        await self.service.run(ready)


async def main(settings: DatastoreWriterSettings | None = None,
               ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the datastore writer until SIGTERM (or ``Service.stop``)."""
    settings = settings or DatastoreWriterSettings()
    setup_logging(settings.service_name, settings.log_level, settings.log_format)
    app = DatastoreWriterService(settings)

    await app.run(ready)


if __name__ == "__main__":
    asyncio.run(main())
