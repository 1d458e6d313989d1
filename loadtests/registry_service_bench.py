"""The registry service under many writers: datasets registered per second, and lag from produced to queryable.

``--producers`` concurrent Kafka producers (librdkafka instances, spread over
``--processes`` processes) each play one detector's runner: for every visit
they report that detector's ``--types`` output datasets as ``dataset.stored``
v2 events. The dimension records (instrument, detectors, visits) are in the
registry first, as the raw ingest leaves them. One registry service (the real
``python -m nightshift_services.registry`` process) registers them into a
PostgreSQL registry.

* **throughput**: ``--rate 0`` (default) sends everything as fast as the
  producers can; datasets/s = datasets / (first produce → last registered),
  and the steady rate between 10 % and 90 % registered (from the service's
  ``nightshift_registry_events_total`` metric, polled every 50 ms).
* **lag**: every ``--sample``-th dataset's produce time is recorded; a poller
  looks those ids up in the registry (``Registry.get_datasets``) every 50 ms;
  lag = first poll that sees it - produce time. With ``--rate R`` the
  producers are paced to R datasets/s in total (a visit's outputs per tick), so
  the lag is the one at that offered load rather than a backlog's.

Events are encoded before the clock starts (the cost of building them belongs
to the runners, not to the registry service). Needs the local stack::

    eval "$(nightshift dev env)"
    .venv/bin/python loadtests/registry_service_bench.py --producers 100 --visits 100 --types 10
    .venv/bin/python loadtests/registry_service_bench.py --producers 100 --visits 60 --types 10 --rate 5000

Prints one JSON document, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from typing import Any

from confluent_kafka import Producer

from nightshift.butler import Butler, DatasetRef, DatasetType
from nightshift.events import DatasetStored, encode

INSTRUMENT = "BenchCam"
DAY_OBS = 20261205


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _types(n: int) -> list[DatasetType]:
    return [DatasetType(f"bench_out{i:02d}", ["instrument", "visit", "detector"], "StructuredDataDict")
            for i in range(n)]


def _producer_process(args: dict[str, Any], detectors: list[int], ready: Any, start: Any, samples: Any,
                      done: Any) -> None:
    """One process: a thread (and a librdkafka producer) per detector; each reports its visits' outputs."""
    types = _types(args["types"])
    run = args["run"]

    def events_of(detector: int) -> list[list[tuple[uuid.UUID, bytes]]]:
        out = []
        for visit in range(args["visits"]):
            data_id = {"instrument": INSTRUMENT, "visit": visit, "detector": detector}
            text = {k: str(v) for k, v in data_id.items()}
            visit_events = []
            for dt in types:
                ref = DatasetRef(dt, data_id, run)
                ev = DatasetStored(dataset_id=ref.id, dataset_type=dt.name, run=run, uri=f"file:///bench/{ref.id}",
                                   data_id=text, storage_class=dt.storage_class, size_bytes=100,
                                   checksum="0" * 64)
                visit_events.append((ref.id, encode(ev)))
            out.append(visit_events)
        return out

    prepared = {d: events_of(d) for d in detectors}
    ready.put(len(detectors))
    per_tick = args["types"]
    interval = (args["producers"] * per_tick / args["rate"]) if args["rate"] > 0 else 0.0

    def run_one(detector: int) -> None:
        producer = Producer({"bootstrap.servers": args["bootstrap"], "linger.ms": 5, "acks": "all",
                             "enable.idempotence": True, "batch.num.messages": 10000})
        n = 0
        local_samples: list[tuple[str, float]] = []
        start.wait()
        t0 = time.monotonic()
        for i, visit_events in enumerate(prepared[detector]):
            if interval:
                delay = t0 + i * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            for dataset_id, value in visit_events:
                now = time.time()
                while True:
                    try:
                        producer.produce(args["topic"], value=value, key=str(dataset_id).encode())
                        break
                    except BufferError:
                        producer.poll(0.01)
                n += 1
                if n % args["sample"] == 0:
                    local_samples.append((str(dataset_id), now))
            producer.poll(0)
            if local_samples:  # at once: the poller must know a sample before it can be registered
                samples.put(local_samples)
                local_samples = []
        producer.flush(120)

    threads = [threading.Thread(target=run_one, args=(d,)) for d in detectors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.put(time.time())  # when this process's last event was acknowledged by the broker


def _metric(port: int, outcome: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found = re.search(rf'^nightshift_registry_events_total\{{outcome="{outcome}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _copy_ceiling(dsn: str, schema: str, run: str) -> dict[str, float]:
    """COPY the stage run's rows again, into the ``dataset`` table and into a copy of it without foreign keys.

    The difference is the per-row foreign-key checks (instrument, visit, detector, dataset type, run):
    PostgreSQL runs them as row triggers, which no bulk path of a client avoids.
    """
    import psycopg

    out: dict[str, float] = {}
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.execute(f'SELECT d.* FROM "{schema}".dataset d JOIN "{schema}".collection c '
                        "ON c.collection_id = d.run_id WHERE c.name = %s", (run,))
            cols = [d.name for d in cur.description or []]
            rows = cur.fetchall()
        collist = ", ".join(f'"{c}"' for c in cols)
        conn.execute(f'CREATE TABLE "{schema}".dataset_nofk (LIKE "{schema}".dataset INCLUDING ALL)')
        conn.execute(f'DELETE FROM "{schema}".dataset WHERE id = ANY(%s)', ([r[0] for r in rows],))
        conn.commit()
        for table, key in (("dataset_nofk", "copy_without_fk_rows_per_s"), ("dataset", "copy_with_fk_rows_per_s")):
            t = time.perf_counter()
            with conn.cursor() as cur, cur.copy(f'COPY "{schema}".{table} ({collist}) FROM STDIN') as copy:
                for r in rows:
                    copy.write_row(r)
            conn.commit()
            out[key] = round(len(rows) / (time.perf_counter() - t), 1)
    return out


def _stages(repo: str, detectors: int, visits: int, ntypes: int, dsn: str, schema: str) -> dict[str, float]:
    """Where the time goes, in this process without Kafka: decoding, and the registrar's Python and database parts.

    The same kind of events as the run, in a fresh run collection, registered in batches of 5,000.
    """
    import psycopg

    from nightshift.butler.remote import BatchRegistrar, StoredDataset
    from nightshift.events import decode

    run = f"{INSTRUMENT}/stages/{uuid.uuid4().hex[:6]}"
    values = []
    for dt in _types(ntypes):
        for v in range(visits):
            for d in range(detectors):
                data_id = {"instrument": INSTRUMENT, "visit": v, "detector": d}
                ref = DatasetRef(dt, data_id, run)
                values.append(encode(DatasetStored(
                    dataset_id=ref.id, dataset_type=dt.name, run=run, uri="file:///x",
                    data_id={k: str(x) for k, x in data_id.items()}, storage_class=dt.storage_class)))
    t = time.perf_counter()
    events = [decode(v, expected_subject="dataset.stored") for v in values]
    decode_s = time.perf_counter() - t
    items = [StoredDataset(e.dataset_id, e.dataset_type, e.run, e.data_id, e.storage_class) for e in events]
    waited = [0.0]
    original = psycopg.Connection.wait

    def timed_wait(self: Any, *a: Any, **k: Any) -> Any:  # the time psycopg waits for the server
        t0 = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            waited[0] += time.perf_counter() - t0

    with Butler(repo) as b:
        registrar = BatchRegistrar(b.registry)
        registrar.register(items[:1])
        psycopg.Connection.wait = timed_wait  # type: ignore[method-assign]
        try:
            t = time.perf_counter()
            for i in range(1, len(items), 5000):
                registrar.register(items[i:i + 5000])
            register_s = time.perf_counter() - t
        finally:
            psycopg.Connection.wait = original  # type: ignore[method-assign]
    n = len(items)
    ceiling = _copy_ceiling(dsn, schema, run)
    return {
        **ceiling,
        "datasets": n, "decode_us": round(decode_s / n * 1e6, 1),
        "register_us": round(register_s / (n - 1) * 1e6, 1),
        "register_database_wait_us": round(waited[0] / (n - 1) * 1e6, 1),
        "register_python_us": round((register_s - waited[0]) / (n - 1) * 1e6, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--producers", type=int, default=100, help="concurrent producers (one detector each)")
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--visits", type=int, default=100)
    p.add_argument("--types", type=int, default=10, help="output datasets per (visit, detector)")
    p.add_argument("--rate", type=float, default=0.0, help="offered datasets/s in total (0: as fast as possible)")
    p.add_argument("--sample", type=int, default=50, help="measure the lag of every N-th dataset")
    p.add_argument("--max-batch", type=int, default=5000)
    p.add_argument("--partitions", type=int, default=16)
    p.add_argument("--replicas", type=int, default=1, help="registry service processes in one consumer group")
    args = p.parse_args()

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    dsn = os.environ.get("PG_DSN")
    if not dsn:
        raise SystemExit('set PG_DSN (eval "$(nightshift dev env)")')
    name = "regbench" + uuid.uuid4().hex[:8]
    tmp = tempfile.mkdtemp(prefix="registry-bench-")
    repo = os.path.join(tmp, "repo")
    Butler.create(repo, registry_db=dsn, registry_schema=name, register=False).close()
    with Butler(repo) as b:
        reg = b.registry
        reg.insert_dimension_records("instrument", [{"name": INSTRUMENT, "visit_max": 10**7, "detector_max": 1000}])
        reg.insert_dimension_records("band", [{"name": "r"}], skip_existing=True)
        reg.insert_dimension_records("physical_filter", [{"instrument": INSTRUMENT, "name": "r_01", "band": "r"}])
        reg.insert_dimension_records("day_obs", [{"instrument": INSTRUMENT, "id": DAY_OBS}])
        reg.insert_dimension_records("detector", [
            {"instrument": INSTRUMENT, "id": d, "full_name": f"D{d:03d}", "purpose": "SCIENCE"}
            for d in range(args.producers)])
        reg.insert_dimension_records("visit", [
            {"instrument": INSTRUMENT, "id": v, "physical_filter": "r_01", "day_obs": DAY_OBS}
            for v in range(args.visits)])
    run = f"{INSTRUMENT}/prompt/{DAY_OBS}"
    total = args.producers * args.visits * args.types
    topic = f"{name}.dataset.stored"

    env = {**os.environ, "NIGHTSHIFT_KAFKA_BOOTSTRAP": bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": f"{name}.",
           "NIGHTSHIFT_CONSUMER_GROUP": f"registry-{name}", "NIGHTSHIFT_BUTLER_REPO": repo,
           "NIGHTSHIFT_HTTP_PORT": "0", "NIGHTSHIFT_LOG_LEVEL": "WARNING",
           "NIGHTSHIFT_MAX_BATCH": str(args.max_batch), "NIGHTSHIFT_PARTITIONS": str(args.partitions)}
    env.pop("NIGHTSHIFT_REGISTRY_TOKEN", None)  # the read API is not what is measured here
    services, ports = [], []
    for _ in range(args.replicas):
        service = subprocess.Popen([sys.executable, "-m", "nightshift_services.registry"], env=env,
                                   stdout=subprocess.PIPE, text=True)
        assert service.stdout is not None
        line = service.stdout.readline()
        match = re.search(r"READY port=(\d+)", line)
        if match is None:
            service.kill()
            raise SystemExit(f"the registry service did not start: {line!r}")
        services.append(service)
        ports.append(int(match.group(1)))

    # warm-up: one dataset registered before the clock starts, so every replica has joined the group
    # and holds its partitions (READY is printed before the group's first assignment)
    warm_type = DatasetType("bench_warmup", ["instrument", "visit", "detector"], "StructuredDataDict")
    warm = Producer({"bootstrap.servers": bootstrap})
    for d in range(args.replicas * args.partitions):  # keys spread over the partitions
        data_id = {"instrument": INSTRUMENT, "visit": 0, "detector": d % args.producers}
        ref = DatasetRef(warm_type, {**data_id, "detector": d % args.producers}, f"{run}/warmup{d}")
        warm.produce(topic, key=str(ref.id).encode(), value=encode(DatasetStored(
            dataset_id=ref.id, dataset_type=warm_type.name, run=ref.run, uri="file:///warm",
            data_id={k: str(x) for k, x in data_id.items()}, storage_class=warm_type.storage_class)))
    warm.flush(60)
    warmed = args.replicas * args.partitions
    deadline = time.monotonic() + 300
    while sum(_metric(port, "registered") for port in ports) < warmed:
        if time.monotonic() > deadline:
            raise SystemExit("the registry service did not register the warm-up datasets")
        time.sleep(0.1)

    ctx = mp.get_context("spawn")
    ready_q, start, samples_q, done_q = ctx.Queue(), ctx.Event(), ctx.Queue(), ctx.Queue()
    shared = {"bootstrap": bootstrap, "topic": topic, "run": run, "visits": args.visits, "types": args.types,
              "rate": args.rate, "sample": args.sample, "producers": args.producers}
    groups = [list(range(args.producers))[i::args.processes] for i in range(args.processes)]
    procs = [ctx.Process(target=_producer_process, args=(shared, g, ready_q, start, samples_q, done_q))
             for g in groups if g]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready_q.get(timeout=600)  # every process has built its events (not timed)
    t_start = time.time()
    start.set()

    pending: dict[str, float] = {}
    lags: list[float] = []
    progress: list[tuple[float, float]] = []
    finished_producers = 0
    produced_at = 0.0
    with Butler(repo) as reader:
        registry = reader.registry
        while True:
            while not samples_q.empty():
                for dataset_id, t in samples_q.get():
                    pending[dataset_id] = t
            while not done_q.empty():
                produced_at = max(produced_at, done_q.get())
                finished_producers += 1
            if pending:
                ids = [uuid.UUID(i) for i in pending]
                now = time.time()
                for ref in registry.get_datasets(ids):
                    lags.append(now - pending.pop(str(ref.id)))
            registered = sum(_metric(port, "registered") for port in ports) - warmed
            progress.append((time.time(), registered))
            if registered >= total and finished_producers == len(procs) and not pending:
                break
            for service in services:
                if service.poll() is not None:
                    raise SystemExit(f"a registry service exited with {service.returncode}")
            time.sleep(0.05)
    t_end = progress[-1][0]
    for proc in procs:
        proc.join(60)
    for service in services:
        service.terminate()
        service.wait(60)

    def when(fraction: float) -> float:
        return next(t for t, n in progress if n >= fraction * total)

    t10, t90 = when(0.1), when(0.9)
    stages = _stages(repo, args.producers, min(args.visits, 10), args.types, dsn, name)
    steady = 0.8 * total / (t90 - t10) if t90 > t10 else float("nan")
    result = {
        "producers": args.producers, "processes": len(procs), "visits": args.visits, "types": args.types,
        "datasets": total, "offered_rate": args.rate or None, "max_batch": args.max_batch,
        "partitions": args.partitions, "replicas": args.replicas,
        "seconds": round(t_end - t_start, 3),
        "produce_seconds": round(produced_at - t_start, 3),
        "datasets_per_s": round(total / (t_end - t_start), 1),
        "steady_datasets_per_s": round(steady, 1),
        "lag_samples": len(lags),
        "lag_p50_s": round(_pct(lags, 0.50), 3), "lag_p95_s": round(_pct(lags, 0.95), 3),
        "lag_max_s": round(max(lags) if lags else float("nan"), 3),
        "stages_in_process": stages,
        "load_average": os.getloadavg()[0],
        "targets": {"datasets_per_s": 20000, "lag_p95_s": 1.0},
    }
    print(json.dumps(result, indent=2))
    print(f"registry service: {total} datasets from {args.producers} producers in {result['seconds']} s = "
          f"{result['datasets_per_s']:.0f}/s (steady {result['steady_datasets_per_s']:.0f}/s); lag p50 "
          f"{result['lag_p50_s']} s, p95 {result['lag_p95_s']} s (targets 20000/s, p95 <= 1 s)")
    from nightshift.butler.registry import Registry

    Registry.remove(dsn, schema=name)


if __name__ == "__main__":
    main()
