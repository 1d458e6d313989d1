"""The alert-publisher service end to end: dia.results in, committed alerts out, through the real stack.

Usage::

    nightshift dev up kafka s3 registry && eval "$(nightshift dev env)"
    .venv/bin/python loadtests/alert_publisher_bench.py --visits 3 --detectors 8 --alerts 53

Writes one alert-inputs bundle per (visit, detector) to the S3 server (``--alerts``
new DiaSources each, the previous visits' sources as preload, three simulated
cutouts per source). Starts ``python -m nightshift_services.alert_publisher`` and
waits for ``/readyz``. Then, visit by visit, publishes the visit's ``dia.results``
events at once and reads the alert topic with ``read_committed``. Reported:

- bundle size and write/read time;
- per (visit, detector), the time from producing its event to its last alert being
  visible to a read_committed reader (p50/p95): the per-task share of
  timeToIssueAlerts, as the service adds it;
- the visit's alerts/s.

Prints one JSON object, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, Producer

from nightshift.alerts import AlertInputs, read_alert_inputs, s3_client, simulated_cutouts, write_alert_inputs
from nightshift.apdb import SkyField
from nightshift.events import DiaResults, encode, ensure_topics


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visits", type=int, default=3)
    ap.add_argument("--detectors", type=int, default=8)
    ap.add_argument("--alerts", type=int, default=53, help="new DiaSources per detector")
    ap.add_argument("--guard", type=float, default=300.0, help="seconds before a hung run gives up")
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    if "SCHEMA_REGISTRY_URL" not in os.environ:
        raise SystemExit('set SCHEMA_REGISTRY_URL (eval "$(nightshift dev env)")')
    tag = uuid.uuid4().hex[:8]
    bucket, topic, alerts_topic = f"bench-{tag}", f"dia.results-bench-{tag}", f"alerts-bench-{tag}"
    s3 = s3_client()
    s3.create_bucket(Bucket=bucket)
    ensure_topics(bootstrap, [topic], partitions=max(args.detectors, 1))

    sky = SkyField(centres=1, density=max(4.0 * 189 * args.alerts / 9.6, 400.0),
                   sources_per_visit=189 * args.alerts, forced_per_visit=189 * args.alerts)
    rng = np.random.default_rng(3)
    dets = list(range(args.detectors))
    events: list[list[DiaResults]] = []
    sizes, writes, reads = [], [], []
    history: list[pa.Table] = []
    for i in range(args.visits):
        v = sky.visit(i)
        det_col = v.sources.column("detector").to_numpy()
        visit_events = []
        for det in dets:
            mask = pa.array(det_col == det)
            src = v.sources.filter(mask)
            ids = src.column("diaSourceId").to_numpy().tolist()
            fmask = pa.array(v.forced_sources.column("detector").to_numpy() == det)
            inputs = AlertInputs(src, v.objects.filter(mask), v.forced_sources.filter(fmask),
                                 preload_sources=pa.concat_tables(history) if history else None,
                                 cutouts=AlertInputs.cutout_table(ids, simulated_cutouts(src, rng)))
            uri = f"s3://{bucket}/dia/{v.visit}/{det}.arrow"
            t0 = time.perf_counter()
            write_alert_inputs(inputs, uri, s3=s3)
            writes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            read_alert_inputs(uri, s3=s3)
            reads.append(time.perf_counter() - t0)
            sizes.append(s3.head_object(Bucket=bucket, Key=f"dia/{v.visit}/{det}.arrow")["ContentLength"])
            visit_events.append(DiaResults(instrument="LSSTCam", visit=v.visit, detector=det,
                                           visit_time_mjd_tai=v.mjd, n_dia_sources=len(ids),
                                           n_dia_objects=len(ids), dia_source_ids=ids, results_uri=uri,
                                           alert_inputs_uri=uri, exposure_time_s=30.0))
        events.append(visit_events)
        history.append(v.sources.filter(pa.array(np.isin(det_col, dets))))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NIGHTSHIFT_INPUT_TOPIC": topic, "NIGHTSHIFT_ALERT_TOPIC": alerts_topic,
           "NIGHTSHIFT_ALERT_DLQ_TOPIC": f"alerts.dlq-bench-{tag}", "NIGHTSHIFT_CONSUMER_GROUP": f"bench-{tag}",
           "NIGHTSHIFT_TRANSACTIONAL_ID": f"bench-{tag}", "NIGHTSHIFT_HTTP_PORT": str(port),
           "NIGHTSHIFT_ARCHIVE_BUCKET": bucket, "NIGHTSHIFT_ALERT_PARTITIONS": "8", "NIGHTSHIFT_LOG_LEVEL": "WARNING"}
    log = tempfile.NamedTemporaryFile("wb", suffix=".log", delete=False)  # noqa: SIM115 - kept for the process
    proc = subprocess.Popen([sys.executable, "-m", "nightshift_services.alert_publisher"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-reader-{tag}",
                       "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                       "enable.auto.commit": False})
    result: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + args.guard
        while True:  # ready: broker reachable and the transactional loop running
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the publisher did not become ready; log: {log.name}")
            time.sleep(0.2)
        reader.subscribe([alerts_topic])
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
        latencies: list[float] = []
        rates: list[float] = []
        for visit_events in events:
            owner = {i: (e.visit, e.detector) for e in visit_events for i in e.dia_source_ids}
            sent: dict[tuple[int, int], float] = {}
            last: dict[tuple[int, int], float] = {}
            t_visit = time.perf_counter()
            for e in visit_events:
                sent[(e.visit, e.detector)] = time.perf_counter()
                producer.produce(topic, encode(e), key=f"{e.visit}-{e.detector}".encode())
            producer.flush(30)
            seen: set[int] = set()
            while len(seen) < len(owner):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"only {len(seen)} of {len(owner)} alerts arrived; log: {log.name}")
                m = reader.poll(0.2)
                if m is None or m.error() is not None:
                    continue
                i = int(m.key() or b"-1")
                if i in owner and i not in seen:
                    seen.add(i)
                    last[owner[i]] = time.perf_counter()
            rates.append(len(owner) / (max(last.values()) - t_visit))
            latencies += [last[k] - sent[k] for k in sent]
        result = {
            "visits": args.visits, "detectors": args.detectors, "alerts_per_detector": args.alerts,
            "bundle_bytes_p50": _pct([float(x) for x in sizes], 50),
            "bundle_write_s_p50": _pct(writes, 50), "bundle_read_s_p50": _pct(reads, 50),
            "event_to_committed_alerts_s_p50": _pct(latencies, 50),
            "event_to_committed_alerts_s_p95": _pct(latencies, 95),
            "alerts_per_s_p50": _pct(rates, 50),
            "load_average": os.getloadavg()[0],
        }
    finally:
        reader.close()
        proc.terminate()
        proc.wait(60)
    print(json.dumps(result))
    print(f"alert-publisher: {args.detectors} detectors x {args.alerts} alerts, event -> committed alerts "
          f"p50 {result['event_to_committed_alerts_s_p50']:.3f} s / "
          f"p95 {result['event_to_committed_alerts_s_p95']:.3f} s "
          f"(per-task budget 5 s), {result['alerts_per_s_p50']:.0f} alerts/s, bundle "
          f"{result['bundle_bytes_p50'] / 1e6:.2f} MB (load {result['load_average']:.1f})")


if __name__ == "__main__":
    main()
