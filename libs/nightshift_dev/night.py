"""A night of Alert Production on this machine: ``nightshift ap run-night`` and ``make demo``.

:func:`run_night` does what an observatory and a data facility do together, on the local stack:

1. starts the local stack (:func:`nightshift_dev.devstack.up`) and makes a butler repository
   (PostgreSQL registry, S3 or POSIX datastore), an APDB schema, master calibrations and deep
   templates for the fields of the night (:mod:`nightshift.obs.sim`), and renders the raws;
2. starts every Alert Production service as a process (:class:`~nightshift_dev.services.LocalServices`:
   registry, datastore-writer, alert-publisher, runners, planner, ingest — whichever are installed);
3. triggers the visits on the cadence: ``nextVisit`` a few seconds before the exposure, the raws at
   shutter close plus readout (:class:`VisitTrigger`);
4. follows every event topic and the alert topic (``read_committed``) and shows a live per-visit
   timeline (:class:`NightMonitor`): next visit → raws → planned → processed → alerts published;
5. ends with a summary (:class:`NightSummary`): visits, alerts, median and p95 time from shutter
   close to a visit's last alert, and the DIA round trip (a raw's arrival to its ``dia.results``);
6. stops the services with SIGTERM (each drains its in-flight work).

Each night has topics, consumer groups, a registry schema, an APDB schema and object-store
prefixes of its own (a fresh tag), so nights never see each other's events or rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightshift import NightshiftError
from nightshift.events import KafkaSettings, kafka_settings

from .services import LocalServices, available_services

if TYPE_CHECKING:
    from nightshift.obs.sim import Observation

__all__ = [
    "EVENT_SUBJECTS",
    "NightContext",
    "NightError",
    "NightHooks",
    "NightMonitor",
    "NightRepo",
    "NightSpec",
    "NightSummary",
    "VisitTrigger",
    "prepare_night",
    "run_night",
    "service_environment",
]

Echo = Callable[[str], None]

#: Event subjects of Alert Production (topic = prefix + subject).
EVENT_SUBJECTS = ("nextVisit", "raw.arrived", "raw.ingested", "quantum.planned", "quantum.completed",
                  "quantum.failed", "dataset.write", "dataset.stored", "dia.results")

#: Detectors of LSSTCam-sim's central raft R22, from the boresight outwards.
_CENTRE_DETECTORS = (94, 93, 95, 91, 97, 90, 92, 96, 98)
_BUCKET = "nightshift-night"
_SKYMAP = "sim_healpix"
_REFCAT, _REFCAT_ORDER, _REFCAT_RUN = "sim_refcat", 5, "refcats/sim"
_TAI_UTC = 37.0  # seconds, since 2017
_MAX_RESTARTS = 3  # per service process, before the night gives up


class NightError(NightshiftError, RuntimeError):
    """The night could not be set up or run (the message says which step and why)."""

    error_type = "night"


@dataclass(frozen=True)
class NightSpec:
    """What night to run.

    Parameters
    ----------
    visits : int
        Science visits (fields observed in pairs, as :func:`nightshift.obs.sim.plan_night` plans them).
    detectors : int
        Detectors per visit, from the centre of LSSTCam-sim's focal plane outwards (1–9).
    cadence_s : float
        Seconds between two visits' ``nextVisit`` (Rubin: about 35).
    detector_size : int
        Pixels per detector side (the simulated camera keeps its field: the pixels grow).
    exposure_time_s : float
        Exposure time (the shutter closes this long after the exposure starts).
    lead_s : float
        Seconds between ``nextVisit`` and the start of the exposure.
    readout_s : float
        Seconds from shutter close to the raws being dropped.
    runners : int
        Runner processes in the runner group.
    datastore : str
        ``s3`` (S3Proxy of the local stack) or ``posix`` (a directory beside the repository).
    partitions : int
        Partitions of every event topic (equal for ``quantum.planned`` and ``raw.ingested``).
    seed : int
        Seed of the simulated sky, calibrations and raws.
    timeout_s : float
        After the last visit's raws, how long to wait for its alerts at most (a deadlock guard).
    """

    visits: int = 4
    detectors: int = 4
    cadence_s: float = 35.0
    detector_size: int = 512
    exposure_time_s: float = 30.0
    lead_s: float = 5.0
    readout_s: float = 1.0
    runners: int = 2
    datastore: str = "s3"
    partitions: int = 4
    seed: int = 0
    instrument: str = "LSSTCam-sim"
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.visits < 1:
            raise NightError(f"--visits must be at least 1, not {self.visits}")
        if not 1 <= self.detectors <= len(_CENTRE_DETECTORS):
            raise NightError(f"--detectors must be 1..{len(_CENTRE_DETECTORS)} (the central raft), "
                             f"not {self.detectors}")
        if not 64 <= self.detector_size <= 4096:
            raise NightError(f"--detector-size must be 64..4096 pixels, not {self.detector_size}")
        if self.cadence_s <= 0 or self.exposure_time_s <= 0 or self.lead_s < 0 or self.readout_s < 0:
            raise NightError("the cadence and exposure time must be positive, the lead and readout not negative")
        if self.datastore not in ("s3", "posix"):
            raise NightError(f"--datastore must be s3 or posix, not {self.datastore!r}")
        if self.runners < 1 or self.partitions < 1:
            raise NightError("at least one runner and one partition are needed")

    @property
    def detector_ids(self) -> list[int]:
        return sorted(_CENTRE_DETECTORS[: self.detectors])


@dataclass
class NightRepo:
    """What :func:`prepare_night` made: the repository, APDB schema, observations and rendered raws."""

    tag: str
    workdir: Path
    repo: str
    registry_schema: str
    apdb_schema: str
    observations: list[Observation]
    detectors: list[int]
    raws: dict[tuple[int, int], Any]  # (seq_num, detector) -> ADU array (rendered ahead, written at readout)
    templates: int
    calibrations: int
    prefix: str
    staging_uri: str
    drop_dir: Path
    alert_inputs_uri: str = ""

    def topic(self, subject: str) -> str:
        return self.prefix + subject

    @property
    def alert_topic(self) -> str:
        return self.prefix + "alerts"


def _today_day_obs() -> int:
    """The observing day of now (Rubin's day_obs: the date at UTC-12h)."""
    return int((dt.datetime.now(dt.UTC) - dt.timedelta(hours=12)).strftime("%Y%m%d"))


def _tai_isot(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix + _TAI_UTC, dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def _patches(camera: Any, obs: Observation, detectors: Sequence[int], skymap: Any) -> set[tuple[int, int]]:
    """(tract, patch) of ``skymap`` overlapping the given detectors' footprints (grown by 1 arcmin)."""
    from astropy.wcs import WCS

    from nightshift.sky import ConvexPolygon

    order = skymap.tract_order + skymap.patch_levels
    out: set[tuple[int, int]] = set()
    for d in detectors:
        det = camera[d]
        wcs = WCS(camera.wcs_header(d, obs.ra, obs.dec, obs.sky_angle))
        xs = [-0.5, det.width - 0.5, det.width - 0.5, -0.5]
        ys = [-0.5, -0.5, det.height - 0.5, det.height - 0.5]
        ra, dec = wcs.all_pix2world(xs, ys, 0)
        poly = ConvexPolygon.from_radec([float(r) % 360.0 for r in ra], [float(x) for x in dec]).dilated(1 / 60)
        for lo, hi in poly.pixel_ranges(order):
            for pix in range(int(lo), int(hi)):
                out.add((pix >> (2 * skymap.patch_levels), pix & (skymap.patch_max - 1)))
    return out


def _write_refcat(directory: Path, plan: Sequence[Observation], bands: Sequence[str], seed: int) -> Path:
    """The simulated sky's stars around the night's fields as Parquet shards (HEALPix order 5), ``{band}_mag``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nightshift.obs.sim import sky_catalog
    from nightshift.obs.sim._catalog import BAND_OFFSETS
    from nightshift.sky import point_pixel

    directory.mkdir(parents=True, exist_ok=True)
    rows: dict[int, tuple[float, float, float, float]] = {}
    for ra, dec in sorted({(o.ra, o.dec) for o in plan}):
        cat = sky_catalog(seed, ra, dec, 0.8)  # the central raft is within 0.4 deg of the boresight
        stars = cat.kind == "star"
        for i, r, d, m, c in zip(cat.id[stars], cat.ra[stars], cat.dec[stars], cat.mag_r[stars], cat.colour[stars],
                                 strict=True):
            rows[int(i)] = (float(r), float(d), float(m), float(c))
    ra_a, dec_a, mag_r, colour = (np.array(col) for col in zip(*rows.values(), strict=True))
    pixels = np.array([point_pixel(float(r), float(d), _REFCAT_ORDER) for r, d in zip(ra_a, dec_a, strict=True)])
    for p in np.unique(pixels):
        sel = pixels == p
        cols = {"ra": ra_a[sel], "dec": dec_a[sel]}
        cols.update({f"{b}_mag": mag_r[sel] + BAND_OFFSETS.get(b, 0.0) * colour[sel] for b in bands})
        pq.write_table(pa.table(cols), directory / f"{int(p)}.parquet")
    return directory


def prepare_night(spec: NightSpec, env: dict[str, str], workdir: Path, echo: Echo = print) -> NightRepo:
    """Make the night's repository, APDB, calibrations and templates, and render its raws."""
    from nightshift.apdb import Apdb, ApdbSettings
    from nightshift.butler import Butler
    from nightshift.butler.external import ingest_reference_catalog
    from nightshift.obs import get_instrument
    from nightshift.obs.sim import certify_master_calibs, make_templates, plan_night, render_detector
    from nightshift.sky import HealpixSkyMap

    tag = uuid.uuid4().hex[:8]
    dets = spec.detector_ids
    day_obs = _today_day_obs()
    plan = plan_night(spec.visits, instrument=spec.instrument, day_obs=day_obs, seed=spec.seed,
                      exposure_time=spec.exposure_time_s)
    camera = get_instrument(spec.instrument, detector_size=spec.detector_size).camera
    pixel_scale = round(camera.plate_scale * camera[dets[0]].pixel_size, 4)  # arcsec per detector pixel
    # Small simulated detectors have coarse pixels: keep the PSF sampled (FWHM >= 2.8 pixels) so the
    # pipeline's PSF and astrometric fits work as they do on LSSTCam's 0.2" pixels.
    plan = [replace(o, seeing=max(o.seeing, 2.8 * pixel_scale)) for o in plan]
    if pixel_scale > 1.0:
        # Pixels above 1" collect so much r/i sky in 30 s that it nears saturation (measured at 512 px, 1.6":
        # r sky 27,000 ADU of 40,000) and no clean star is left for the PSF: such nights are observed in g.
        plan = [replace(o, physical_filter="g_6") for o in plan]
        echo(f"            {pixel_scale:.1f}\" pixels: every visit in g (r and i skies near saturation at this "
             "pixel size; --detector-size 1024 or more cycles g, r, i)")
    workdir.mkdir(parents=True, exist_ok=True)
    repo_dir = workdir / "repo"
    registry_schema = f"night_{tag}"
    if spec.datastore == "s3":
        datastore: dict[str, Any] = {"cls": "s3", "bucket": _BUCKET, "prefix": f"{tag}/repo",
                                     "endpoint_url": env["S3_ENDPOINT"], "create_bucket": True}
        staging = f"s3://{_BUCKET}/{tag}/staging"
        alert_inputs = f"s3://{_BUCKET}/{tag}/alert-inputs"
    else:
        datastore = {"cls": "posix", "root": str(workdir / "datastore")}
        staging = str(workdir / "staging")
        alert_inputs = str(workdir / "alert-inputs")
    t0 = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    with Butler.create(repo_dir, datastore=datastore, registry_db=env["PG_DSN"],
                       registry_schema=registry_schema) as butler:
        get_instrument(spec.instrument).register(butler.registry)
        filters = sorted({o.physical_filter for o in plan})
        calibs = certify_master_calibs(butler, spec.instrument, dets, filters,
                                       begin=(now - dt.timedelta(days=2)).isoformat(timespec="seconds")[:19],
                                       end=(now + dt.timedelta(days=30)).isoformat(timespec="seconds")[:19],
                                       detector_size=spec.detector_size, seed=spec.seed)
        skymap = HealpixSkyMap(_SKYMAP, tract_order=3, patch_levels=5)
        by_band: dict[str, set[tuple[int, int]]] = {}
        for o in plan:
            band = o.physical_filter.split("_")[0]
            by_band.setdefault(band, set()).update(_patches(camera, o, dets, skymap))
        tracts = tuple(sorted({t for ps in by_band.values() for t, _ in ps}))
        skymap = HealpixSkyMap(_SKYMAP, tract_order=3, patch_levels=5, tracts=tracts)
        templates = 0
        for band, patches in sorted(by_band.items()):
            templates += len(make_templates(butler, skymap, sorted(patches), [band], seed=spec.seed,
                                            pixel_scale=pixel_scale, seeing=max(0.6, 1.6 * pixel_scale)))
        shards = _write_refcat(workdir / "refcat", plan, sorted(by_band), spec.seed)
        refcat = ingest_reference_catalog(butler, _REFCAT, shards, order=_REFCAT_ORDER, run=_REFCAT_RUN,
                                          transfer="copy")
    echo(f"setup     : butler repository {repo_dir} (registry: PostgreSQL schema {registry_schema}, datastore: "
         f"{'S3 s3://' + _BUCKET + '/' + tag + '/repo' if spec.datastore == 's3' else 'POSIX'}); "
         f"{len(calibs)} master calibrations, {templates} templates, {len(refcat)} reference-catalog shards "
         f"({time.perf_counter() - t0:.0f} s)")

    apdb_schema = f"apdb_night_{tag}"

    with Apdb(ApdbSettings(dsn=env["PG_DSN"], schema_name=apdb_schema)) as apdb:
        apdb.create()
    t1 = time.perf_counter()
    raws = {}
    for o in plan:
        for d in dets:
            raws[(o.seq_num, d)] = render_detector(o, camera, d, seed=spec.seed).adu
    echo(f"            APDB schema {apdb_schema}; rendered {len(raws)} raws of {spec.detector_size}x"
         f"{spec.detector_size} px ({time.perf_counter() - t1:.0f} s)")
    drop = workdir / "drop"
    drop.mkdir(exist_ok=True)
    return NightRepo(tag=tag, workdir=workdir, repo=str(repo_dir), registry_schema=registry_schema,
                     apdb_schema=apdb_schema, observations=plan, detectors=dets, raws=raws, templates=templates,
                     calibrations=len(calibs), prefix=f"night{tag}.", staging_uri=staging, drop_dir=drop,
                     alert_inputs_uri=alert_inputs)


def service_environment(night: NightRepo, env: dict[str, str], kafka: KafkaSettings) -> dict[str, str]:
    """The environment every service of the night shares (docs/operations.md, "Settings")."""
    return {
        **kafka.environment(),
        "NIGHTSHIFT_TOPIC_PREFIX": night.prefix,
        "NIGHTSHIFT_BUTLER_REPO": night.repo,
        "NIGHTSHIFT_APDB_DSN": env["PG_DSN"],
        "NIGHTSHIFT_APDB_SCHEMA_NAME": night.apdb_schema,
        "NIGHTSHIFT_S3_ENDPOINT_URL": env["S3_ENDPOINT"],
        "NIGHTSHIFT_STAGING_URI": night.staging_uri,
        "NIGHTSHIFT_SCHEMA_REGISTRY_URL": env["SCHEMA_REGISTRY_URL"],
        "NIGHTSHIFT_LOG_LEVEL": "INFO",
        "OMP_NUM_THREADS": "1",  # one thread per process: the services share few cores
    }


def start_services(night: NightRepo, services: LocalServices, spec: NightSpec, echo: Echo = print) -> list[str]:
    """Start every installed service with the night's settings; the names started."""
    names = available_services()
    p = night.prefix
    per_service: dict[str, dict[str, str]] = {
        "alert-publisher": {"input_topic": p + "dia.results", "alert_topic": night.alert_topic,
                            "alert_dlq_topic": p + "alerts.dlq", "transactional_id": p + "alert-publisher-{i}",
                            "archive_bucket": _BUCKET, "archive_prefix": f"{night.tag}/alerts",
                            "alert_partitions": str(spec.partitions)},
        # the sky map of prepare_night's templates; nextVisit comes lead_s before the exposure
        "planner": {"skymap": _SKYMAP, "lead_time_s": f"{spec.lead_s:g}", "partitions": str(spec.partitions),
                    "refcat": _REFCAT, "refcat_collections": json.dumps([_REFCAT_RUN])},
        "runner": {"alert_inputs_uri": night.alert_inputs_uri, "partitions": str(spec.partitions),
                   # the astrometric fit's acceptance grows with the coarse pixels of small simulated detectors
                   **({"astrometry_max_rms_arcsec": f"{1.5 * 512 / spec.detector_size:.2f}"}
                      if spec.detector_size <= 512 else {})},
        "registry": {"api_port": "0", "partitions": str(spec.partitions)},
        "ingest": {"partitions": str(spec.partitions)},
        "datastore-writer": {"partitions": str(spec.partitions)},
    }
    for name in names:
        t0 = time.perf_counter()
        replicas = spec.runners if name == "runner" else 1
        settings = {"consumer_group": p + name, **per_service.get(name, {})}
        services.start(name, replicas, **settings)
        echo(f"service   : {name} x{replicas} serving ({time.perf_counter() - t0:.1f} s)")
    return names


# -- the observatory: nextVisit, then the raws at readout ---------------------------------------------------------
@dataclass
class VisitClock:
    """Wall-clock times (Unix seconds) of one visit."""

    seq_num: int
    visit: int
    next_visit_at: float
    begin: float
    shutter_close: float
    readout: float


class VisitTrigger:
    """Sends ``nextVisit`` and drops the raws on time, as the observatory would.

    A minimal trigger of the night's own: ``nextVisit`` (keyed ``instrument/visit``) ``lead_s``
    before the exposure; at shutter close plus ``readout_s`` it writes each detector's raw into the
    drop directory (write, then rename: a watcher never sees half a file) and sends ``raw.arrived``
    (keyed ``instrument/detector``). Each observation is re-timed to the wall clock, so its headers
    say when it was taken and ``alert_timing_since_shutter_close`` measures real latency.
    """

    def __init__(self, night: NightRepo, spec: NightSpec, kafka: KafkaSettings) -> None:
        self.night = night
        self.spec = spec
        self.kafka = kafka
        self.clocks: list[VisitClock] = []

    def schedule(self, start: float) -> list[VisitClock]:
        self.clocks = []
        for i, o in enumerate(self.night.observations):
            nv = start + i * self.spec.cadence_s
            begin = nv + self.spec.lead_s
            close = begin + self.spec.exposure_time_s
            self.clocks.append(VisitClock(o.seq_num, o.exposure_id, nv, begin, close, close + self.spec.readout_s))
        return self.clocks

    def run(self, stop: threading.Event) -> None:
        """Send every visit's events at their times (call :meth:`schedule` first); returns when all are sent."""
        from confluent_kafka import Producer

        from nightshift.events import NextVisit, RawArrived, encode
        from nightshift.obs import get_instrument
        from nightshift.obs.sim import next_visit_payload, write_raw

        camera = get_instrument(self.spec.instrument, detector_size=self.spec.detector_size).camera
        producer = Producer({**self.kafka.librdkafka_config(), "enable.idempotence": True, "acks": "all",
                             "linger.ms": 0})
        obs_by_seq = {o.seq_num: o for o in self.night.observations}
        actions: list[tuple[float, int, str, VisitClock]] = []
        for c in self.clocks:
            actions.append((c.next_visit_at, 0, "nextVisit", c))
            actions.append((c.readout, 1, "raws", c))
        actions.sort(key=lambda a: (a[0], a[1]))
        try:
            for when, _, what, c in actions:
                if stop.wait(max(0.0, when - time.time())):
                    return
                obs = replace(obs_by_seq[c.seq_num], begin=_tai_isot(c.begin))
                inst = self.spec.instrument
                if what == "nextVisit":
                    payload = next_visit_payload(obs, self.night.detectors, seed=self.spec.seed)
                    payload["issued_at"] = dt.datetime.now(dt.UTC)
                    producer.produce(self.night.topic("nextVisit"), encode(NextVisit(**payload)),
                                     key=f"{inst}/{obs.exposure_id}")
                else:
                    for d in self.night.detectors:
                        raw = self._drop(write_raw, obs, camera, d)
                        arrived = RawArrived(
                            instrument=inst, group_id=obs.obs_id, visit=obs.exposure_id, detector=d, snap=0,
                            uri=str(raw), size_bytes=raw.stat().st_size, checksum=_sha256(raw),
                            observed_at=dt.datetime.now(dt.UTC))
                        producer.produce(self.night.topic("raw.arrived"), encode(arrived), key=f"{inst}/{d}")
                producer.poll(0)
                producer.flush(30)
        finally:
            producer.flush(30)

    def _drop(self, write_raw: Callable[..., Path], obs: Observation, camera: Any, detector: int) -> Path:
        final_dir = self.night.drop_dir / str(obs.day_obs) / f"{obs.seq_num:06d}"
        tmp_dir = self.night.drop_dir / ".incoming" / f"{obs.seq_num:06d}-{detector}"
        tmp = write_raw(tmp_dir, obs, camera, detector, self.night.raws[(obs.seq_num, detector)],
                        extra={"NSSEED": self.spec.seed})
        final_dir.mkdir(parents=True, exist_ok=True)
        final = final_dir / tmp.name
        os.replace(tmp, final)
        return final


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- following the night ------------------------------------------------------------------------------------------
@dataclass
class VisitState:
    """What the event topics said about one visit (times are Unix seconds of receipt)."""

    visit: int
    physical_filter: str
    detectors: int
    clock: VisitClock | None = None
    next_visit: float | None = None
    raws: dict[int, float] = field(default_factory=dict)
    ingested: dict[int, float] = field(default_factory=dict)
    planned: dict[int, float] = field(default_factory=dict)
    completed: dict[int, float] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    dia: dict[int, tuple[float, list[int]]] = field(default_factory=dict)
    alerts: dict[int, float] = field(default_factory=dict)  # diaSourceId -> receipt time
    duplicate_alerts: int = 0

    @property
    def expected_alerts(self) -> int:
        return sum(len(ids) for _, ids in self.dia.values())

    @property
    def done(self) -> bool:
        """Every detector failed, or has its dia.results and an alert for each of its DIA sources."""
        resolved = set(self.failed) | {d for d, (_, ids) in self.dia.items() if all(i in self.alerts for i in ids)}
        return len(resolved) >= self.detectors

    @property
    def last_alert(self) -> float | None:
        return max(self.alerts.values()) if self.alerts else None


class NightMonitor:
    """Follows the night's event topics and its alert topic (``read_committed``) in a thread."""

    def __init__(self, night: NightRepo, spec: NightSpec, kafka: KafkaSettings) -> None:
        self.night = night
        self.spec = spec
        self.kafka = kafka
        self.visits: dict[int, VisitState] = {
            o.exposure_id: VisitState(o.exposure_id, o.physical_filter, len(night.detectors))
            for o in night.observations}
        self._pending_alerts: dict[int, float] = {}
        self._source_visit: dict[int, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.assigned = threading.Event()
        self.errors: list[str] = []
        self.dead_letters: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> NightMonitor:
        self._thread = threading.Thread(target=self._run, name="night-monitor", daemon=True)
        self._thread.start()
        if not self.assigned.wait(120):
            raise NightError("the night's monitor got no partitions from Kafka in 120 s; is the broker up?")
        return self

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        from confluent_kafka import Consumer

        topics = [self.night.topic(s) for s in EVENT_SUBJECTS] + [self.night.alert_topic]
        topics += [t + ".dlq" for t in topics[: len(EVENT_SUBJECTS)]]
        consumer = Consumer({**self.kafka.librdkafka_config(), "group.id": self.night.prefix + "monitor",
                             "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                             "enable.auto.commit": False, "topic.metadata.refresh.interval.ms": 2000})

        def on_assign(c: Any, partitions: Any) -> None:
            self.assigned.set()

        consumer.subscribe(topics, on_assign=on_assign)
        try:
            while not self.stop.is_set():
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is not None:
                        continue
                    self._handle(msg.topic() or "", msg.key(), msg.value() or b"", time.time())
        finally:
            consumer.close()

    def _handle(self, topic: str, key: bytes | None, value: bytes, now: float) -> None:
        from nightshift.events import DecodeError, EventValidationError, decode

        if topic == self.night.alert_topic:
            with self.lock:
                self._alert(int(key or b"-1"), now)
            return
        if topic.endswith(".dlq"):
            with self.lock:
                self.dead_letters[topic] = self.dead_letters.get(topic, 0) + 1
            return
        try:
            event = decode(value)
        except (DecodeError, EventValidationError) as exc:
            self.errors.append(f"{topic}: {exc}")
            return
        with self.lock:
            self._event(event, now)

    def _alert(self, source_id: int, now: float) -> None:
        visit = self._source_visit.get(source_id)
        if visit is None:
            if source_id in self._pending_alerts:
                self._pending_alerts[source_id] = -1.0  # seen twice before its dia.results: a duplicate
            else:
                self._pending_alerts[source_id] = now
            return
        state = self.visits[visit]
        if source_id in state.alerts:
            state.duplicate_alerts += 1
        else:
            state.alerts[source_id] = now

    def _event(self, event: Any, now: float) -> None:
        subject = event.SUBJECT
        visit: int | None = getattr(event, "visit", None)
        state = self.visits.get(visit) if visit is not None else None
        if state is None or visit is None:
            return
        det: int = getattr(event, "detector", None) or 0
        if subject == "nextVisit":
            state.next_visit = state.next_visit or now
        elif subject == "raw.arrived":
            state.raws.setdefault(det, now)
        elif subject == "raw.ingested":
            state.ingested.setdefault(det, now)
        elif subject == "quantum.planned":
            state.planned.setdefault(det, now)
        elif subject == "quantum.completed":
            state.completed.setdefault(det, now)
        elif subject == "quantum.failed":
            state.failed.setdefault(det, f"{event.error_type}: {event.message}")
        elif subject == "dia.results" and det not in state.dia:
            state.dia[det] = (now, list(event.dia_source_ids))
            for sid in event.dia_source_ids:
                self._source_visit[sid] = visit
                seen = self._pending_alerts.pop(sid, None)
                if seen is not None:
                    if seen < 0:
                        state.duplicate_alerts += 1
                        seen = now
                    self._alert(sid, seen)

    def all_done(self) -> bool:
        with self.lock:
            return all(v.done for v in self.visits.values())


# -- the live view ------------------------------------------------------------------------------------------------
def _cell(times: dict[int, float], total: int, since: float | None) -> str:
    if not times:
        return "·"
    n = len(times)
    mark = "[green]✓[/]" if n >= total else f"{n}/{total}"
    if since is not None and n >= total:
        return f"{mark} {max(times.values()) - since:+.1f}s"
    return mark


def render_table(monitor: NightMonitor, clocks: Sequence[VisitClock], started: float) -> Any:
    """The per-visit timeline as a rich table (times relative to the visit's shutter close)."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"nightshift — a night of Alert Production ({time.time() - started:.0f} s)",
                  caption="times after shutter close: next visit → raws → planned → processed → alerts published",
                  box=box.SIMPLE_HEAD)
    for col in ("visit", "filter", "nextVisit", "raws", "planned", "processed", "DIA", "alerts", "last alert"):
        table.add_column(col, justify="right" if col not in ("visit", "filter") else "left", no_wrap=True)
    by_visit = {c.visit: c for c in clocks}
    with monitor.lock:
        for v in monitor.visits.values():
            c = by_visit.get(v.visit)
            close = c.shutter_close if c else None
            nv = "·" if v.next_visit is None else (
                f"[green]✓[/] {v.next_visit - close:+.1f}s" if close else "[green]✓[/]")
            proc = _cell(v.completed, v.detectors, close)
            if v.failed:
                proc += f" [red]{len(v.failed)} failed[/]"
            expected = v.expected_alerts
            alerts = "·" if not v.alerts and not v.dia else (
                f"[green]{len(v.alerts)}[/]" if v.done else f"{len(v.alerts)}/{expected}")
            if v.duplicate_alerts:
                alerts += f" [red]{v.duplicate_alerts} dup[/]"
            last = v.last_alert
            table.add_row(str(v.visit), v.physical_filter, nv, _cell(v.raws, v.detectors, close),
                          _cell(v.planned, v.detectors, close), proc,
                          str(expected) if v.dia else "·",
                          alerts, f"{last - close:.1f}s" if (v.done and last and close) else "·")
    return table


# -- the summary --------------------------------------------------------------------------------------------------
@dataclass
class NightSummary:
    """How the night went."""

    visits: int
    visits_complete: int
    detectors_processed: int
    detectors_failed: int
    dia_sources: int
    alerts: int
    duplicate_alerts: int
    missing_alerts: int
    shutter_to_last_alert_s: list[float]
    dia_round_trip_s: list[float]
    failures: list[str]
    services: list[str]
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    alert_topic: str = ""
    apdb_schema: str = ""
    workdir: str = ""

    @staticmethod
    def _stats(values: list[float]) -> str:
        if not values:
            return "n/a"
        s = sorted(values)
        p95 = s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)]
        return f"median {statistics.median(s):.1f} s, p95 {p95:.1f} s (n={len(s)})"

    def lines(self) -> list[str]:
        out = [
            f"visits    : {self.visits_complete}/{self.visits} complete; detectors processed "
            f"{self.detectors_processed}, failed {self.detectors_failed}",
            f"alerts    : {self.alerts} published for {self.dia_sources} DIA sources "
            f"({self.duplicate_alerts} duplicates, {self.missing_alerts} missing) on {self.alert_topic} "
            "(read_committed)",
            f"latency   : shutter close → last alert of a visit: {self._stats(self.shutter_to_last_alert_s)}",
            f"            DIA round trip (raw arrival → dia.results: ingest, AP pipeline, APDB): "
            f"{self._stats(self.dia_round_trip_s)}",
        ]
        out += [f"failure   : {f}" for f in self.failures[:10]]
        return out


def summarize(monitor: NightMonitor, clocks: Sequence[VisitClock], services: list[str]) -> NightSummary:
    by_visit = {c.visit: c for c in clocks}
    latency, round_trip, failures = [], [], []
    with monitor.lock:
        for v in monitor.visits.values():
            c = by_visit.get(v.visit)
            if v.done and v.last_alert is not None and c is not None:
                latency.append(v.last_alert - c.shutter_close)
            for d, (t, _) in v.dia.items():
                if d in v.raws:
                    round_trip.append(t - v.raws[d])
            failures += [f"visit {v.visit} detector {d}: {why}" for d, why in sorted(v.failed.items())]
        dia = sum(v.expected_alerts for v in monitor.visits.values())
        alerted = sum(len([i for _, ids in v.dia.values() for i in ids if i in v.alerts])
                      for v in monitor.visits.values())
        return NightSummary(
            visits=len(monitor.visits), visits_complete=sum(v.done for v in monitor.visits.values()),
            detectors_processed=sum(len(v.completed) for v in monitor.visits.values()),
            detectors_failed=sum(len(v.failed) for v in monitor.visits.values()),
            dia_sources=dia, alerts=sum(len(v.alerts) for v in monitor.visits.values()),
            duplicate_alerts=sum(v.duplicate_alerts for v in monitor.visits.values()),
            missing_alerts=dia - alerted, shutter_to_last_alert_s=latency, dia_round_trip_s=round_trip,
            failures=failures + [f"undecodable event: {e}" for e in monitor.errors[:5]], services=services,
            alert_topic=monitor.night.alert_topic, apdb_schema=monitor.night.apdb_schema,
            workdir=str(monitor.night.workdir))


# -- the whole night ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _live(enabled: bool, render: Callable[[], Any]) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    with Live(render(), console=console, refresh_per_second=2, transient=False) as live:
        yield lambda: live.update(render())
    console.print()


@dataclass
class NightContext:
    """A running night, as :class:`NightHooks` see it: its repository, services, monitor and clocks."""

    spec: NightSpec
    night: NightRepo
    env: dict[str, str]
    kafka: KafkaSettings
    services: LocalServices
    monitor: NightMonitor
    clocks: list[VisitClock]
    started: float  # Unix seconds of the first visit's schedule
    echo: Echo


class NightHooks:
    """Points where a caller of :func:`run_night` joins the night (the load test's faults and checks).

    Every method does nothing here; subclasses override what they need. They run in
    :func:`run_night`'s loop thread, so a slow hook delays the night's own bookkeeping
    (e.g. restarting a dead service) by as long as it takes.
    """

    def started(self, ctx: NightContext) -> None:
        """The services serve and the monitor follows the topics; no visit has been sent yet."""

    def tick(self, ctx: NightContext) -> None:
        """Called about twice a second while the night runs, before dead services are restarted."""

    def settled(self, ctx: NightContext) -> bool:
        """Whether the night may end once every visit has its alerts (e.g. outputs registered); True here."""
        return True


def run_night(spec: NightSpec, *, echo: Echo = print, live: bool = True, workdir: str | os.PathLike[str] | None = None,
              start_stack: bool = True, keep: Callable[[NightRepo], None] | None = None,
              hooks: NightHooks | None = None, env: dict[str, str] | None = None) -> NightSummary:
    """Run a night of Alert Production end to end on the local stack (see the module docstring).

    Parameters
    ----------
    spec : NightSpec
        Visits, detectors, cadence, sizes.
    echo : callable
        Where the setup lines and the summary go.
    live : bool
        Show the live per-visit table (rich); without it, one line per finished visit.
    workdir : path, optional
        Where the repository configuration, drop directory and service logs go (a new temporary
        directory by default; kept, so the logs can be read afterwards).
    start_stack : bool
        Start the local stack (``nightshift dev up``) if it is not running.
    keep : callable, optional
        Called with the :class:`NightRepo` once it is made (tests use it to query the APDB afterwards).
    hooks : NightHooks, optional
        Joins the night at its start, on every tick and before it ends (the load test's faults).
    env : dict, optional
        The stack's addresses (``nightshift dev env``'s names); by default those of the stack this
        checkout's settings describe (started first with ``start_stack``).
    """
    from nightshift.events import ensure_topics

    from .devstack import stack_env, up

    if env is None:
        env = up() if start_stack else stack_env()
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    kafka = kafka_settings(env["KAFKA_BOOTSTRAP"])
    wd = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="nightshift-night-"))
    services_found = available_services()
    echo(f"nightshift night: {spec.visits} visits x {spec.detectors} detectors of {spec.detector_size}x"
         f"{spec.detector_size} px, a visit every {spec.cadence_s:g} s ({spec.exposure_time_s:g} s exposures), "
         f"{spec.runners} runners")
    echo("            sized for a 2-core machine: LSSTCam has 189 detectors of 4096x4096 px; "
         "raise --detectors/--detector-size on a bigger one")
    missing = [n for n in ("registry", "datastore-writer", "alert-publisher", "runner", "planner", "ingest")
               if n not in services_found]
    if missing:
        echo(f"            [not installed yet: {', '.join(missing)} — the night cannot reach its alerts without them]")
    night = prepare_night(spec, env, wd, echo)
    if keep is not None:
        keep(night)
    topics = [night.topic(s) for s in EVENT_SUBJECTS]
    ensure_topics(kafka, topics + [t + ".dlq" for t in topics], partitions=spec.partitions)
    ensure_topics(kafka, [night.alert_topic], partitions=spec.partitions)
    services = LocalServices(service_environment(night, env, kafka), wd / "logs")
    monitor = NightMonitor(night, spec, kafka)
    trigger = VisitTrigger(night, spec, kafka)
    stop = threading.Event()
    codes: dict[str, int | None] = {}
    try:
        started = start_services(night, services, spec, echo)
        monitor.start()
        t_start = time.time()
        clocks = trigger.schedule(t_start + 2.0)
        for c in clocks:
            monitor.visits[c.visit].clock = c
        hooks = hooks or NightHooks()
        ctx = NightContext(spec, night, env, kafka, services, monitor, clocks, t_start, echo)
        hooks.started(ctx)
        sender = threading.Thread(target=trigger.run, args=(stop,), name="night-trigger", daemon=True)
        sender.start()
        deadline = clocks[-1].readout + spec.timeout_s
        reported: set[int] = set()
        restarts: dict[str, int] = {}
        with _live(live, lambda: render_table(monitor, clocks, t_start)) as refresh:
            while time.time() < deadline:
                refresh()
                if not live:
                    for v in monitor.visits.values():
                        if v.visit not in reported and v.done:
                            reported.add(v.visit)
                            last = (f", the last {v.last_alert - v.clock.shutter_close:.1f} s after shutter close"
                                    if v.last_alert is not None and v.clock is not None else "")
                            echo(f"visit {v.visit}: {len(v.alerts)} alerts{last}; {len(v.failed)} detectors failed")
                if not sender.is_alive() and monitor.all_done() and hooks.settled(ctx):
                    break
                hooks.tick(ctx)
                for sp in services.dead():  # restart it, as compose's restart policy or Kubernetes would
                    restarts[sp.label] = restarts.get(sp.label, 0) + 1
                    if restarts[sp.label] > _MAX_RESTARTS:
                        raise NightError(f"service {sp.label} exited (code {sp.proc.returncode}) "
                                         f"{restarts[sp.label]} times; see {sp.log}")
                    echo(f"service   : {sp.label} exited (code {sp.proc.returncode}); restarting it "
                         f"(see {sp.log})")
                    services.restart(sp)
                time.sleep(0.5)
            refresh()
        summary = summarize(monitor, clocks, started)
    finally:
        stop.set()
        monitor.close()
        codes = services.stop()
    summary.exit_codes = codes
    for line in summary.lines():
        echo(line)
    if summary.visits_complete < summary.visits:
        echo(f"incomplete: {summary.visits - summary.visits_complete} visits did not reach all their alerts within "
             f"{spec.timeout_s:g} s of the last raws; see the service logs")
    unclean = {k: v for k, v in codes.items() if v not in (0, None)}
    echo(f"services  : stopped with SIGTERM ({len(codes)} processes"
         f"{', exit codes ' + str(unclean) if unclean else ', all drained cleanly'}); logs in {wd / 'logs'}")
    echo(f"            read the alerts: nightshift alerts tail --topic {night.alert_topic} --from-beginning")
    return summary
