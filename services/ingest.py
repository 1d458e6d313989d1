"""The ingest service: ``raw.arrived`` in, raws into the butler repository, ``raw.ingested`` out.

A thin shell over :func:`nightshift.obs.ingest_arrived`. The events of one
consumed batch are ingested together (one registry transaction), then each
file's ``raw.ingested`` events are produced, keyed ``"{instrument}/{detector}"``,
and only then are the offsets committed (at least once). A redelivered
``raw.arrived`` finds its dataset already there (same deterministic id) and
produces an equivalent ``raw.ingested`` again; a raw that cannot be read, has
a bad header, or conflicts with an ingested one goes to ``raw.arrived.dlq``
with the reason. Raws may be local paths or ``s3://`` objects.

With ``NIGHTSHIFT_WATCH`` (a directory or ``s3://bucket/prefix``) the service
also runs the raw watcher (:class:`nightshift.obs.RawWatchLoop`), announcing new
files itself::

    NIGHTSHIFT_KAFKA_BOOTSTRAP=127.0.0.1:19092 NIGHTSHIFT_BUTLER_REPO=./repo nightshift service ingest
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

from confluent_kafka import Message
from prometheus_client import Counter
from pydantic import AliasChoices, Field

from nightshift.butler import Butler
from nightshift.events import AsyncProducer, Event, EventConsumer, RawArrived, RawIngested, ensure_topics
from nightshift.obs import (
    IngestedRaws,
    ObsError,
    RawIngestError,
    RawWatcher,
    RawWatchLoop,
    ingest_arrived,
    raw_event_key,
    raw_ingested_events,
)
from nightshift.service import Service, ServiceConsumer, ServiceSettings, setup_logging

log = logging.getLogger("nightshift.ingest")

RAWS = Counter("nightshift_ingest_raws_total", "Announced raws handled by the ingest service", ["outcome"])


class IngestUnavailableError(ObsError):
    """The repository (registry database or datastore) failed while ingesting: retried, then dead-lettered."""

    retriable = True
    error_type = "obs_ingest_unavailable"


class IngestSettings(ServiceSettings):
    """Ingest settings (environment ``NIGHTSHIFT_*``, plus the common ones)."""

    service_name: str = "ingest"
    consumer_group: str | None = "nightshift-ingest"
    topic_prefix: str = ""
    #: The repository (``NIGHTSHIFT_BUTLER_REPO``): directory holding ``butler.yaml``.
    butler_repo: str
    #: RUN collection of the raws; ``<instrument>/raw/all`` by default.
    raw_run: str | None = None
    #: How raws reach the datastore; ``copy`` keeps the repository independent of the drop area.
    transfer: Literal["copy", "symlink", "hardlink", "direct"] = "copy"
    s3_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NIGHTSHIFT_S3_ENDPOINT_URL", "S3_ENDPOINT"))
    partitions: int = Field(default=4, ge=1)
    max_batch: int = Field(default=64, ge=1)
    concurrency: int = Field(default=64, ge=1)  # handlers of a batch wait together for one ingest
    #: Also watch this directory or s3://bucket/prefix and announce new raws (``raw.arrived``).
    watch: str | None = None
    watch_state: str | None = None
    watch_interval_s: float = Field(default=1.0, gt=0)
    #: How long a watched file may stay unreadable before it is dead-lettered (retried meanwhile).
    watch_reject_after_s: float = Field(default=30.0, ge=0)


class RawIngester:
    """Ingests the raws of concurrently handled events together; one ingest at a time (one repository)."""

    def __init__(self, settings: IngestSettings, producer: AsyncProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.topic = settings.topic_prefix + "raw.ingested"
        self._butler: Butler | None = None
        self._pending: list[tuple[str, asyncio.Future[list[RawIngested]]]] = []
        self._lock = threading.Lock()  # the butler is used from one worker thread at a time
        self._worker: asyncio.Task[None] | None = None

    def _ingest(self, uris: list[str]) -> tuple[IngestedRaws, dict[uuid.UUID, RawIngested]]:
        with self._lock:
            if self._butler is None:
                self._butler = Butler(self.settings.butler_repo)
            butler = self._butler
            result = ingest_arrived(butler, uris, run=self.settings.raw_run, transfer=self.settings.transfer)
            refs = [ref for refs in result.datasets.values() for ref in refs]
            return result, {e.dataset_id: e for e in raw_ingested_events(butler, refs)}

    async def _drain(self) -> None:
        """Ingest what the handlers queued, together, until nothing is queued."""
        try:
            await asyncio.sleep(0)  # let the batch's other handlers queue their raws
            while self._pending:
                pending, self._pending = self._pending, []
                await self._ingest_pending(pending)
        finally:
            self._worker = None

    async def _ingest_pending(self, pending: list[tuple[str, asyncio.Future[list[RawIngested]]]]) -> None:
        uris = [u for u, _ in pending]
        try:
            result, events = await asyncio.to_thread(self._ingest, uris)
        except Exception as exc:
            err: Exception = exc
            if not isinstance(exc, ObsError):  # the repository itself failed (database, storage): retriable
                err = IngestUnavailableError(f"ingest of {len(uris)} raw(s) into {self.settings.butler_repo} "
                                             f"failed: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
            for _, fut in pending:
                if not fut.done():
                    fut.set_exception(err)
            return
        for uri, fut in pending:
            if fut.done():  # its handler was cancelled (shutdown)
                continue
            try:
                refs = result.refs_for(uri)
            except RawIngestError as exc:
                fut.set_exception(exc)
                continue
            fut.set_result([events[ref.id] for ref in refs])
            RAWS.labels("ingested" if result.is_new(uri) else "already_ingested").inc()

    async def handle(self, event: Event, msg: Message) -> None:
        """Ingest the event's raw, then produce its ``raw.ingested``."""
        if not isinstance(event, RawArrived):  # pragma: no cover - the consumer decodes raw.arrived only
            raise RawIngestError(f"expected raw.arrived, got {type(event).__name__}")
        fut: asyncio.Future[list[RawIngested]] = asyncio.get_running_loop().create_future()
        self._pending.append((event.uri, fut))
        if self._worker is None:
            self._worker = asyncio.create_task(self._drain())
        try:
            ingested = await fut
        except RawIngestError:
            RAWS.labels("dead_lettered").inc()
            raise
        ids = {"visit": event.visit, "detector": event.detector}
        for out in ingested:
            if (out.instrument, out.visit, out.detector) != (event.instrument, event.visit, event.detector):
                log.warning("raw %s announced as %s/%s/%s holds %s/%s/%s (its header wins)", event.uri,
                            event.instrument, event.visit, event.detector, out.instrument, out.visit,
                            out.detector, extra=ids)
            await self.producer.send_event(out, self.topic, key=raw_event_key(out.instrument, out.detector))
            log.info("raw ingested: %s", out.uri, extra={"visit": out.visit, "detector": out.detector,
                                                       "dataset_id": str(out.dataset_id)})

    def close(self) -> None:
        with self._lock:
            if self._butler is not None:
                self._butler.close()
                self._butler = None


class IngestService:
    """The ingest service built from settings: :attr:`service` runs it, :meth:`run` also closes the repository."""

    def __init__(self, settings: IngestSettings) -> None:
        if settings.s3_endpoint_url and not os.environ.get("S3_ENDPOINT"):
            os.environ["S3_ENDPOINT"] = settings.s3_endpoint_url  # what nightshift.obs reads s3:// raws with
        self.settings = settings
        self.ingesters: list[RawIngester] = []
        self.watch_loop: RawWatchLoop | None = None
        self.service = Service(settings, self._consumers)

    def _consumers(self, producer: AsyncProducer) -> list[ServiceConsumer]:
        s = self.settings
        topic = s.topic_prefix + "raw.arrived"
        ingester = RawIngester(s, producer)
        self.ingesters.append(ingester)
        out: list[ServiceConsumer] = [EventConsumer(
            s.kafka, s.consumer_group or "nightshift-ingest", [topic], ingester.handle, producer,
            max_batch=s.max_batch, concurrency=s.concurrency, subjects={topic: "raw.arrived"},
        )]
        if s.watch:
            watcher = RawWatcher(s.watch, s.watch_state)
            self.watch_loop = RawWatchLoop(watcher, producer, topic_prefix=s.topic_prefix,
                                           interval_s=s.watch_interval_s, reject_after_s=s.watch_reject_after_s)
            out.append(self.watch_loop)
        return out

    async def run(self, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """Ensure the topics, run until stopped, close the repository."""
        s = self.settings
        await asyncio.to_thread(ensure_topics, s.kafka, [
            s.topic_prefix + t for t in ("raw.arrived", "raw.arrived.dlq", "raw.ingested")], s.partitions)
        try:
            await self.service.run(ready)
        finally:
            for ingester in self.ingesters:
                await asyncio.to_thread(ingester.close)


async def main(settings: IngestSettings | None = None, ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the ingest service until SIGTERM (or ``Service.stop``)."""
    settings = settings or IngestSettings()
    setup_logging(settings.service_name, settings.log_level, settings.log_format)
    app = IngestService(settings)

    await app.run(ready)


if __name__ == "__main__":
    asyncio.run(main())
