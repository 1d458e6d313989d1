"""Catalogue-mode visits: simulated DIA catalogues through the APDB store and the real alert-publisher services.

Per (visit, detector) the load test does what a prompt-processing task does after
its pixels are processed, and nothing about pixels: store the detector's new
DiaObjects, DiaSources and DiaForcedSources in the APDB (one transaction,
:meth:`nightshift.apdb.AsyncApdb.store`), write the alert-inputs bundle (the
tables, a 12-month history of ``history`` sources and forced sources per object,
three cutouts per source) to the S3 server, and emit ``dia.results`` v2 with
``acks=all``. The alert-publisher service processes (real ones, several sharing a
consumer group) build the Rubin-schema alerts and publish them in Kafka transactions.
A ``read_committed`` reader stamps the moment each alert becomes visible.

timeToIssueAlerts of a detector runs from the start of its DIA store to its last
alert visible; of a visit, from the first detector's store start to the visit's last
alert visible.

The history rows are synthesized per object (earlier visits of the same objects),
not read back from the APDB: a run of a few visits has no 12-month history of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from botocore import exceptions as boto_errors
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported from cimpl implicitly

from nightshift import NightshiftError
from nightshift.alerts import AlertInputs, AlertInputsError, Cutouts, s3_client, simulated_cutouts, write_alert_inputs
from nightshift.apdb import (
    ApdbConnectionError,
    ApdbSettings,
    ApdbTransientError,
    AsyncApdb,
    SkyField,
    make_source_ids,
)
from nightshift.events import DiaResults, encode, ensure_topics

from ._errors import LoadTestError
from ._faults import TcpProxy
from ._procs import ServiceProcess
from ._resources import ResourceSampler
from ._results import Budget, LoadTestResult, Span
from ._stack import StackAddresses

__all__ = ["CatalogueConfig", "run_catalogue"]

MODE = "catalogue"
DETECTOR_BUDGET = ("timeToIssueAlerts per detector", 0.1, 5.0)
VISIT_BUDGET = ("timeToIssueAlerts per visit", 5.0, None)
_HISTORY_NUMBER_OFFSET = 20_000
_CUTOUT_POOL = 64
#: --chaos: the faults, in turn, one in every other visit
FAULTS = ("SIGKILL an alert publisher", "S3 server unreachable", "PostgreSQL connections dropped")
OUTAGE_S = 5.0
ALERT_RETENTION_MS = 15 * 60 * 1000
#: the S3 server unreachable (retried), unlike a refusal or bad credentials (not retried)
_S3_DOWN = (boto_errors.ConnectionError, boto_errors.HTTPClientError, OSError)


@dataclass
class CatalogueConfig:
    """What one catalogue-mode run does.

    Parameters
    ----------
    visits : int
        Visits to run.
    sources : int
        New DiaSources per visit (10,000: LSST's average visit).
    detectors : int
        Detectors that get sources (189: the LSST science detectors, ~53 sources each).
    hot_detectors : int
        0 for LSST's spread; N puts every source of the visit on N detectors (a hot field).
    history : int
        Previous DiaSources and DiaForcedSources per object in each alert (12-month history).
    publishers : int
        Alert-publisher service processes (one consumer group, one transactional id each).
    tasks : int
        Detector tasks running at once (the runners' share of this machine).
    cadence_s : float or None
        Seconds between visit starts (a night); None runs each visit after the previous one's alerts.
    chaos : bool
        In every other visit, one fault of :data:`FAULTS` in turn, mid-visit: SIGKILL a random alert
        publisher and restart it; cut the S3 server off for ``OUTAGE_S`` seconds; drop every PostgreSQL
        connection and refuse new ones for ``OUTAGE_S`` seconds (through a proxy: the shared servers run on).
    guard_s : float
        Seconds after which a run that stopped making progress is abandoned.
    keep : bool
        Keep the APDB schema, topics and bucket (default: the schema is dropped).
    """

    visits: int = 3
    sources: int = 10_000
    detectors: int = 189
    hot_detectors: int = 0
    history: int = 30
    publishers: int = 2
    tasks: int = 4
    cadence_s: float | None = None
    chaos: bool = False
    guard_s: float = 600.0
    keep: bool = False
    seed: int = 16


@dataclass
class _DetectorWork:
    visit: int
    detector: int
    mjd: float
    objects: pa.Table
    sources: pa.Table
    forced: pa.Table
    inputs: AlertInputs

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.sources.column("diaSourceId").to_numpy()]


@dataclass
class _Watch:
    """The read_committed reader's view: when each (visit, detector)'s alerts became visible."""

    owner: dict[int, tuple[int, int]] = field(default_factory=dict)  # diaSourceId -> (visit, detector)
    expected: Counter[tuple[int, int]] = field(default_factory=Counter)
    seen: Counter[tuple[int, int]] = field(default_factory=Counter)
    last: dict[tuple[int, int], float] = field(default_factory=dict)
    counts: Counter[int] = field(default_factory=Counter)  # diaSourceId -> times read
    stamps: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    progress: threading.Event = field(default_factory=threading.Event)


def _replace(table: pa.Table, name: str, values: Any, type_: pa.DataType) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values, type_))


def _spread(table: pa.Table, visit_id: int, detectors: int, id_col: str, offset: int) -> pa.Table:
    """Rows re-assigned evenly over ``detectors`` detectors, ids re-packed (visit, detector, number)."""
    n = table.num_rows
    det = (np.arange(n) * detectors // max(n, 1)).astype(np.int16)
    number = np.arange(n) - np.searchsorted(det, det)
    table = _replace(table, "detector", det, pa.int16())
    return _replace(table, id_col, make_source_ids(visit_id, det, number + offset), pa.int64())


def _history(src: pa.Table, forced: pa.Table, visit_id: int, detector: int, depth: int,
             mjd: float) -> tuple[pa.Table | None, pa.Table | None]:
    """``depth`` earlier DiaSources and DiaForcedSources of each object of ``src`` within the last 12 months."""
    if depth <= 0 or src.num_rows == 0:
        return None, None
    n = src.num_rows
    k = np.repeat(np.arange(1, depth + 1), n)
    rows = np.tile(np.arange(n), depth)
    hist = src.take(rows)
    number = np.tile(np.arange(n), depth) + _HISTORY_NUMBER_OFFSET * k
    hist = _replace(hist, "diaSourceId", make_source_ids(visit_id, detector, number), pa.int64())
    when = mjd - k * (360.0 / (depth + 1))
    hist = _replace(hist, "midpointMjdTai", when, pa.float64())
    hist = _replace(hist, "visit", visit_id - k, pa.int64())
    if forced.num_rows == 0:
        return hist, None
    f = forced.take(np.arange(n * depth) % forced.num_rows)
    f = _replace(f, "diaObjectId", src.column("diaObjectId").to_numpy()[rows], pa.int64())
    f = _replace(f, "diaForcedSourceId", make_source_ids(visit_id, detector, number + 1), pa.int64())
    f = _replace(f, "midpointMjdTai", when, pa.float64())
    f = _replace(f, "visit", visit_id - k, pa.int64())
    return hist, f


class _VisitMaker:
    """Simulated visits, cut into per-detector work (data preparation: not timed)."""

    def __init__(self, cfg: CatalogueConfig) -> None:
        self.cfg = cfg
        density = max(2.5 * cfg.sources / 9.6, 200.0)
        self.sky = SkyField(centres=7, density=density, sources_per_visit=cfg.sources,
                            forced_per_visit=cfg.sources, seed=cfg.seed, first_visit_id=10_000 + cfg.seed * 1000)
        rng = np.random.default_rng(cfg.seed)
        probe = self.sky.visit(0).sources.slice(0, _CUTOUT_POOL)
        pool: list[Cutouts | None] = list(simulated_cutouts(probe, rng))  # reused round-robin: realistic sizes
        self.cutouts = AlertInputs.cutout_table(list(range(len(pool))), pool).drop_columns(["diaSourceId"])
        self._cut_rows = self.cutouts.slice(0, 0)

    def visit(self, i: int) -> list[_DetectorWork]:
        cfg = self.cfg
        v = self.sky.visit(i)
        src, obj, forced = v.sources, v.objects, v.forced_sources
        spread = cfg.hot_detectors or 189
        if cfg.hot_detectors:
            src = _spread(src, v.visit, spread, "diaSourceId", 0)
            forced = _spread(forced, v.visit, spread, "diaForcedSourceId", 500_000)
        det_col = src.column("detector").to_numpy()
        fdet = forced.column("detector").to_numpy()
        if np.any(np.diff(det_col) < 0) or np.any(np.diff(fdet) < 0):  # the simulator sorts by detector
            raise LoadTestError("simulated rows are not grouped by detector")
        out = []
        for det in range(min(cfg.detectors, spread)):
            a, b = np.searchsorted(det_col, [det, det + 1])
            fa, fb = np.searchsorted(fdet, [det, det + 1])
            s, o, f = src.slice(a, b - a), obj.slice(a, b - a), forced.slice(fa, fb - fa)
            if s.num_rows == 0:
                continue
            hist, fhist = _history(s, f, v.visit, det, cfg.history, v.mjd)
            ids = s.column("diaSourceId").to_numpy().tolist()
            if self._cut_rows.num_rows < len(ids):  # one copy, then zero-copy slices for every detector
                self._cut_rows = self.cutouts.take(np.arange(len(ids)) % self.cutouts.num_rows)
            cut = self._cut_rows.slice(0, len(ids)).add_column(0, "diaSourceId", pa.array(ids, pa.int64()))
            inputs = AlertInputs(s, o, f, preload_sources=hist, preload_forced_sources=fhist, cutouts=cut)
            out.append(_DetectorWork(v.visit, det, v.mjd, o, s, f, inputs))
        return out


class CatalogueRun:
    """One run: topics, bucket and schema of its own, the publisher processes, the reader thread."""

    def __init__(self, cfg: CatalogueConfig, stack: StackAddresses, out: Path, result: LoadTestResult) -> None:
        self.cfg = cfg
        self.stack = stack
        self.out = out
        self.result = result
        self.tag = uuid.uuid4().hex[:8]
        self.topic = f"lt-{self.tag}.dia.results"
        self.alert_topic = f"lt-{self.tag}.alerts"
        self.bucket = f"lt-{self.tag}"
        self.schema = f"lt_{self.tag}"
        self.group = f"lt-{self.tag}-publishers"
        self.t0 = time.monotonic()
        self.watch = _Watch()
        self.publishers: list[ServiceProcess] = []
        self.sampler = ResourceSampler(self.t0)
        self._stop = threading.Event()
        self._errors: list[str] = []
        self.kills: list[dict[str, Any]] = []
        self.s3_endpoint = stack.s3_endpoint
        self.pg_dsn = stack.pg_dsn
        self.proxies: dict[str, TcpProxy] = {}
        self.retries: Counter[str] = Counter()
        self.critical: list[dict[str, Any]] = []
        self.visit_start: dict[int, float] = {}
        self.visit_late: dict[int, float] = {}
        self.stage: dict[str, list[float]] = defaultdict(list)
        self.created = False  # topics and bucket exist (clean-up needed)

    def now(self) -> float:
        return time.monotonic() - self.t0

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        self.stack.check()
        if self.cfg.chaos:  # S3 and PostgreSQL through proxies the run can cut (the shared servers run on)
            from urllib.parse import urlparse

            s3, pg = urlparse(self.stack.s3_endpoint), urlparse(self.stack.pg_dsn)
            self.proxies["s3"] = TcpProxy(s3.hostname or "127.0.0.1", s3.port or 80)
            self.proxies["pg"] = TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432)
            self.s3_endpoint = f"{s3.scheme}://{self.proxies['s3'].address}"
            self.pg_dsn = pg._replace(netloc=pg.netloc.replace(pg.netloc.rsplit("@", 1)[-1],
                                                               self.proxies["pg"].address)).geturl()
        s3_client(self.s3_endpoint).create_bucket(Bucket=self.bucket)
        self.created = True
        parts = max(2, 2 * self.cfg.publishers)
        ensure_topics(self.stack.kafka, [self.topic], partitions=parts)
        # Alerts are ~160 kB each: a long run would fill the broker's disk. Old segments go after
        # ALERT_RETENTION_MS; the run's own reader has counted every alert by then.
        admin = AdminClient({"bootstrap.servers": self.stack.kafka})
        config = {"retention.ms": str(ALERT_RETENTION_MS), "segment.ms": str(ALERT_RETENTION_MS // 4),
                  "segment.bytes": str(256 * 2**20)}
        for f in admin.create_topics([NewTopic(self.alert_topic, 8, 1, config=config)]).values():
            try:
                f.result(60)
            except KafkaException as exc:
                raise LoadTestError(f"could not create the alert topic {self.alert_topic}: {exc}") from exc
        ensure_topics(self.stack.kafka, [self.alert_topic], partitions=8)  # returns once it has leaders
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for i in range(self.cfg.publishers):
            env = {"NIGHTSHIFT_KAFKA_BOOTSTRAP": self.stack.kafka, "NIGHTSHIFT_INPUT_TOPIC": self.topic,
                   "NIGHTSHIFT_ALERT_TOPIC": self.alert_topic, "NIGHTSHIFT_ALERT_DLQ_TOPIC": f"{self.alert_topic}.dlq",
                   "NIGHTSHIFT_CONSUMER_GROUP": self.group, "NIGHTSHIFT_TRANSACTIONAL_ID": f"lt-{self.tag}-{i}",
                   "NIGHTSHIFT_ALERT_PARTITIONS": "8", "NIGHTSHIFT_LOG_LEVEL": "WARNING",
                   "NIGHTSHIFT_SCHEMA_REGISTRY_URL": self.stack.schema_registry,
                   "NIGHTSHIFT_S3_ENDPOINT_URL": self.s3_endpoint}
            self.publishers.append(ServiceProcess(f"alert-publisher-{i}", "alert_publisher", env, logs).start())
        for p in self.publishers:
            p.wait_ready(self.cfg.guard_s)
            self.sampler.watch(p.name, p.pid)
        import os

        self.sampler.watch("loadtest driver (APDB store, bundles, events)", os.getpid())

    # ------------------------------------------------------------------ reader
    def _reader(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.stack.kafka, "group.id": f"lt-{self.tag}-reader",
                             "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 20})
        consumer.subscribe([self.alert_topic])
        w = self.watch
        try:
            while not self._stop.is_set():
                for m in consumer.consume(500, 0.1):
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            self._errors.append(f"alert reader: {err}")
                        continue
                    t = self.now()
                    i = int(m.key() or b"-1")
                    with w.lock:
                        w.counts[i] += 1
                        w.stamps.append(t)
                        key = w.owner.get(i)
                        if key is not None and w.counts[i] == 1:
                            w.seen[key] += 1
                            w.last[key] = t
                    w.progress.set()
        finally:
            consumer.close()

    def _lag_sampler(self) -> None:
        probe = Consumer({"bootstrap.servers": self.stack.kafka, "group.id": self.group, "enable.auto.commit": False})
        try:
            parts = probe.list_topics(self.topic, timeout=30).topics[self.topic].partitions
            tps = [TopicPartition(self.topic, p) for p in parts]
            last_n, last_t = 0, 0.0
            while not self._stop.wait(1.0):
                try:
                    committed = probe.committed(tps, timeout=10)
                    ends = [probe.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
                except KafkaException:
                    continue
                lag = sum(max(0, e - max(c.offset, 0)) for c, e in zip(committed, ends, strict=True))
                t = self.now()
                self.result.series.setdefault("dia.results lag (events)", []).append((round(t, 2), float(lag)))
                with self.watch.lock:
                    n = len(self.watch.stamps)
                rate = (n - last_n) / (t - last_t) if t > last_t else 0.0
                self.result.series.setdefault("alerts visible / s", []).append((round(t, 2), round(rate, 1)))
                last_n, last_t = n, t
        finally:
            probe.close()

    # ------------------------------------------------------------------ detector task
    async def _detector(self, apdb: AsyncApdb, producer: Producer, s3: Any, work: _DetectorWork,
                        sem: asyncio.Semaphore, begins: dict[tuple[int, int], float]) -> None:
        async with sem:
            key = (work.visit, work.detector)
            t0 = self.now()
            begins[key] = t0
            await self._retry("APDB store", (ApdbConnectionError, ApdbTransientError, OSError),
                              lambda: apdb.store(work.mjd, work.objects, work.sources, work.forced))
            t1 = self.now()
            uri = f"s3://{self.bucket}/dia/visit={work.visit}/detector={work.detector}.arrow"
            await self._retry("bundle to S3", (AlertInputsError, *_S3_DOWN),
                              lambda: asyncio.to_thread(write_alert_inputs, work.inputs, uri, s3=s3))
            t2 = self.now()
            ids = work.ids
            event = DiaResults(instrument="LSSTCam", visit=work.visit, detector=work.detector,
                               visit_time_mjd_tai=work.mjd, n_dia_sources=len(ids),
                               n_dia_objects=work.objects.num_rows, dia_source_ids=ids, results_uri=uri,
                               alert_inputs_uri=uri, exposure_time_s=30.0)
            acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            loop = asyncio.get_running_loop()

            def delivered(err: Any, _msg: Any) -> None:
                if err is not None:
                    loop.call_soon_threadsafe(acked.set_exception, LoadTestError(
                        f"the broker refused dia.results for {key} on {self.topic}: {err}"))
                else:
                    loop.call_soon_threadsafe(acked.set_result, None)

            producer.produce(self.topic, encode(event), key=f"LSSTCam/{work.detector}".encode(), on_delivery=delivered)
            await acked
            t3 = self.now()
        self.result.timeline += [Span(work.visit, work.detector, "APDB store", t0, t1),
                                 Span(work.visit, work.detector, "bundle to S3", t1, t2),
                                 Span(work.visit, work.detector, "dia.results acked", t2, t3)]
        self.stage["APDB store"].append(t1 - t0)
        self.stage["bundle to S3"].append(t2 - t1)
        self.stage["dia.results acked"].append(t3 - t2)

    async def _retry(self, stage: str, errors: tuple[type[BaseException], ...],
                     call: Callable[[], Awaitable[Any]]) -> None:
        """``call()`` again after a transient error, as a runner retries (the APDB store is idempotent)."""
        deadline = time.monotonic() + self.cfg.guard_s
        while True:
            try:
                await call()
                return
            except errors as exc:
                if isinstance(exc, AlertInputsError) and not isinstance(exc.__cause__, _S3_DOWN):
                    raise  # not the connection: the server refused the bundle itself (too big, no bucket)
                self.retries[stage] += 1
                if time.monotonic() > deadline:
                    raise LoadTestError(f"{stage} kept failing for {self.cfg.guard_s:.0f} s: {exc}") from exc
                await asyncio.sleep(0.5)  # back-off before the retry

    async def _visit(self, apdb: AsyncApdb, producer: Producer, s3: Any, works: list[_DetectorWork],
                     sem: asyncio.Semaphore, chaos_rng: random.Random | None, fault: str = FAULTS[0]) -> None:
        visit = works[0].visit
        w = self.watch
        with w.lock:
            for work in works:
                for i in work.ids:
                    w.owner[i] = (visit, work.detector)
                w.expected[(visit, work.detector)] = len(work.ids)
        begins: dict[tuple[int, int], float] = {}
        self.visit_start[visit] = self.now()
        tasks = [asyncio.create_task(self._detector(apdb, producer, s3, work, sem, begins)) for work in works]
        if chaos_rng is not None:
            tasks.append(asyncio.create_task(self._chaos(visit, chaos_rng, fault)))
        await asyncio.gather(*tasks)
        await asyncio.to_thread(self._wait_alerts, visit, works)
        if not self.cfg.keep:  # every alert of the visit committed: no publisher needs its bundles again
            await asyncio.to_thread(self._drop_bundles, s3, visit, [work.detector for work in works])
        events_done = 0.0
        for work in works:
            key = (visit, work.detector)
            acked = max(s.end for s in self.result.timeline if s.visit == visit and s.detector == work.detector)
            events_done = max(events_done, acked)
            self.result.timeline.append(Span(visit, work.detector, "alerts visible (publisher)", acked, w.last[key]))
            self.stage["alerts visible (publisher)"].append(w.last[key] - acked)
        per_det = [w.last[(visit, work.detector)] - begins[(visit, work.detector)] for work in works]
        self.result.budget(DETECTOR_BUDGET[0]).samples.extend(per_det)
        whole = max(w.last[(visit, work.detector)] for work in works) - min(begins.values())
        self.result.budget(VISIT_BUDGET[0]).samples.append(whole)
        self.critical.append({"visit": visit, "detector_tasks_done_s": round(events_done - min(begins.values()), 3),
                              "last_alert_s": round(whole, 3)})

    def _drop_bundles(self, s3: Any, visit: int, detectors: list[int]) -> None:
        for d in detectors:
            with contextlib.suppress(Exception):  # clean-up only; the bucket goes at the end anyway
                s3.delete_object(Bucket=self.bucket, Key=f"dia/visit={visit}/detector={d}.arrow")

    async def _chaos(self, visit: int, rng: random.Random, fault: str) -> None:
        """Mid-visit, the next fault of :data:`FAULTS` (see :class:`CatalogueConfig`)."""
        w = self.watch
        target = max(1, sum(w.expected[(visit, d)] for d in range(512)) // 3)
        deadline = time.monotonic() + self.cfg.guard_s
        while time.monotonic() < deadline:
            with w.lock:
                done = sum(w.seen[(visit, d)] for d in range(512))
            if done >= target:
                break
            await asyncio.sleep(0.05)  # poll interval of a progress probe
        t_fault = self.now()
        record: dict[str, Any] = {"fault": fault, "visit": visit, "at_s": round(t_fault, 2),
                                  "alerts_seen_before": done}
        if fault == FAULTS[0]:
            p = rng.choice(self.publishers)
            await asyncio.to_thread(p.kill)
            await asyncio.to_thread(p.restart, self.cfg.guard_s)
            self.sampler.watch(p.name, p.pid)
            record.update(process=p.name, restart_ready_s=round(self.now() - t_fault, 2))
        else:
            self.proxies["s3" if fault == FAULTS[1] else "pg"].outage(OUTAGE_S)
            record.update(seconds=OUTAGE_S)
        self.kills.append(record)

    def _wait_alerts(self, visit: int, works: list[_DetectorWork]) -> None:
        w = self.watch
        keys = [(visit, work.detector) for work in works]
        deadline = time.monotonic() + self.cfg.guard_s
        while True:
            with w.lock:
                missing = sum(w.expected[k] - w.seen[k] for k in keys)
                w.progress.clear()
            if missing <= 0:
                return
            if self._errors:
                raise LoadTestError("; ".join(self._errors[:3]))
            for p in self.publishers:
                if not p.alive() and p.restarts == 0 and not self.cfg.chaos:
                    raise LoadTestError(f"{p.name} exited during visit {visit}:\n{p.tail()}")
            if time.monotonic() > deadline:
                raise LoadTestError(f"visit {visit}: {missing} alerts not visible after {self.cfg.guard_s:.0f} s "
                                    f"(publisher logs in {self.out / 'logs'})")
            if w.progress.wait(1.0):  # progress: the guard counts from the last alert seen
                deadline = time.monotonic() + self.cfg.guard_s

    # ------------------------------------------------------------------ whole run
    async def run(self) -> None:
        cfg = self.cfg
        maker = await asyncio.to_thread(_VisitMaker, cfg)
        reader = threading.Thread(target=self._reader, name="alert-reader", daemon=True)
        lag = threading.Thread(target=self._lag_sampler, name="lag-sampler", daemon=True)
        reader.start()
        lag.start()
        settings = ApdbSettings(dsn=self.pg_dsn, schema_name=self.schema,
                                pool_max_size=max(4, cfg.tasks + 2))
        producer = Producer({"bootstrap.servers": self.stack.kafka, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 0, "message.timeout.ms": int(cfg.guard_s * 1000)})
        poller_stop = threading.Event()

        def poll() -> None:
            while not poller_stop.is_set():
                producer.poll(0.05)

        poller = threading.Thread(target=poll, name="producer-poll", daemon=True)
        poller.start()
        s3 = s3_client(self.s3_endpoint)
        chaos_rng = random.Random(cfg.seed) if cfg.chaos else None
        sem = asyncio.Semaphore(cfg.tasks)
        try:
            with self.sampler:
                async with AsyncApdb(settings) as apdb:
                    await apdb.create(drop=True)
                    next_works = await asyncio.to_thread(maker.visit, 0)
                    running: list[asyncio.Task[None]] = []
                    t_start = self.now()
                    for i in range(cfg.visits):
                        works = next_works
                        if cfg.cadence_s is not None:
                            due = t_start + i * cfg.cadence_s
                            if self.now() < due:
                                await asyncio.sleep(due - self.now())
                            self.visit_late[works[0].visit] = round(self.now() - due, 3)
                        kill = chaos_rng if (chaos_rng is not None and i % 2 == 1) else None
                        fault = FAULTS[(i // 2) % len(FAULTS)]
                        task = asyncio.create_task(self._visit(apdb, producer, s3, works, sem, kill, fault))
                        running.append(task)
                        if cfg.cadence_s is None:
                            await task
                        if i + 1 < cfg.visits:
                            next_works = await asyncio.to_thread(maker.visit, i + 1)
                    await asyncio.gather(*running)
                    self.result.extra["apdb_dia_sources"] = await self._apdb_ids(apdb)
                    if not cfg.keep:
                        await apdb.drop()
        finally:
            poller_stop.set()
            poller.join(10)
            producer.flush(10)
            self.result.resources = self.sampler.samples

    async def _apdb_ids(self, apdb: AsyncApdb) -> int:
        rows = await apdb.pool.fetch(f'SELECT "diaSourceId" FROM "{self.schema}"."DiaSource"')
        self._apdb_source_ids = {int(r[0]) for r in rows}
        return len(self._apdb_source_ids)

    def reconcile(self) -> dict[str, Any]:
        """Every DiaSource in the APDB has exactly one alert on the topic (by diaSourceId), and nothing else is there.

        Reads the whole alert topic again with a fresh ``read_committed`` reader.
        """
        counts = _count_alerts(self.stack.kafka, self.alert_topic, self.cfg.guard_s)
        reader = "a fresh read_committed reader, the whole topic"
        if counts is None:  # old segments expired (a long run): the run's own reader counted every alert
            with self.watch.lock:
                counts = Counter(self.watch.counts)
            reader = "the run's read_committed reader (old segments expired since)"
        apdb_ids: set[int] = getattr(self, "_apdb_source_ids", set())
        lost = apdb_ids - set(counts)
        dup = {i: n for i, n in counts.items() if n > 1}
        extra = set(counts) - apdb_ids
        return {"apdb_dia_sources": len(apdb_ids), "alerts_on_topic": sum(counts.values()),
                "distinct_alerts": len(counts), "lost": len(lost), "duplicated": len(dup),
                "alerts_without_apdb_row": len(extra), "ok": not lost and not dup and not extra, "counted_by": reader}

    def close(self) -> None:
        self._stop.set()
        for p in self.publishers:
            p.stop()
        for proxy in self.proxies.values():
            proxy.close()
        if self.created and not self.cfg.keep:
            admin = AdminClient({"bootstrap.servers": self.stack.kafka})
            topics = [self.topic, f"{self.topic}.dlq", self.alert_topic, f"{self.alert_topic}.dlq"]
            try:
                for f in admin.delete_topics(topics, operation_timeout=30).values():
                    with contextlib.suppress(KafkaException):  # a topic that was never created
                        f.result(30)
            except KafkaException:
                pass
            s3 = s3_client(self.s3_endpoint)
            try:
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                    for o in page.get("Contents", []):  # one by one: S3Proxy refuses DeleteObjects
                        s3.delete_object(Bucket=self.bucket, Key=o["Key"])
                s3.delete_bucket(Bucket=self.bucket)
            except Exception:  # noqa: BLE001 - clean-up is best effort; the run's figures are already kept
                pass


def _count_alerts(bootstrap: str, topic: str, guard: float) -> Counter[int] | None:
    """diaSourceId -> how many alerts of ``topic`` carry it (read_committed, every partition to its end).

    None if the topic no longer starts at offset 0 (retention removed old segments).
    """
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lt-reconcile-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "enable.partition.eof": True,
                  "isolation.level": "read_committed"})
    try:
        parts = len(c.list_topics(topic, timeout=30).topics[topic].partitions)
        if any(c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[0] > 0 for p in range(parts)):
            return None
        c.assign([TopicPartition(topic, p, 0) for p in range(parts)])
        counts: Counter[int] = Counter()
        at_end: set[int] = set()
        deadline = time.monotonic() + guard
        while len(at_end) < parts:
            if time.monotonic() > deadline:
                raise LoadTestError(f"{topic} not read to its end within {guard:.0f} s")
            for m in c.consume(1000, 0.5):
                err, part = m.error(), int(m.partition() or 0)
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(part)
                    continue
                at_end.discard(part)
                counts[int(m.key() or b"-1")] += 1
        return counts
    finally:
        c.close()


def run_catalogue(cfg: CatalogueConfig, kind: str, command: str, out: Path,
                  stack: StackAddresses | None = None) -> LoadTestResult:
    """Run ``cfg`` against the stack and return the result (not yet written; see :func:`write_report`).

    A run that cannot go on (the stack does not answer, the broker refuses writes, a
    bundle the S3 server refuses, no progress for ``guard_s`` seconds) stops at once and
    comes back with ``failed`` set.
    """
    result = LoadTestResult(kind=kind, command=command)
    result.budgets = [Budget(DETECTOR_BUDGET[0], DETECTOR_BUDGET[1], MODE, DETECTOR_BUDGET[2]),
                      Budget(VISIT_BUDGET[0], VISIT_BUDGET[1], MODE, VISIT_BUDGET[2])]
    run = CatalogueRun(cfg, stack or StackAddresses.from_env(), out, result)
    result.extra.update(topic=run.alert_topic, apdb_schema=run.schema, config=vars(cfg))
    try:
        run.setup()
        asyncio.run(run.run())
        result.extra["reconciliation"] = run.reconcile()
    except NightshiftError as exc:  # kept in the result: the report of a failed run says what went wrong
        result.failed = str(exc).splitlines()[0]
        result.notes.append(str(exc))
    finally:
        run.close()
        result.extra["chaos_faults"] = run.kills
        result.extra["retries"] = dict(run.retries)
        result.extra["stage_p50_s"] = {k: round(float(np.median(v)), 4) for k, v in run.stage.items() if v}
        result.extra["stage_p95_s"] = {k: round(float(np.percentile(v, 95)), 4) for k, v in run.stage.items() if v}
        result.extra["visit_critical_path"] = run.critical
        if run.critical:
            tasks = float(np.median([c["detector_tasks_done_s"] for c in run.critical]))
            last = float(np.median([c["last_alert_s"] for c in run.critical]))
            holder = ("the detector tasks (APDB store + bundle to S3 + event, "
                      f"{cfg.tasks} at a time)" if tasks > 0.5 * last else "the alert publishers")
            result.notes.append(f"Where the visit's time goes (median over visits): the last detector task ends "
                                f"{tasks:.2f} s after the first store starts, the last alert is visible at {last:.2f} s"
                                f": {holder} hold most of it. Per-stage p50/p95 in stage_p50_s / stage_p95_s.")
        if run.visit_late:
            result.extra["visit_start_late_s"] = run.visit_late
        result.notes.append("Mode catalogue: simulated DIA catalogues (nightshift.apdb.SkyField), no pixels; "
                            "APDB store per detector, alert-inputs bundle to S3, dia.results (acks=all) into the real "
                            "alert-publisher service processes; alerts timed when visible to a read_committed reader.")
        result.notes.append(f"History: {cfg.history} DiaSources + {cfg.history} DiaForcedSources per object, "
                            "synthesized in the bundle (not read back from the APDB).")
    return result
