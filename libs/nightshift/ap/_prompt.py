"""Prompt processing: the runner's Alert Production quantum, from ``quantum.planned`` to ``dia.results``.

:class:`PromptQuantumHandler` executes the AP quanta the planner emits
(``quantum.planned`` v3, ``task_label`` ``"ap"``, no ``graph_uri``):

1. **preload at once** (DMS-MWST-REQ-0030): on the plan, before the raw, it
   starts the APDB read of the detector footprint's DiaObjects and their
   source histories (:meth:`nightshift.apdb.AsyncApdb.preload`);
2. **join with the raw, in either order**: a ``raw.ingested`` event that came
   first is kept (:meth:`PromptQuantumHandler.raw_ingested`) and used when the
   plan arrives; a plan that came first waits for it. The registry is the
   durable half of the join: a raw whose event this runner never saw (it came
   before a restart, or went to another runner) is found by a registry lookup,
   so nothing depends on in-memory state surviving;
3. **runs the AP chain** (:func:`nightshift.ap.process_detector`) on a worker
   thread, with the bias, flat, template and reference catalog the quantum's
   ``inputs`` name;
4. **writes, in this order**: the output datasets to the staging area, the
   alert-inputs bundle (Arrow IPC, :class:`nightshift.alerts.AlertInputs`)
   and a *replay manifest* (the exact events to emit) to the object store,
   then the DiaSources, DiaObjects and DiaForcedSources to the APDB (one
   idempotent transaction), then emits ``dataset.write`` per output,
   ``dia.results`` v2 and ``quantum.completed``;
5. fails the quantum with ``quantum.failed`` (error type and a message naming
   the missing dataset) when an input is missing or a fit fails, and when the
   raw does not arrive within ``raw_timeout_s``.

**Exactly once, not at most once.** The handler returns, and the consumer
commits the plan's offset, only after the quantum's last event was
acknowledged. A runner killed at any point leaves the plan uncommitted; the
next runner gets it again. If the APDB already holds the (visit, detector)'s
DiaSources (:meth:`~nightshift.apdb.AsyncApdb.stored_source_ids`), the quantum
is *replayed*: the manifest's events -- the same event ids, the same
``dia_source_ids`` -- are emitted again, nothing is recomputed. Rubin abandons
such a detector (its alerts may never go out); here its alerts are sent,
and consumers deduplicate by event id or ``diaSourceId``. Otherwise the quantum
runs again from the start: the preload is the same as the first attempt's
(nothing of this detector was stored), so the ids are the same, and the APDB
store and every write are idempotent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from .._exceptions import NightshiftError
from ..alerts import AlertInputs
from ..apdb import AsyncApdb, ConvexPolygon, Preload
from ..butler import DatasetType, deterministic_dataset_id
from ..events import (
    AsyncProducer,
    DatasetWrite,
    DiaResults,
    Event,
    EventError,
    KafkaSettings,
    QuantumCompleted,
    QuantumFailed,
    QuantumPlanned,
    RawIngested,
    decode,
    kafka_settings,
)
from ._exceptions import ApError, MissingInputError
from ._planning import AP_TASK_LABEL
from ._process import ApConfig, ApResult, process_detector
from ._prompt_io import (
    ObjectStore,
    QuantumInputs,
    cutouts_fits,
    encode_dataset,
    find_raw,
    load_inputs,
    open_butler,
    resolve_inputs,
    sha256,
    table_ids,
)

__all__ = [
    "PromptConfig",
    "PromptQuantumError",
    "PromptQuantumHandler",
    "PromptTopics",
    "RawListener",
    "is_prompt_quantum",
]

log = logging.getLogger("nightshift.ap.prompt")

_HOST = os.uname().nodename

QUANTA = Counter("nightshift_ap_quanta_total", "AP quanta ended, by outcome (completed, replayed, failed)",
                 ["outcome", "error_type"])
PRELOAD_SECONDS = Histogram("nightshift_ap_preload_seconds", "APDB preload of a detector footprint",
                            buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, float("inf")))
STEP_SECONDS = Histogram("nightshift_ap_step_seconds", "Wall time of each AP step (isr, characterize, ...), "
                         "load (butler reads), write (staging, bundle), store (APDB)", ["step"],
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, float("inf")))
RAW_WAIT_SECONDS = Histogram("nightshift_ap_raw_wait_seconds", "From the plan to its raw at this runner",
                             buckets=(0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, float("inf")))
QUANTUM_SECONDS = Histogram("nightshift_ap_quantum_seconds", "From the raw to the quantum's last event",
                            buckets=(1, 2, 5, 10, 20, 30, 45, 60, 120, 300, float("inf")))
BUDGET_MISSES = Counter("nightshift_ap_budget_misses_total", "Quanta slower than the budget from raw to results")
WAITING = Gauge("nightshift_ap_quanta_waiting_for_raw", "Planned quanta waiting for their raw")
RETRIES = Counter("nightshift_ap_quantum_retries_total", "Quanta started again after an infrastructure failure")
EARLY_RAWS = Counter("nightshift_ap_raws_before_plan_total", "raw.ingested events that came before their plan")

# the AP steps whose timings ApResult reports
_STEPS = ("isr", "characterize", "warp", "subtract", "detect_measure", "associate", "forced", "cutouts")
_OUTPUT_TYPES = {  # dataset type -> (storage class, dimensions); data ID {instrument, visit, detector}
    "calexp": "Exposure", "difference": "Exposure",
    "dia_source": "ArrowTable", "dia_object": "ArrowTable", "dia_forced_source": "ArrowTable",
}
_DIMS = ("instrument", "visit", "detector")


class PromptQuantumError(NightshiftError):
    """A ``quantum.planned`` event that is not a runnable AP quantum (it goes to the dead-letter topic)."""

    error_type = "unrunnable_quantum"
    retriable = False


def is_prompt_quantum(event: QuantumPlanned) -> bool:
    """Whether ``event`` is a prompt-processing quantum (``task_label`` ``ap``, no graph pointer)."""
    return event.graph_uri is None and event.task_label == AP_TASK_LABEL


@dataclass(frozen=True)
class PromptTopics:
    """Topics the prompt handler reads and writes (``prefix + subject``)."""

    planned: str = "quantum.planned"
    raw_ingested: str = "raw.ingested"
    dia_results: str = "dia.results"
    dataset_write: str = "dataset.write"
    completed: str = "quantum.completed"
    failed: str = "quantum.failed"

    @classmethod
    def with_prefix(cls, prefix: str) -> PromptTopics:
        """Every topic as ``prefix + subject``."""
        return cls(*(prefix + name for name in (cls.planned, cls.raw_ingested, cls.dia_results, cls.dataset_write,
                                                cls.completed, cls.failed)))


@dataclass(frozen=True)
class PromptConfig:
    """How the prompt handler runs its quanta.

    Parameters
    ----------
    staging_uri : str
        Where output files are staged for the datastore-writer (directory or ``s3://bucket/prefix``).
    alert_inputs_uri : str
        Where alert-inputs bundles and replay manifests go (directory or ``s3://bucket/prefix``).
    s3_endpoint_url : str, optional
        S3 endpoint of both (``$S3_ENDPOINT`` or AWS otherwise).
    raw_timeout_s : float
        How long a planned quantum waits for its raw before failing.
    history_days : float
        How far back the preload reads DiaSource histories.
    budget_s : float
        Seconds from the raw to ``dia.results`` above which a quantum counts as a budget miss.
    ap : ApConfig
        Settings of the AP steps.
    early_raws_kept : int
        At most this many raws are remembered in memory, whether they came before or after their plan
        (the oldest go first; they are still found in the registry).
    butler_repo : str, optional
        Repository of quanta whose event names none.
    infra_retry_s : float
        How long a quantum interrupted by the infrastructure (APDB connection lost, object store or
        broker not answering) is started again, with backoff, before the error goes to the consumer
        (which dead-letters the plan).
    crash_at : {"after_store", "after_results"}, optional
        Test hook: exit the process (``os._exit``) at that point of the first quantum, as a crash would
        (after the APDB store; after ``dia.results`` was acknowledged, before ``quantum.completed``).
        Never set it in production.
    """

    staging_uri: str
    alert_inputs_uri: str
    s3_endpoint_url: str | None = None
    raw_timeout_s: float = 300.0
    history_days: float = 365.0
    budget_s: float = 60.0
    ap: ApConfig = field(default_factory=ApConfig)
    early_raws_kept: int = 10_000
    butler_repo: str | None = None
    infra_retry_s: float = 300.0
    crash_at: str | None = None

    def __post_init__(self) -> None:
        if self.crash_at not in (None, "after_store", "after_results"):
            raise ValueError(f"crash_at must be 'after_store' or 'after_results', not {self.crash_at!r}")
        if self.raw_timeout_s <= 0 or self.history_days <= 0 or self.budget_s <= 0 or self.early_raws_kept < 1:
            raise ValueError("raw_timeout_s, history_days, budget_s and early_raws_kept must be positive")


_Key = tuple[str, int, int]  # (instrument, visit, detector)


@dataclass
class _Processed:
    """What the worker thread hands back: the APDB rows and the events to emit after the store."""

    visit_time: float
    objects: pa.Table
    sources: pa.Table
    forced: pa.Table
    events: list[Event]
    timings: dict[str, float]


def _det_key(event: QuantumPlanned) -> str:
    return f"{event.instrument}/{event.detector}"


class PromptQuantumHandler:
    """Executes prompt-processing quanta (see the module docstring).

    Parameters
    ----------
    producer : AsyncProducer
        Started producer for every event the quanta emit.
    apdb : AsyncApdb
        Open APDB client (preload, replay check, store).
    config : PromptConfig
    topics : PromptTopics, optional

    Use :meth:`handle_planned` for ``quantum.planned`` (it returns when the
    quantum's last event is acknowledged) and :meth:`raw_ingested` for every
    ``raw.ingested`` event (:class:`RawListener` calls it).
    """

    def __init__(self, producer: AsyncProducer, apdb: AsyncApdb, config: PromptConfig,
                 topics: PromptTopics | None = None) -> None:
        self.producer = producer
        self.apdb = apdb
        self.config = config
        self.topics = topics or PromptTopics()
        self.staging = ObjectStore(config.staging_uri, config.s3_endpoint_url)
        self.bundles = ObjectStore(config.alert_inputs_uri, config.s3_endpoint_url)
        # AP runs one quantum at a time (one core, as Rubin's one-CPU pods); registry lookups beside it
        self._worker = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ap-quantum")
        self._lookup = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ap-lookup")
        self._raws: OrderedDict[_Key, RawIngested] = OrderedDict()
        self._waiters: dict[_Key, list[asyncio.Future[RawIngested]]] = {}
        self._inflight: dict[uuid.UUID, asyncio.Future[None]] = {}
        self.completed = 0
        self.replayed = 0
        self.failed = 0

    # -- the raw half of the join ------------------------------------------------------------------------------
    def raw_ingested(self, event: RawIngested) -> None:
        """Record a raw (call on the event loop): wakes the quantum waiting for it, or keeps it for its plan."""
        key = (event.instrument, event.visit, event.detector)
        waiters = self._waiters.pop(key, [])
        for fut in waiters:
            if not fut.done():
                fut.set_result(event)
        # every raw is remembered (bounded), also one that woke its quantum: a quantum started again finds it
        self._raws[key] = event
        self._raws.move_to_end(key)
        while len(self._raws) > self.config.early_raws_kept:
            self._raws.popitem(last=False)
        if not waiters:
            EARLY_RAWS.inc()
            log.info("raw before its plan: kept until the plan arrives",
                     extra={"visit": event.visit, "detector": event.detector, "instrument": event.instrument})

    async def _wait_raw(self, event: QuantumPlanned, key: _Key) -> uuid.UUID | None:
        """The raw's dataset id: from an event already seen, the registry, or the event when it comes."""
        loop = asyncio.get_running_loop()
        # read, not popped: a quantum that is started again (its APDB or object store failed) finds its raw here
        seen = self._raws.get(key)
        if seen is not None:
            return seen.dataset_id
        fut: asyncio.Future[RawIngested] = loop.create_future()
        self._waiters.setdefault(key, []).append(fut)
        WAITING.inc()
        repo = self._repo(event)
        timeout = self.config.raw_timeout_s
        deadline = loop.time() + timeout
        try:
            lookup = loop.run_in_executor(self._lookup, lambda: find_raw(open_butler(repo), event))
            waited: set[asyncio.Future[Any]] = {fut, lookup}
            await asyncio.wait(waited, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if fut.done():
                return fut.result().dataset_id
            if lookup.done():
                found = lookup.result()
                if found is not None:
                    return found.id
                try:  # not in the registry yet: wait for the event for the rest of the time
                    return (await asyncio.wait_for(asyncio.shield(fut), max(deadline - loop.time(), 0.0))).dataset_id
                except TimeoutError:
                    pass
            # the deadline: one last look in the registry (its event may have gone past this runner)
            ref = await loop.run_in_executor(self._lookup, lambda: find_raw(open_butler(repo), event))
            return ref.id if ref is not None else None
        finally:
            WAITING.dec()
            waiters = self._waiters.get(key, [])
            if fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    self._waiters.pop(key, None)
            fut.cancel()

    # -- the quantum ---------------------------------------------------------------------------------------------
    async def __call__(self, event: Event, message: Message | None = None) -> None:
        """Dispatch one event (a consumer's handler): a plan runs its quantum, a raw joins."""
        if isinstance(event, RawIngested):
            self.raw_ingested(event)
        elif isinstance(event, QuantumPlanned):
            await self.handle_planned(event)
        else:
            raise PromptQuantumError(f"the prompt handler takes quantum.planned and raw.ingested, not "
                                     f"{event.SUBJECT}")

    async def handle_planned(self, event: QuantumPlanned) -> None:
        """Run one AP quantum to its end (every event acknowledged); a duplicate in flight waits for the first.

        Raises
        ------
        PromptQuantumError
            Not an AP quantum, or one lacking instrument, visit, detector, butler_repo, run or footprint
            (dead-lettered by the consumer).
        """
        self._check(event, self.config.butler_repo)
        first = self._inflight.get(event.quantum_id)
        if first is not None:  # the same plan twice in one batch: one execution, one set of events
            await asyncio.shield(first)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[event.quantum_id] = done
        try:
            await self._run_retrying(event)
        finally:
            self._inflight.pop(event.quantum_id, None)
            done.set_result(None)

    async def _run_retrying(self, event: QuantumPlanned) -> None:
        """Run the quantum; on a passing infrastructure failure (the APDB, the object store, the broker
        restarting) start it again after a backoff, for up to ``infra_retry_s``: its effects are idempotent."""
        deadline = time.monotonic() + self.config.infra_retry_s
        delay = 0.5
        while True:
            try:
                await self._run(event)
                return
            except Exception as exc:
                if not _is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                RETRIES.inc()
                log.warning("quantum interrupted by %s: %s; starting it again in %.1f s", type(exc).__name__, exc,
                            delay, extra={"visit": event.visit, "detector": event.detector})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _repo(self, event: QuantumPlanned) -> str:
        repo = event.butler_repo or self.config.butler_repo
        assert repo is not None  # checked by handle_planned
        return repo

    @staticmethod
    def _check(event: QuantumPlanned, default_repo: str | None = None) -> None:
        if not is_prompt_quantum(event):
            raise PromptQuantumError(f"quantum {event.quantum_id} ({event.task_label}) is not a prompt-processing "
                                     f"quantum (task_label {AP_TASK_LABEL!r} without graph_uri)")
        lacking = [n for n in ("instrument", "visit", "detector", "run", "footprint_deg") if getattr(event, n) is None]
        if event.butler_repo is None and default_repo is None:
            lacking.append("butler_repo")
        if lacking:
            raise PromptQuantumError(f"AP quantum {event.quantum_id} has no {', '.join(lacking)}: the planner "
                                     "must set them (quantum.planned v3)")

    async def _run(self, event: QuantumPlanned) -> None:
        assert event.instrument is not None and event.visit is not None and event.detector is not None
        key: _Key = (event.instrument, event.visit, event.detector)
        ids = {"visit": event.visit, "detector": event.detector, "instrument": event.instrument,
               "quantum_id": str(event.quantum_id)}
        planned_at = time.monotonic()
        preload = asyncio.create_task(self._preload(event))
        try:
            stored = await self.apdb.stored_source_ids(event.visit, event.detector, event.visit_start_mjd_tai)
            if stored.size:
                await self._replay(event, stored.tolist(), ids)
                return
            loop = asyncio.get_running_loop()
            repo = self._repo(event)
            try:  # a missing calibration or template fails the quantum now, not after the raw
                await loop.run_in_executor(self._lookup, lambda: resolve_inputs(open_butler(repo), event))
            except MissingInputError as exc:
                await self._fail(event, exc.error_type, str(exc), ids)
                return
            raw_id = await self._wait_raw(event, key)
            RAW_WAIT_SECONDS.observe(time.monotonic() - planned_at)
            if raw_id is None:
                await self._fail(event, "raw_timeout", f"raw for visit {event.visit} detector {event.detector} "
                                 f"did not arrive within {self.config.raw_timeout_s:g} s", ids)
                return
            started = time.monotonic()
            loaded = await preload
            try:
                processed = await loop.run_in_executor(self._worker, self._process, event, raw_id, loaded)
            except Exception as exc:
                if not _is_quantum_failure(exc):
                    raise  # the object store, the butler's database, ...: _run_retrying starts it again
                await self._fail(event, getattr(exc, "error_type", None) or type(exc).__name__,
                                 f"{type(exc).__name__}: {exc}", ids)
                return
            t0 = time.monotonic()
            await self.apdb.store(processed.visit_time, processed.objects, processed.sources, processed.forced)
            STEP_SECONDS.labels("store").observe(time.monotonic() - t0)
            self._crash_point("after_store")
            await self._emit(event, processed.events)
            elapsed = time.monotonic() - started
            QUANTUM_SECONDS.observe(elapsed)
            if elapsed > self.config.budget_s:
                BUDGET_MISSES.inc()
                log.warning("quantum over budget: %.1f s > %.1f s", elapsed, self.config.budget_s, extra=ids)
            self.completed += 1
            QUANTA.labels("completed", "").inc()
            log.info("quantum completed: %d DiaSources in %.2f s", processed.sources.num_rows, elapsed,
                     extra={**ids, "timings": processed.timings})
        finally:
            if not preload.done():
                preload.cancel()
            elif not preload.cancelled() and preload.exception() is not None:  # retrieved: no asyncio warning
                log.debug("the preload failed: %s", preload.exception(), extra=ids)

    async def _preload(self, event: QuantumPlanned) -> Preload:
        assert event.footprint_deg is not None
        fp = event.footprint_deg
        region = ConvexPolygon(tuple((fp[i], fp[i + 1]) for i in range(0, len(fp), 2)))
        start = event.visit_start_mjd_tai if event.visit_start_mjd_tai is not None else _now_mjd_tai()
        t0 = time.monotonic()
        result = await self.apdb.preload(region, start - self.config.history_days)
        PRELOAD_SECONDS.observe(time.monotonic() - t0)
        log.info("preloaded %d DiaObjects in %.3f s", result.objects.num_rows, time.monotonic() - t0,
                 extra={"visit": event.visit, "detector": event.detector})
        return result

    # -- the worker thread -------------------------------------------------------------------------------------
    def _process(self, event: QuantumPlanned, raw_id: uuid.UUID, preload: Preload) -> _Processed:
        assert event.visit is not None and event.detector is not None
        assert event.instrument is not None and event.run is not None
        timings: dict[str, float] = {}
        t0 = time.monotonic()
        repo = self._repo(event)
        butler = open_butler(repo)
        raw_ref = butler.registry.get_dataset(raw_id)
        if raw_ref is None:
            raise MissingInputError(f"raw {raw_id} of visit {event.visit} detector {event.detector} is not in the "
                                    f"registry of {repo}")
        inputs: QuantumInputs = load_inputs(butler, event, raw_ref)
        timings["load"] = time.monotonic() - t0
        res: ApResult = process_detector(
            inputs.raw, inputs.detector, visit=event.visit, midpoint_mjd=inputs.midpoint_mjd, band=inputs.band,
            pointing_wcs=inputs.pointing_wcs, refcat=inputs.refcat, template=inputs.template,
            template_psf=inputs.template_psf,
            preloaded_objects=preload.objects if preload.objects.num_rows else None,
            preloaded_sources=preload.sources if preload.sources.num_rows else None,
            bias=inputs.bias, flat=inputs.flat, config=self.config.ap)
        timings.update({k: v for k, v in res.timings.items() if k in _STEPS})
        t0 = time.monotonic()
        events = self._write_outputs(event, inputs, res, preload)
        timings["write"] = time.monotonic() - t0
        for step, seconds in timings.items():
            STEP_SECONDS.labels(step).observe(seconds)
        return _Processed(inputs.midpoint_mjd, res.association.objects, res.association.sources, res.forced,
                          events, timings)

    def _write_outputs(self, event: QuantumPlanned, inputs: QuantumInputs, res: ApResult,
                       preload: Preload) -> list[Event]:
        """Stage the outputs, write the bundle and the replay manifest; return the events to emit."""
        assert event.instrument is not None and event.visit is not None and event.detector is not None
        assert event.run is not None
        data_id: dict[str, int | str] = {"instrument": event.instrument, "visit": event.visit,
                                         "detector": event.detector}
        text_id = {k: str(v) for k, v in data_id.items()}
        sources, objects, forced = res.association.sources, res.association.objects, res.forced
        values: dict[str, Any] = {"calexp": res.calib.calexp, "difference": res.subtraction.difference,
                                  "dia_source": sources, "dia_object": objects, "dia_forced_source": forced}
        events: list[Event] = []
        staged: dict[str, str] = {}
        for name, storage_class in _OUTPUT_TYPES.items():
            dataset_id = deterministic_dataset_id(name, data_id, event.run)
            data, ext = encode_dataset(values[name], DatasetType(name, _DIMS, storage_class))
            key = f"{event.run}/{name}/{event.visit}/{name}_{event.instrument}_{event.visit}_{event.detector}_" \
                  f"{dataset_id}{ext}"
            staged[name] = self.staging.put(key, data)
            events.append(DatasetWrite(
                event_id=str(uuid.uuid5(event.quantum_id, f"dataset.write/{name}")), dataset_id=dataset_id,
                dataset_type=name, storage_class=storage_class, run=event.run, data_id=text_id,
                staging_uri=staged[name], checksum=sha256(data)))
        cutouts = cutouts_fits(res.cutouts, inputs.rotpa)
        source_ids = table_ids(sources, "diaSourceId")
        bundle = AlertInputs(
            sources=sources, objects=objects, forced_sources=forced,
            preload_objects=preload.objects if preload.objects.num_rows else None,
            preload_sources=preload.sources if preload.sources.num_rows else None,
            preload_forced_sources=preload.forced_sources if preload.forced_sources.num_rows else None,
            cutouts=AlertInputs.cutout_table(source_ids, [cutouts.get(i) for i in source_ids]))
        base = f"{event.instrument}/{event.visit}/{event.detector:04d}"
        bundle_uri = self.bundles.put(f"{base}.arrow", bundle.to_bytes())
        events.append(DiaResults(
            event_id=str(uuid.uuid5(event.quantum_id, "dia.results")), instrument=event.instrument,
            visit=event.visit, detector=event.detector, visit_time_mjd_tai=inputs.midpoint_mjd,
            n_dia_sources=len(source_ids), n_dia_objects=objects.num_rows, dia_source_ids=source_ids,
            results_uri=staged["dia_source"], alert_inputs_uri=bundle_uri,
            exposure_time_s=inputs.exposure_time_s or None))
        self.bundles.put(f"{base}.manifest.json", _manifest(events))
        return events

    # -- effects -------------------------------------------------------------------------------------------------
    async def _emit(self, event: QuantumPlanned, events: list[Event], *, replay: bool = False) -> None:
        """Send the quantum's events (dataset.write, then dia.results), then quantum.completed; await every ack."""
        key = _det_key(event)
        pending = []
        for e in events:
            if isinstance(e, DatasetWrite):
                pending.append(await self.producer.enqueue(self.topics.dataset_write, _encode(e),
                                                           key=str(e.dataset_id)))
        await asyncio.gather(*pending)
        for e in events:
            if isinstance(e, DiaResults):
                await self.producer.send_event(e, topic=self.topics.dia_results, key=key)
        self._crash_point("after_results")
        outputs = [e.dataset_id for e in events if isinstance(e, DatasetWrite)]
        done = QuantumCompleted(
            quantum_id=event.quantum_id, task_label=event.task_label, visit=event.visit, detector=event.detector,
            outputs=outputs, duration_s=0.0, host=_HOST, execution_id=event.execution_id, pid=os.getpid(),
            memoized=replay, n_actual_inputs=len(event.inputs) + 1)
        await self.producer.send_event(done, topic=self.topics.completed, key=key)

    def _crash_point(self, name: str) -> None:
        if self.config.crash_at == name:
            log.error("crash_at=%s reached: exiting without finishing the quantum", name)
            logging.shutdown()
            os._exit(137)

    async def _replay(self, event: QuantumPlanned, stored: list[int], ids: dict[str, Any]) -> None:
        """The APDB holds this quantum's DiaSources: emit the recorded events again (same ids), compute nothing."""
        base = f"{event.instrument}/{event.visit}/{event.detector:04d}"
        raw = await asyncio.get_running_loop().run_in_executor(self._lookup, self.bundles.get,
                                                               f"{base}.manifest.json")
        events = _read_manifest(raw) if raw is not None else None
        results = [e for e in events or [] if isinstance(e, DiaResults)]
        if not results or set(results[0].dia_source_ids) != set(stored):
            why = "its replay manifest is missing" if not results else (
                f"its replay manifest lists {results[0].n_dia_sources} DiaSources, the APDB {len(stored)}")
            await self._fail(event, "replay_incomplete",
                             f"visit {event.visit} detector {event.detector} has {len(stored)} DiaSources in the "
                             f"APDB but {why} ({self.bundles.uri(base + '.manifest.json')}): its alerts cannot be "
                             "re-sent; inspect the object store", ids)
            return
        assert events is not None
        await self._emit(event, events, replay=True)
        self.replayed += 1
        QUANTA.labels("replayed", "").inc()
        log.info("quantum replayed: its %d DiaSources were stored by an earlier attempt; events re-sent",
                 len(stored), extra=ids)

    async def _fail(self, event: QuantumPlanned, error_type: str, message: str, ids: dict[str, Any]) -> None:
        failed = QuantumFailed(
            quantum_id=event.quantum_id, task_label=event.task_label, visit=event.visit, detector=event.detector,
            error_type=error_type, message=message, retriable=False, host=_HOST, execution_id=event.execution_id,
            pid=os.getpid())
        await self.producer.send_event(failed, topic=self.topics.failed, key=_det_key(event))
        self.failed += 1
        QUANTA.labels("failed", error_type).inc()
        log.warning("quantum failed (%s): %s", error_type, message, extra=ids)

    def close(self) -> None:
        """Stop the worker threads (after the quantum in progress)."""
        self._worker.shutdown(wait=True)
        self._lookup.shutdown(wait=True)


def _is_quantum_failure(exc: BaseException) -> bool:
    """Whether an error of the worker thread is the quantum's own (inputs, science), not the infrastructure's."""
    if isinstance(exc, ApError):
        return True
    if isinstance(exc, NightshiftError):
        return not exc.retriable
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return False
    return not type(exc).__module__.startswith(("botocore", "boto3", "sqlalchemy", "asyncpg", "confluent_kafka"))


def _is_transient(exc: BaseException) -> bool:
    """An infrastructure failure that may pass: retry the quantum (its effects are idempotent)."""
    if isinstance(exc, NightshiftError):
        return exc.retriable
    if isinstance(exc, (OSError, TimeoutError, ConnectionError, KafkaException)):
        return True
    return type(exc).__module__.startswith(("botocore", "boto3", "urllib3"))


def _encode(event: Event) -> bytes:
    from ..events import encode

    return encode(event)


def _manifest(events: list[Event]) -> bytes:
    return json.dumps([{"subject": e.SUBJECT, "event": e.model_dump(mode="json")} for e in events]).encode()


def _read_manifest(data: bytes) -> list[Event] | None:
    from ..events import EVENT_TYPES

    try:
        return [EVENT_TYPES[d["subject"]].model_validate(d["event"]) for d in json.loads(data)]
    except (ValueError, KeyError, TypeError) as exc:
        log.error("unreadable replay manifest: %s", exc)
        return None


_MJD_UNIX0 = 40587.0
_TAI_UTC = 37.0


def _now_mjd_tai() -> float:
    return (time.time() + _TAI_UTC) / 86400.0 + _MJD_UNIX0


class RawListener:
    """Every runner reads every ``raw.ingested`` event (no consumer group; a few hundred per visit).

    The runner's plan consumer shares the plans; each raw must reach whichever
    runner holds its plan, even across rebalances, so every runner reads them
    all and keeps those it needs (:meth:`PromptQuantumHandler.raw_ingested`).
    It starts ``lookback_s`` back in time, so a restarted runner sees the raws
    of the last minutes again; older ones are found in the registry.

    Parameters
    ----------
    kafka : KafkaSettings or str
    topic : str
    on_raw : callable
        Called on the event loop with each decoded :class:`RawIngested`.
    lookback_s : float
        How far back to start reading.
    """

    def __init__(self, kafka: KafkaSettings | str, topic: str, on_raw: Callable[[RawIngested], None], *,
                 lookback_s: float = 600.0, poll_timeout_s: float = 0.5) -> None:
        self.settings = kafka_settings(kafka)
        self.topic = topic
        self._on_raw = on_raw
        self._lookback_s = lookback_s
        self._poll_timeout = poll_timeout_s
        self._stop = asyncio.Event()
        self._running = False
        self._finished: asyncio.Future[None] | None = None
        self.seen = 0
        self.assigned = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._running

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        import threading

        stop = threading.Event()

        def deliver(event: RawIngested) -> None:
            self.seen += 1
            self._on_raw(event)

        def work() -> None:
            consumer = Consumer({**self.settings.librdkafka_config(),
                                 "group.id": f"nightshift-raw-listener-{uuid.uuid4().hex}",
                                 "enable.auto.commit": False, "auto.offset.reset": "latest"})
            try:
                self._assign(consumer)
                loop.call_soon_threadsafe(self.assigned.set)
                while not stop.is_set():
                    for msg in consumer.consume(100, self._poll_timeout):
                        if msg.error() is not None:
                            continue
                        try:
                            event = decode(msg.value() or b"", expected_subject="raw.ingested")
                        except EventError as exc:
                            log.warning("skipping an undecodable raw.ingested at %s[%s]@%s: %s", msg.topic(),
                                        msg.partition(), msg.offset(), exc)
                            continue
                        if isinstance(event, RawIngested):
                            loop.call_soon_threadsafe(deliver, event)
            finally:
                consumer.close()

        self._running = True
        task = loop.run_in_executor(None, work)
        stopper = asyncio.create_task(self._stop.wait())
        try:
            waited: set[asyncio.Future[Any]] = {task, stopper}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            stopper.cancel()
            self._running = False
            try:
                await task
            finally:
                self._finished.set_result(None)

    def _assign(self, consumer: Consumer) -> None:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                meta = consumer.list_topics(self.topic, timeout=10)
                parts = meta.topics[self.topic].partitions if self.topic in meta.topics else {}
                if parts and meta.topics[self.topic].error is None:
                    since = int((time.time() - self._lookback_s) * 1000)
                    wanted = [TopicPartition(self.topic, p, since) for p in sorted(parts)]
                    offsets = consumer.offsets_for_times(wanted, timeout=10)
                    # no message since then: -1 (the end), read from there
                    consumer.assign([TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else -1)
                                     for tp in offsets])
                    return
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("waiting for topic %s: %s", self.topic, exc)
            if time.monotonic() > deadline:
                raise EventError(f"topic {self.topic!r} does not exist; create it (ensure_topics)")
            time.sleep(0.2)

    async def close(self, drain_timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._finished is not None:
            await asyncio.wait_for(asyncio.shield(self._finished), drain_timeout_s)
