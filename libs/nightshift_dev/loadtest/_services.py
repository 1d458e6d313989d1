"""A night through all six Alert Production services (``nightshift loadtest night --mode services``), with faults.

It runs :func:`nightshift_dev.night.run_night` — the same setup, service processes and
observatory trigger as ``nightshift ap run-night`` — with :class:`ServicesNightHooks`
joined to it: they follow the quantum and dataset topics, inject the faults (``--chaos``)
at known points of a visit (after the visit's first ``dia.results``, not after a sleep),
and hold the night open until every planned quantum is resolved and every stored dataset
is registered. Then :func:`reconcile_services_night` checks, independently of the
services:

- every DIA source the APDB holds for the night's visits has exactly one alert on the
  alert topic, by ``diaSourceId`` (a fresh ``read_committed`` reader, the whole topic);
- every planned quantum is completed, or failed with a reason;
- no output file of the night's RUN lacks its registry row, and no row lacks its file.

Faults (the i-th of the list in the i-th visit): SIGKILL a random runner, SIGKILL the alert publisher
(the night restarts a dead service, as Kubernetes would), and only on a stack the run
owns (``own_stack``) a restart of the broker and of PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

from nightshift import NightshiftError
from nightshift_dev.night import NightContext, NightHooks, NightRepo, NightSpec, run_night

from ._catalogue import _count_alerts
from ._errors import LoadTestError
from ._resources import ResourceSampler
from ._results import Budget, LoadTestResult, Span

__all__ = ["SERVICE_FAULTS", "ServicesConfig", "ServicesNightHooks", "reconcile_services_night", "run_services_night"]

MODE = "services"
#: Faults of a services-mode chaos night, by name; ``broker`` and ``postgres`` need a stack the run owns.
SERVICE_FAULTS = ("runner", "publisher", "broker", "postgres")
_STACK_FAULTS = ("broker", "postgres")
_OWNER_MARK = ".nightshift-loadtest-owned"
#: Alerts within 60 s of shutter close (LSST's OTT1); the run's whole chain, pixels included.
LAST_ALERT_BUDGET = ("shutter close → last alert of a visit", 60.0, 60.0)


@dataclass(frozen=True)
class ServicesConfig:
    """A services-mode night: visits of rendered raws through every service process.

    Parameters
    ----------
    visits, detectors, detector_size, cadence_s, runners, partitions
        As :class:`nightshift_dev.night.NightSpec`.
    chaos : bool
        Inject ``faults``, one per visit in turn, starting with the first visit.
    faults : tuple of str
        Names from :data:`SERVICE_FAULTS`: the i-th is injected in the i-th visit (repeat names for more).
    own_stack : bool
        The run may restart the broker and PostgreSQL: it starts the stack of
        ``NIGHTSHIFT_STACK_DIR`` itself if it is not running, and refuses a running stack
        that a load test did not start (someone else's).
    guard_s : float
        Deadlock guard: how long after the last raws the night may take.
    keep : bool
        Keep the night's topics, schemas, objects and work directory.
    """

    visits: int = 2
    detectors: int = 2
    detector_size: int = 512
    cadence_s: float = 35.0
    runners: int = 2
    partitions: int = 2
    chaos: bool = False
    faults: tuple[str, ...] = ("runner", "publisher")
    own_stack: bool = False
    guard_s: float = 600.0
    keep: bool = False
    exposure_time_s: float = 30.0
    lead_s: float = 2.0
    readout_s: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [f for f in self.faults if f not in SERVICE_FAULTS]
        if unknown:
            raise LoadTestError(f"unknown fault(s) {unknown}; choose from {', '.join(SERVICE_FAULTS)}")
        if self.chaos and not self.faults:
            raise LoadTestError("--chaos needs at least one fault (--faults)")
        stack = [f for f in self.faults if f in _STACK_FAULTS]
        if self.chaos and stack and not self.own_stack:
            raise LoadTestError(
                f"fault(s) {', '.join(stack)} restart a server of the stack: refused without --own-stack (never "
                "restart a shared stack). Start a private one: NIGHTSHIFT_STACK_DIR=/tmp/<you>/stack plus "
                "NIGHTSHIFT_*_PORT of your own, then pass --own-stack")

    def spec(self) -> NightSpec:
        return NightSpec(visits=self.visits, detectors=self.detectors, cadence_s=self.cadence_s,
                         detector_size=self.detector_size, exposure_time_s=self.exposure_time_s, lead_s=self.lead_s,
                         readout_s=self.readout_s, runners=self.runners, partitions=self.partitions, seed=self.seed,
                         timeout_s=self.guard_s)


class _Tally:
    """Follows quantum.planned / completed / failed and dataset.write / stored (``read_committed``) in a thread."""

    def __init__(self, night: NightRepo, bootstrap_config: dict[str, Any]) -> None:
        self.night = night
        self.config = bootstrap_config
        self.lock = threading.Lock()
        self.planned: dict[str, tuple[int, int]] = {}  # quantum_id -> (visit, detector)
        self.planned_events = 0
        self.completed: Counter[str] = Counter()
        self.failed: dict[str, list[str]] = {}
        self.written: dict[str, str] = {}  # dataset_id -> run
        self.stored: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.assigned = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loadtest-tally", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self.assigned.wait(120):
            raise LoadTestError("the load test's event reader got no partitions in 120 s; is the broker up?")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        from nightshift.events import DecodeError, EventValidationError, decode

        subjects = ("quantum.planned", "quantum.completed", "quantum.failed", "dataset.write", "dataset.stored")
        consumer = Consumer({**self.config, "group.id": self.night.prefix + "loadtest-tally",
                             "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                             "enable.auto.commit": False})
        consumer.subscribe([self.night.topic(s) for s in subjects], on_assign=lambda c, p: self.assigned.set())
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is not None:
                        continue
                    try:
                        event = decode(msg.value() or b"")
                    except (DecodeError, EventValidationError) as exc:
                        self.errors.append(str(exc))
                        continue
                    with self.lock:
                        self._event(event)
        finally:
            consumer.close()

    def _event(self, event: Any) -> None:
        subject = event.SUBJECT
        if subject == "quantum.planned":
            self.planned_events += 1
            self.planned[str(event.quantum_id)] = (int(event.visit or 0), int(event.detector or 0))
        elif subject == "quantum.completed":
            self.completed[str(event.quantum_id)] += 1
        elif subject == "quantum.failed":
            self.failed.setdefault(str(event.quantum_id), []).append(
                f"{event.error_type}: {event.message}".strip())
        elif subject == "dataset.write":
            self.written[str(event.dataset_id)] = str(event.run)
        elif subject == "dataset.stored":
            self.stored[str(event.dataset_id)] += 1

    def unresolved(self) -> list[str]:
        with self.lock:
            return [q for q in self.planned if q not in self.completed and q not in self.failed]

    def unstored(self) -> list[str]:
        with self.lock:
            return [d for d in self.written if d not in self.stored]


@dataclass
class _Fault:
    name: str
    visit: int
    done: bool = False
    record: dict[str, Any] = field(default_factory=dict)


def _owns_stack() -> tuple[Any, dict[str, str]]:
    """Start (or reuse) the stack of ``NIGHTSHIFT_STACK_DIR`` as the run's own; its settings and addresses.

    Raises
    ------
    LoadTestError
        The stack runs but no load test started it (another user's stack), or it cannot start.
    """
    from nightshift_dev.devstack import StackSettings, status, up

    settings = StackSettings()
    mark = settings.state_dir / _OWNER_MARK
    running = [c.name for c in status(settings) if c.running]
    if running and not mark.exists():
        raise LoadTestError(
            f"--own-stack: the stack at {settings.state_dir} already runs ({', '.join(running)}) and no load test "
            "started it: restarting its broker or PostgreSQL would hit everyone using it. Point NIGHTSHIFT_STACK_DIR "
            "and NIGHTSHIFT_*_PORT at a private stack (it is started for you), or drop --own-stack")
    try:
        env = up(settings)
    except NightshiftError as exc:
        raise LoadTestError(f"--own-stack: could not start the stack at {settings.state_dir}: {exc}") from exc
    mark.write_text("started by nightshift loadtest night --own-stack; `nightshift dev down` stops it\n")
    return settings, env


class ServicesNightHooks(NightHooks):
    """The load test's part of a services-mode night: faults at known points, the event tally, resources.

    Parameters
    ----------
    cfg : ServicesConfig
        What to inject.
    stack_settings : StackSettings, optional
        The stack the run owns (needed for broker/PostgreSQL restarts).
    seed : int
        Seed of the random choice of the runner to kill.
    """

    def __init__(self, cfg: ServicesConfig, stack_settings: Any = None, seed: int = 0) -> None:
        self.cfg = cfg
        self.stack_settings = stack_settings
        self.rng = random.Random(seed)
        self.tally: _Tally | None = None
        self.faults: list[_Fault] = []
        self.sampler: ResourceSampler | None = None
        self.t0 = time.monotonic()
        self._pids: dict[str, int] = {}
        self._registry_checked = 0.0
        self._registered = False
        self.ctx: NightContext | None = None

    def started(self, ctx: NightContext) -> None:
        self.ctx = ctx
        self.tally = _Tally(ctx.night, ctx.kafka.librdkafka_config())
        self.tally.start()
        if self.cfg.chaos:
            self.faults = [_Fault(name, c.visit) for name, c in zip(self.cfg.faults, ctx.clocks, strict=False)]
        self.t0 = time.monotonic()
        self.sampler = ResourceSampler(self.t0, interval=1.0).__enter__()
        self._watch(ctx)

    def _watch(self, ctx: NightContext) -> None:
        if self.sampler is None:
            return
        for sp in ctx.services.procs:
            if self._pids.get(sp.label) != sp.proc.pid and sp.alive:
                self._pids[sp.label] = sp.proc.pid
                self.sampler.watch(sp.label, sp.proc.pid)

    def tick(self, ctx: NightContext) -> None:
        self._watch(ctx)
        for fault in self.faults:
            if fault.done:
                continue
            state = ctx.monitor.visits[fault.visit]
            with ctx.monitor.lock:
                first_dia = bool(state.dia)
            if first_dia:  # a known point: the visit's first dia.results is on the topic, others may be in flight
                fault.done = True
                fault.record = self._inject(ctx, fault)
                ctx.echo(f"chaos     : {fault.record['fault']} ({fault.record.get('process', '')}) in visit "
                         f"{fault.visit}, after its first dia.results")

    def _inject(self, ctx: NightContext, fault: _Fault) -> dict[str, Any]:
        at = round(time.time() - ctx.started, 3)
        with ctx.monitor.lock:
            state = ctx.monitor.visits[fault.visit]
            dia_before = len(state.dia)
            completed_before = len(state.completed)
        record: dict[str, Any] = {"visit": fault.visit, "at_s": at, "after": "the visit's first dia.results",
                                  "dia_results_before": dia_before, "completed_before": completed_before,
                                  "detectors": len(ctx.night.detectors)}
        if fault.name in ("runner", "publisher"):
            name = "runner" if fault.name == "runner" else "alert-publisher"
            alive = [p for p in ctx.services.by_name(name) if p.alive]
            what = f"SIGKILL {'a runner' if name == 'runner' else 'the alert publisher'}"
            if not alive:
                return {**record, "fault": what, "process": "(none alive)"}
            victim = self.rng.choice(alive)
            ctx.services.kill(victim)  # the night's loop restarts it on this tick
            return {**record, "fault": what, "process": victim.label, "pid": victim.proc.pid}
        from nightshift_dev.devstack import down, up

        component = "kafka" if fault.name == "broker" else "postgres"
        t = time.monotonic()
        down(self.stack_settings, [component])
        up(self.stack_settings, [component])
        return {**record, "fault": f"restart {'the broker' if component == 'kafka' else 'PostgreSQL'}",
                "process": component, "restart_s": round(time.monotonic() - t, 2)}

    def settled(self, ctx: NightContext) -> bool:
        """Every visit has its alerts (checked by the night); also every quantum resolved, every output registered."""
        if self.tally is None or self.tally.unresolved() or self.tally.unstored():
            return False
        now = time.monotonic()
        if not self._registered and now - self._registry_checked > 2.0:
            self._registry_checked = now
            with contextlib.suppress(NightshiftError):
                rows = _registry_rows(ctx.night, self._runs())
                with self.tally.lock:
                    stored = set(self.tally.stored)
                self._registered = stored <= rows
        return self._registered

    def _runs(self) -> set[str]:
        if self.tally is None:
            return set()
        with self.tally.lock:
            return set(self.tally.written.values())

    def close(self) -> None:
        if self.tally is not None:
            self.tally.close()
        if self.sampler is not None:
            self.sampler.__exit__(None, None, None)


def _registry_rows(night: NightRepo, runs: set[str]) -> set[str]:
    """Ids of the registry's datasets of the AP output types in the RUN collections ``runs``."""
    from nightshift.ap import AP_OUTPUT_DATASET_TYPES
    from nightshift.butler import Butler

    rows: set[str] = set()
    with Butler(night.repo) as butler:
        for run in sorted(runs):
            for dataset_type in AP_OUTPUT_DATASET_TYPES:
                try:
                    refs = butler.registry.query_datasets(dataset_type, run, find_first=False)
                except NightshiftError:  # the RUN or type is not registered yet
                    continue
                rows.update(str(r.id) for r in refs)
    return rows


def _datastore_files(night: NightRepo, runs: set[str]) -> tuple[dict[str, bool], list[str]]:
    """dataset_id -> whether its file exists (records of ``runs``); the files of ``runs`` no record names."""
    from nightshift.butler import Butler

    records: dict[str, bool] = {}
    named: set[str] = set()
    listed: set[str] = set()
    with Butler(night.repo) as butler:
        store = butler.datastore
        backend = getattr(store, "backend", None)
        if backend is None or not hasattr(store, "records"):
            raise LoadTestError(f"datastore {type(store).__name__} of {night.repo} cannot list its records")
        for rec in store.records():
            if rec.dataset_ref().run in runs:
                records[str(rec.id)] = bool(backend.exists(rec.path))
                named.update(p for p in (rec.path, rec.sidecar) if p)
        for run in sorted(runs):
            listed.update(backend.list(run))
    return records, sorted(listed - named)


def reconcile_services_night(night: NightRepo, tally: _Tally, kafka_bootstrap: str, pg_dsn: str,
                             guard_s: float = 120.0) -> dict[str, Any]:
    """The three reconciliations of issue 16 for a finished services-mode night (see the module docstring)."""
    visits = [o.exposure_id for o in night.observations]
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(f'SELECT "diaSourceId" FROM "{night.apdb_schema}"."DiaSource" WHERE "visit" = ANY(%s)',
                            (visits,)).fetchall()
    stored = Counter(int(r[0]) for r in rows)
    counts = _count_alerts(kafka_bootstrap, night.alert_topic, guard_s) or Counter()
    apdb_ids = set(stored)
    alerts = {"apdb_dia_sources": len(apdb_ids), "apdb_rows_stored_twice": sum(1 for n in stored.values() if n > 1),
              "alerts_on_topic": sum(counts.values()), "distinct_alerts": len(counts),
              "lost": len(apdb_ids - set(counts)), "duplicated": sum(1 for n in counts.values() if n > 1),
              "duplicate_ids": sorted(i for i, n in counts.items() if n > 1)[:20],
              "alerts_without_apdb_row": len(set(counts) - apdb_ids),
              "counted_by": "a fresh read_committed reader, the whole topic, by diaSourceId"}
    alerts["ok"] = bool(apdb_ids) and not (alerts["lost"] or alerts["duplicated"] or alerts["alerts_without_apdb_row"]
                                           or alerts["apdb_rows_stored_twice"])
    with tally.lock:
        planned = dict(tally.planned)
        completed = Counter(tally.completed)
        failed = {q: list(r) for q, r in tally.failed.items()}
        written = dict(tally.written)
        planned_events = tally.planned_events
    unresolved = sorted(q for q in planned if q not in completed and q not in failed)
    no_reason = sorted(q for q, reasons in failed.items() if not any(r.strip(": ") for r in reasons))
    quanta = {"planned": len(planned), "planned_events": planned_events,
              "completed": sum(1 for q in planned if q in completed),
              "failed": sum(1 for q in planned if q in failed and q not in completed),
              "completed_events": sum(completed.values()), "failed_events": sum(len(r) for r in failed.values()),
              "unresolved": unresolved, "failed_without_reason": no_reason,
              "failure_reasons": {f"{planned.get(q, (0, 0))[0]}/{planned.get(q, (0, 0))[1]}": r[-1]
                                  for q, r in failed.items()},
              "ok": bool(planned) and not unresolved and not no_reason}
    runs = set(written.values())
    registry_ids = _registry_rows(night, runs)
    records, orphans = _datastore_files(night, runs)
    files_ids = {d for d, exists in records.items() if exists}
    datasets = {"runs": sorted(runs), "written_events": len(written), "registry_rows": len(registry_ids),
                "files": len(files_ids),
                "rows_without_file": sorted(registry_ids - files_ids)[:20],
                "files_without_row": sorted(files_ids - registry_ids)[:20],
                "records_without_file": sorted(d for d, exists in records.items() if not exists)[:20],
                "files_without_record": orphans[:20],
                "written_not_registered": sorted(set(written) - registry_ids)[:20]}
    datasets["ok"] = bool(registry_ids) and not any(datasets[k] for k in (
        "rows_without_file", "files_without_row", "records_without_file", "files_without_record"))
    return {"alerts": alerts, "quanta": quanta, "datasets": datasets,
            "ok": bool(alerts["ok"] and quanta["ok"] and datasets["ok"])}


def _cleanup(night: NightRepo, env: dict[str, str], kafka_config: dict[str, Any]) -> list[str]:
    """Delete the night's topics, schemas, objects and schema-registry subjects; what could not be deleted."""
    problems: list[str] = []
    admin = AdminClient(kafka_config)
    try:
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(night.prefix)]
        if topics:
            for topic, f in admin.delete_topics(topics, operation_timeout=30).items():
                try:
                    f.result(30)
                except KafkaException as exc:
                    problems.append(f"topic {topic}: {exc}")
    except KafkaException as exc:
        problems.append(f"topics: {exc}")
    try:
        with psycopg.connect(env["PG_DSN"], autocommit=True) as conn:
            for schema in (night.registry_schema, night.apdb_schema):
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except psycopg.Error as exc:
        problems.append(f"schemas: {exc}")
    try:
        from nightshift.alerts import s3_client

        s3 = s3_client(env["S3_ENDPOINT"])
        bucket = "nightshift-night"
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{night.tag}/")
                for o in page.get("Contents", [])]
        # Files first, one by one (S3Proxy refuses DeleteObjects): its filesystem backend then drops the emptied
        # directories itself, while deleting a directory entry ("a/b/") that still has files blocks ~10 s each.
        for key in [k for k in keys if not k.endswith("/")]:
            s3.delete_object(Bucket=bucket, Key=key)
        left = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{night.tag}/")
                for o in page.get("Contents", [])}
        for key in sorted(left, key=lambda k: -k.count("/")):
            s3.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - best effort; reported in the result
        problems.append(f"objects: {exc}")
    url = env.get("SCHEMA_REGISTRY_URL", "").rstrip("/")
    if url:
        try:
            import json

            with urllib.request.urlopen(url + "/subjects", timeout=10) as r:
                subjects = [s for s in json.loads(r.read()) if str(s).startswith(night.prefix)]
            for s in subjects:
                for query in ("", "?permanent=true"):
                    req = urllib.request.Request(f"{url}/subjects/{urllib.parse.quote(s, safe='')}{query}",
                                                 method="DELETE")
                    with contextlib.suppress(OSError), urllib.request.urlopen(req, timeout=10):
                        pass
        except (OSError, ValueError) as exc:
            problems.append(f"subjects: {exc}")
    return problems


def run_services_night(cfg: ServicesConfig, command: str, out: Path) -> LoadTestResult:
    """Run a services-mode night (with ``cfg.chaos``: faults), reconcile it; the result (not yet written)."""
    from nightshift.events import kafka_settings
    from nightshift_dev.devstack import stack_env

    from ._stack import StackAddresses

    result = LoadTestResult(kind="night", command=command)
    result.budgets = [Budget(LAST_ALERT_BUDGET[0], LAST_ALERT_BUDGET[1], MODE, LAST_ALERT_BUDGET[2])]
    result.extra["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    stack_settings = None
    if cfg.own_stack:
        stack_settings, env = _owns_stack()
    else:
        addresses = StackAddresses.from_env()
        addresses.check()
        env = {**stack_env(), "KAFKA_BOOTSTRAP": addresses.kafka, "PG_DSN": addresses.pg_dsn,
               "S3_ENDPOINT": addresses.s3_endpoint, "SCHEMA_REGISTRY_URL": addresses.schema_registry}
    result.extra["own_stack"] = cfg.own_stack
    hooks = ServicesNightHooks(cfg, stack_settings, seed=cfg.seed)
    made: list[NightRepo] = []
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="nightshift-loadtest-night-"))
    kafka_config = kafka_settings(env["KAFKA_BOOTSTRAP"]).librdkafka_config()
    try:
        summary = run_night(cfg.spec(), echo=echo, live=False, workdir=workdir, start_stack=False,
                            keep=made.append, hooks=hooks, env=env)
        result.extra["night_summary"] = {k: v for k, v in vars(summary).items() if k != "exit_codes"}
        result.extra["exit_codes"] = summary.exit_codes
        result.budget(LAST_ALERT_BUDGET[0]).samples = [round(x, 3) for x in summary.shutter_to_last_alert_s]
        result.extra["dia_round_trip_s"] = [round(x, 3) for x in summary.dia_round_trip_s]
        if made and hooks.tally is not None:
            result.extra["reconciliation"] = reconcile_services_night(made[0], hooks.tally, env["KAFKA_BOOTSTRAP"],
                                                                      env["PG_DSN"], min(cfg.guard_s, 300.0))
        if summary.visits_complete < summary.visits:
            result.failed = f"{summary.visits - summary.visits_complete} visits did not reach all their alerts"
    except NightshiftError as exc:
        result.failed = str(exc).splitlines()[0]
        result.notes.append(str(exc))
    finally:
        hooks.close()
        result.extra["chaos_faults"] = [f.record for f in hooks.faults if f.done]
        result.extra["faults_not_injected"] = [f"{f.name} (visit {f.visit}: no dia.results)"
                                               for f in hooks.faults if not f.done]
        if hooks.sampler is not None:
            result.resources = hooks.sampler.samples
        if made:
            night = made[0]
            result.extra.update(alert_topic=night.alert_topic, apdb_schema=night.apdb_schema, prefix=night.prefix)
            t0 = hooks.ctx.started if hooks.ctx is not None else result.started
            for v in (hooks.ctx.monitor.visits.values() if hooks.ctx is not None else []):
                for det, t_raw in v.raws.items():
                    end = v.completed.get(det) or (v.dia[det][0] if det in v.dia else None)
                    if end is not None:
                        result.timeline.append(Span(v.visit, det, "raw → completed", t_raw - t0, end - t0))
                    if det in v.dia:
                        ids = v.dia[det][1]
                        last = max((v.alerts[i] for i in ids if i in v.alerts), default=None)
                        if last is not None:
                            result.timeline.append(Span(v.visit, det, "dia.results → last alert",
                                                        v.dia[det][0] - t0, last - t0))
            if not cfg.keep:
                problems = _cleanup(night, env, kafka_config)
                result.extra["cleanup_problems"] = problems
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                result.extra["workdir"] = str(workdir)
        result.extra["console"] = lines[-40:]
        result.extra["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        result.notes.append("Mode services: rendered raws through the six service processes (ingest, planner, "
                            "runners with the AP pipeline, datastore-writer, registry, alert-publisher) as "
                            "`nightshift ap run-night` runs them; alerts timed when visible to a read_committed "
                            "reader.")
    return result
