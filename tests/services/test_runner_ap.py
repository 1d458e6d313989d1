"""The runner service's prompt-processing quanta against the real Kafka, PostgreSQL APDB and S3 server.

One simulated visit (``LSSTCam-sim`` at 512x512 pixels per detector, 1.6"/pixel; g band,
25 s and 4.5" seeing, so that the sky stays below saturation in these big pixels and enough
stars are bright and resolved for the PSF fit) with master calibrations,
one deep template patch and a sharded reference catalog in a butler repository.
The runner runs as a subprocess (``python -m nightshift_services.runner``).
Plans (``quantum.planned`` v3) are built here as the planner would; raws are
ingested into the repository and announced (``raw.ingested``) when each case
needs them, as the ingest service would.

- ``test_a_visit``: plan before raw, raw before plan (that plan made by the real
  planner from the visit's ``nextVisit``), duplicated plan and raw,
  a missing template and a raw that never comes -- in one visit: three
  detectors end in ``dia.results`` + five ``dataset.write`` + ``quantum.completed``
  with every DiaSource in the APDB once, the other two in a ``quantum.failed``
  naming the template and the raw.
- ``test_runner_killed_mid_quantum``: the runner exits after the APDB store, or
  after its ``dia.results`` was acknowledged and before ``quantum.completed``; the
  restarted runner replays the quantum: ``dia.results`` with the same ids (again),
  nothing stored twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.time import Time
from astropy.wcs import WCS
from confluent_kafka import Consumer, Producer, TopicPartition

from nightshift.alerts import AlertEncoder, read_alert_inputs
from nightshift.ap import PlannerConfig, VisitPlanner
from nightshift.apdb import ApdbSettings, AsyncApdb, split_source_ids
from nightshift.butler import Butler, DatasetRef
from nightshift.butler.external import ingest_reference_catalog
from nightshift.events import (
    DatasetWrite,
    DiaResults,
    Event,
    NextVisit,
    QuantumCompleted,
    QuantumFailed,
    QuantumPlanned,
    RawIngested,
    decode,
    encode,
    ensure_topics,
)
from nightshift.obs import ingest_raws, lsstcam_like
from nightshift.obs.sim import (
    Observation,
    certify_master_calibs,
    make_templates,
    next_visit_payload,
    render_detector,
    sky_catalog,
    write_raw,
)
from nightshift.obs.sim._catalog import BAND_OFFSETS
from nightshift.sky import HealpixSkyMap, point_pixel

# five AP detectors: slow on a busy machine
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

GUARD = 900.0  # seconds: only stops a hung test; every wait is on a condition
SIZE = 512
INSTRUMENT = "LSSTCam-sim"
PATCH_ORDER = 6  # template patches of ~0.9 deg: one covers the centre raft
RAW_DETECTORS = (91, 93, 94, 95, 97)  # R22: S01, S10, S11 (centre), S12, S21: inside the template patch
CALIB_DETECTORS = (*RAW_DETECTORS, 96, 100)  # 96: no template; 100: its raw never comes
RAW_TIMEOUT_S = 30.0
SKYMAP = "sim_hpx6"


@dataclass
class Visit:
    """The repository of one simulated visit: raws rendered (not ingested), calibs, template, refcat."""

    repo: Path
    raw_dir: Path
    obs: Observation
    bias: dict[int, uuid.UUID]
    flat: dict[int, uuid.UUID]
    template: uuid.UUID
    refcat: list[uuid.UUID]
    raws: dict[int, Path] = field(default_factory=dict)


@pytest.fixture(scope="module")
def visit(tmp_path_factory: pytest.TempPathFactory) -> Visit:
    root = tmp_path_factory.mktemp("ap-visit")
    pix = point_pixel(150.0, 2.0, PATCH_ORDER)
    tract_id, patch_id = pix >> 6, pix & 63
    skymap = HealpixSkyMap(SKYMAP, tract_order=3, patch_levels=3, tracts=(tract_id,))
    patch = skymap.tract(tract_id).patches[patch_id]
    ra0, dec0 = np.mean(np.array(patch.vertices), axis=0)  # boresight near the patch centre
    obs = Observation(INSTRUMENT, 20261206, 7, "2026-12-07T03:00:00", ra=float(ra0), dec=float(dec0),
                      sky_angle=15.0, seeing=4.5, exposure_time=25.0, physical_filter="g_6")
    cam = lsstcam_like(SIZE)
    v = Visit(root / "repo", root / "raws", obs, {}, {}, uuid.UUID(int=0), [])
    for det in RAW_DETECTORS:
        v.raws[det] = write_raw(v.raw_dir / str(det), obs, cam, det, render_detector(obs, cam, det, seed=5).adu)
    with Butler.create(v.repo) as butler:
        for ref in certify_master_calibs(butler, INSTRUMENT, CALIB_DETECTORS, ["g_6"], begin="2026-11-01",
                                         end="2027-01-01", detector_size=SIZE, seed=5):
            getattr(v, ref.dataset_type.name)[int(ref.data_id["detector"])] = ref.id
        (tmpl,) = make_templates(butler, skymap, [(tract_id, patch_id)], ["g"], seed=5, pixel_scale=1.6, seeing=2.5)
        v.template = tmpl.id
        cat = sky_catalog(5, float(ra0), float(dec0), 0.8)
        stars = cat.kind == "star"
        g_mag = cat.mag_r + BAND_OFFSETS["g"] * cat.colour
        shards = root / "refcat"
        shards.mkdir()
        pixels = np.array([point_pixel(float(r), float(d), 5)
                           for r, d in zip(cat.ra[stars], cat.dec[stars], strict=True)])
        for p in np.unique(pixels):
            sel = pixels == p
            pq.write_table(pa.table({"ra": cat.ra[stars][sel], "dec": cat.dec[stars][sel],
                                     "g_mag": g_mag[stars][sel]}), shards / f"{p}.parquet")
        v.refcat = [r.id for r in ingest_reference_catalog(butler, "sim_refcat", shards, order=5, run="refcats/sim")]
    return v


def _footprint(obs: Observation, det: int) -> list[float]:
    wcs = WCS(lsstcam_like(SIZE).wcs_header(det, obs.ra, obs.dec, obs.sky_angle))
    ra, dec = wcs.all_pix2world([-0.5, SIZE - 0.5, SIZE - 0.5, -0.5], [-0.5, -0.5, SIZE - 0.5, SIZE - 0.5], 0)
    return [float(x) for pair in zip(ra, dec, strict=True) for x in pair]


def plan(v: Visit, det: int, *, template: bool = True) -> QuantumPlanned:
    """The quantum the planner would emit for one detector (``template=False``: none was found)."""
    obs = v.obs
    data_id = {"instrument": INSTRUMENT, "visit": str(obs.exposure_id), "detector": str(det),
               "physical_filter": obs.physical_filter, "band": "g", "day_obs": str(obs.day_obs)}
    inputs = [v.bias[det], v.flat[det], *([v.template] if template else []), *v.refcat]
    if not template:
        data_id["missing_inputs"] = "template_coadd"
    qid = uuid.uuid5(uuid.NAMESPACE_URL, f"{INSTRUMENT};{obs.exposure_id};{det};ap")
    return QuantumPlanned(
        quantum_id=qid, task_label="ap", instrument=INSTRUMENT, visit=obs.exposure_id, detector=det, data_id=data_id,
        inputs=inputs, outputs=[], config_hash="0" * 16, code_version="test", butler_repo=str(v.repo),
        run=f"{INSTRUMENT}/prompt/{obs.day_obs}",
        collections=[f"{INSTRUMENT}/calib", "templates/sim", "refcats/sim", f"{INSTRUMENT}/raw/all"],
        footprint_deg=_footprint(obs, det), visit_start_mjd_tai=float(Time(obs.begin, scale="tai").mjd))


def planned_by_the_planner(v: Visit, det: int) -> QuantumPlanned:
    """The quantum the real planner (``nightshift.ap.VisitPlanner``) makes of the visit's ``nextVisit``."""
    payload = next_visit_payload(v.obs, [det])
    payload["issued_at"] = datetime.fromtimestamp(payload["issued_at"] / 1e6, UTC)
    config = PlannerConfig(skymap=SKYMAP, template_collections=("templates/sim",), refcat="sim_refcat",
                           refcat_collections=("refcats/sim",))
    with Butler(v.repo) as butler:
        (event,) = VisitPlanner(butler.registry, config, butler_repo=str(v.repo)).plan(NextVisit(**payload)).events()
    assert not event.data_id.get("missing_inputs"), event.data_id
    return event


def ingest(v: Visit, det: int) -> RawIngested:
    """Ingest a detector's raw (as the ingest service does) and return its raw.ingested event."""
    with Butler(v.repo) as butler:
        report = ingest_raws(butler, [v.raws[det]], processes=1)
        assert report.ok, report.skipped
        ref: DatasetRef = butler.find("raw", {"instrument": INSTRUMENT, "exposure": v.obs.exposure_id,
                                              "detector": det}, collections=f"{INSTRUMENT}/raw/all")
    return RawIngested(instrument=INSTRUMENT, visit=v.obs.exposure_id, detector=det, dataset_id=ref.id,
                       run=f"{INSTRUMENT}/raw/all", uri=str(v.raws[det]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """Topics, bucket and APDB schema of one test, and a producer of plans and raws."""

    def __init__(self, kafka: str, pg_dsn: str, s3: str, name: str) -> None:
        self.kafka, self.pg_dsn, self.s3, self.name = kafka, pg_dsn, s3, name
        self.prefix = f"{name}."
        self.bucket = f"ap-{name}"
        self.schema = f"apdb_{name}"
        boto3.session.Session().client("s3", endpoint_url=s3).create_bucket(Bucket=self.bucket)
        ensure_topics(kafka, [self.prefix + t for t in ("quantum.planned", "raw.ingested", "dia.results",
                                                        "dataset.write", "quantum.completed", "quantum.failed")])
        asyncio.run(self._apdb("create"))
        self.producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})

    async def _apdb(self, what: str) -> Any:
        db = AsyncApdb(ApdbSettings(dsn=self.pg_dsn, schema_name=self.schema, pool_min_size=0, pool_max_size=2))
        async with db:
            if what == "create":
                await db.create()
                return None
            if what == "drop":
                await db.drop()
                return None
            rows = await db.pool.fetch(f'SELECT "diaSourceId", count(*) AS n FROM "{self.schema}"."DiaSource" '
                                       'GROUP BY 1')
            return {int(r[0]): int(r[1]) for r in rows}

    def stored_sources(self) -> dict[int, int]:
        """diaSourceId -> number of rows in the APDB."""
        result: dict[int, int] = asyncio.run(self._apdb("count"))
        return result

    def send(self, event: Event, subject: str) -> None:
        key = f"{INSTRUMENT}/{getattr(event, 'detector', '')}".encode()
        self.producer.produce(self.prefix + subject, encode(event), key=key)
        assert self.producer.flush(60) == 0

    def close(self) -> None:
        asyncio.run(self._apdb("drop"))


@pytest.fixture
def stack(kafka_bootstrap: str, pg_dsn: str, s3_endpoint: str, unique_name: str) -> Any:
    s = Stack(kafka_bootstrap, pg_dsn, s3_endpoint, unique_name)
    yield s
    s.close()


class Runner:
    """One runner service subprocess."""

    def __init__(self, stack: Stack, v: Visit, tmp: Path, **extra: str) -> None:
        self.port = _free_port()
        env = {
            **os.environ, "NIGHTSHIFT_KAFKA_BOOTSTRAP": stack.kafka, "NIGHTSHIFT_TOPIC_PREFIX": stack.prefix,
            "NIGHTSHIFT_CONSUMER_GROUP": f"runner-{stack.name}", "NIGHTSHIFT_HTTP_PORT": str(self.port),
            "NIGHTSHIFT_APDB_DSN": stack.pg_dsn, "NIGHTSHIFT_APDB_SCHEMA_NAME": stack.schema,
            "NIGHTSHIFT_STAGING_URI": f"s3://{stack.bucket}/staging",
            "NIGHTSHIFT_ALERT_INPUTS_URI": f"s3://{stack.bucket}/alert-inputs",
            "NIGHTSHIFT_S3_ENDPOINT_URL": stack.s3, "NIGHTSHIFT_RAW_TIMEOUT_S": str(RAW_TIMEOUT_S),
            "NIGHTSHIFT_ASTROMETRY_MAX_RMS_ARCSEC": "1.5", "NIGHTSHIFT_SESSION_TIMEOUT_MS": "6000",
            "NIGHTSHIFT_LOG_FORMAT": "text", "OMP_NUM_THREADS": "1", **extra,
        }
        if "NIGHTSHIFT_CRASH_AT" not in extra:
            env.pop("NIGHTSHIFT_CRASH_AT", None)
        self.log = tmp / f"runner-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "nightshift_services.runner"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + GUARD
        while "READY" not in self.log.read_text(errors="replace"):
            assert self.proc.poll() is None, f"the runner exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"the runner never became ready:\n{self.output()}"
            time.sleep(0.1)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(GUARD)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(GUARD)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


class Outputs:
    """Everything the runner emitted, read from the beginning of each output topic."""

    SUBJECTS = ("dia.results", "dataset.write", "quantum.completed", "quantum.failed")

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.consumer = Consumer({"bootstrap.servers": stack.kafka, "group.id": f"reader-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        topics = [stack.prefix + s for s in self.SUBJECTS]
        meta = self.consumer.list_topics(timeout=30)
        self.consumer.assign([TopicPartition(t, p, 0) for t in topics for p in meta.topics[t].partitions])
        self.events: dict[str, list[Any]] = defaultdict(list)

    def until(self, done: Any, runner: Runner | None) -> None:
        """Read until ``done(self)``; ``runner``: the process that must stay alive meanwhile (None: any)."""
        deadline = time.monotonic() + GUARD
        while not done(self):
            log = runner.output() if runner is not None else ""
            assert runner is None or runner.proc.poll() is None, f"the runner exited:\n{log}"
            assert time.monotonic() < deadline, f"runner outputs incomplete: {self.summary()}\n{log}"
            for msg in self.consumer.consume(100, 0.5):
                if msg.error() is None:
                    subject = (msg.topic() or "")[len(self.stack.prefix):]
                    self.events[subject].append(decode(msg.value() or b"", expected_subject=subject))

    def by_detector(self, subject: str) -> dict[int, list[Any]]:
        out: dict[int, list[Any]] = defaultdict(list)
        for e in self.events[subject]:
            if subject == "dataset.write":
                out[int(e.data_id["detector"])].append(e)
            else:
                out[int(e.detector)].append(e)
        return out

    def summary(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.events.items()}

    def close(self) -> None:
        self.consumer.close()


def _check_completed(stack: Stack, out: Outputs, dets: tuple[int, ...]) -> set[int]:
    """Each detector's results are whole and consistent; returns every DiaSource id."""
    s3 = boto3.session.Session().client("s3", endpoint_url=stack.s3)
    results, writes = out.by_detector("dia.results"), out.by_detector("dataset.write")
    completed = out.by_detector("quantum.completed")
    ids: set[int] = set()
    for det in dets:
        assert completed[det], f"no quantum.completed for detector {det}"
        first: DiaResults = results[det][0]
        for again in results[det][1:]:  # a replay re-sends the very same results
            assert again.dia_source_ids == first.dia_source_ids and again.event_id == first.event_id
        assert first.n_dia_sources > 0 and first.visit_time_mjd_tai > 61000
        v, d, _ = split_source_ids(first.dia_source_ids)
        assert set(v.tolist()) == {first.visit} and set(d.tolist()) == {det}
        ids |= set(first.dia_source_ids)
        inputs = read_alert_inputs(first.alert_inputs_uri or "", s3=s3)
        assert inputs.sources.column("diaSourceId").to_pylist() == first.dia_source_ids
        batch = inputs.build(AlertEncoder())  # what the alert publisher does with the bundle
        assert len(batch) == first.n_dia_sources and not batch.bad
        kinds = {w.dataset_type: w for w in writes[det]}
        assert set(kinds) == {"calexp", "difference", "dia_source", "dia_object", "dia_forced_source"}
        for w in kinds.values():
            w_: DatasetWrite = w
            bucket, key = w_.staging_uri.removeprefix("s3://").split("/", 1)
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == w_.checksum
    return ids


def test_a_visit(visit: Visit, stack: Stack, tmp_path: Path) -> None:
    out = Outputs(stack)
    runner = Runner(stack, visit, tmp_path)
    try:
        # 94: the raw comes first and is kept until its plan arrives
        stack.send(ingest(visit, 94), "raw.ingested")
        # 93: the plan comes first and waits for its raw
        stack.send(plan(visit, 93), "quantum.planned")
        deadline = time.monotonic() + GUARD
        # the plan waits for its raw, and its APDB preload is done meanwhile (REQ-0030)
        while (runner.metric("nightshift_ap_quanta_waiting_for_raw") < 1
               or runner.metric("nightshift_ap_preload_seconds_count") < 1):
            assert time.monotonic() < deadline and runner.proc.poll() is None, runner.output()
            time.sleep(0.2)  # poll interval of a condition wait
        stack.send(ingest(visit, 93), "raw.ingested")
        stack.send(planned_by_the_planner(visit, 94), "quantum.planned")  # the planner's own event
        # 95: plan and raw both twice; 96: no template; 100: its raw never comes
        stack.send(plan(visit, 95), "quantum.planned")
        raw95 = ingest(visit, 95)
        stack.send(raw95, "raw.ingested")
        stack.send(plan(visit, 95), "quantum.planned")
        stack.send(raw95, "raw.ingested")
        stack.send(plan(visit, 96, template=False), "quantum.planned")
        stack.send(plan(visit, 100), "quantum.planned")
        out.until(lambda o: {93, 94, 95} <= set(o.by_detector("quantum.completed"))
                  and {96, 100} <= set(o.by_detector("quantum.failed")), runner)
        ids = _check_completed(stack, out, (93, 94, 95))
        failed = {det: events[0] for det, events in out.by_detector("quantum.failed").items()}
        assert set(failed) == {96, 100}
        no_template: QuantumFailed = failed[96]
        assert no_template.error_type == "ap_missing_input" and "template_coadd" in no_template.message
        late: QuantumFailed = failed[100]
        assert late.error_type == "raw_timeout"
        assert late.message == (f"raw for visit {visit.obs.exposure_id} detector 100 did not arrive within "
                                f"{RAW_TIMEOUT_S:g} s")
        stored = stack.stored_sources()
        assert set(stored) == ids and set(stored.values()) == {1}  # every DiaSource stored, once
        assert runner.metric("nightshift_ap_raws_before_plan_total") >= 1
    finally:
        runner.stop()
        out.close()


@pytest.mark.parametrize(("crash_at", "det"), [("after_results", 91), ("after_store", 97)])
def test_runner_killed_mid_quantum(visit: Visit, stack: Stack, tmp_path: Path, crash_at: str, det: int) -> None:
    """Killed after the APDB store (nothing sent yet) or after dia.results (before quantum.completed):
    the restarted runner replays the quantum from its manifest -- dia.results with the very same ids."""
    out = Outputs(stack)
    crashing = Runner(stack, visit, tmp_path, NIGHTSHIFT_CRASH_AT=crash_at)
    stack.send(plan(visit, det), "quantum.planned")
    stack.send(ingest(visit, det), "raw.ingested")
    assert crashing.proc.wait(GUARD) == 137, crashing.output()
    sent_before = 1 if crash_at == "after_results" else 0
    out.until(lambda o: len(o.by_detector("dia.results").get(det, [])) >= sent_before, None)
    assert not out.by_detector("quantum.completed").get(det)
    before = stack.stored_sources()
    assert before and set(before.values()) == {1}
    runner = Runner(stack, visit, tmp_path)  # the plan was not committed: it is redelivered
    try:
        out.until(lambda o: o.by_detector("quantum.completed").get(det), runner)
        completed: QuantumCompleted = out.by_detector("quantum.completed")[det][0]
        assert completed.memoized  # replayed from the manifest, not recomputed
        results = out.by_detector("dia.results")[det]
        assert len(results) == sent_before + 1
        assert all(r.dia_source_ids == results[0].dia_source_ids for r in results)
        assert stack.stored_sources() == before  # nothing stored twice
        assert set(before) == set(results[0].dia_source_ids)
        _check_completed(stack, out, (det,))
    finally:
        runner.stop()
        out.close()
