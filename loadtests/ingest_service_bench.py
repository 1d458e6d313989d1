"""The ingest service end to end: a visit's raw.arrived in, every raw.ingested out, through the real Kafka.

Usage::

    nightshift dev up kafka && eval "$(nightshift dev env)"
    .venv/bin/python loadtests/ingest_service_bench.py --visits 4 --detectors 64 --max-batch 1 64

Writes ``--visits`` x ``--detectors`` simulated LSSTCam-sim raws (full headers, bias-level
pixels, 256 px), creates a fresh SQLite + POSIX repository per run, starts
``nightshift service ingest`` with each ``--max-batch`` (1: one ingest per event; N: the raws
of a consumed batch ingested together) and waits for ``/readyz``. Then, visit by visit, it
produces the visit's raw.arrived events at once (a whole focal plane arriving) and reads
raw.ingested until every raw of the visit is there. Reported per run:

- per raw, the time from producing its raw.arrived to its raw.ingested being readable
  (p50/p95);
- per visit, the time until the last raw.ingested, and raws/s.

Prints one JSON object, then a one-line summary per run.
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
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from nightshift.butler import Butler
from nightshift.events import RawIngested, decode, encode, ensure_topics
from nightshift.obs import describe_raw, get_instrument
from nightshift.obs.sim import Observation, write_raw


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the ingest service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit("the ingest service was not ready in time")


def _raws(root: Path, visits: int, detectors: int) -> list[list[Path]]:
    camera = get_instrument("LSSTCam-sim", detector_size=256).camera
    out = []
    for v in range(visits):
        obs = Observation("LSSTCam-sim", 20261206, v + 1, f"2026-12-07T02:{v:02d}:00", ra=150.0, dec=2.0)
        out.append([write_raw(root / f"v{v}", obs, camera, d) for d in range(detectors)])
    return out


def _run(bootstrap: str, raws: list[list[Path]], max_batch: int, work: Path) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    arrived, ingested = prefix + "raw.arrived", prefix + "raw.ingested"
    ensure_topics(bootstrap, [arrived, prefix + "raw.arrived.dlq", ingested], partitions=4)
    repo = work / f"repo-{max_batch}"
    Butler.create(repo, register=False).close()
    port = _free_port()
    env = {**os.environ, "NIGHTSHIFT_KAFKA_BOOTSTRAP": bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": prefix,
           "NIGHTSHIFT_BUTLER_REPO": str(repo), "NIGHTSHIFT_HTTP_PORT": str(port),
           "NIGHTSHIFT_MAX_BATCH": str(max_batch), "NIGHTSHIFT_CONSUMER_GROUP": f"ingest-{prefix}"}
    with open(work / f"ingest-{max_batch}.log", "wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "nightshift"), "service", "ingest"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{prefix}",
                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
    reader.assign([TopicPartition(ingested, p, 0) for p in range(4)])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "enable.idempotence": True})
    latencies: list[float] = []
    visit_s: list[float] = []
    try:
        _wait_ready(port, proc)
        for files in raws:
            events = [e for f in files for e in describe_raw(str(f))]
            sent: dict[tuple[int, int], float] = {}
            t0 = time.perf_counter()
            for e in events:
                producer.produce(arrived, encode(e), key=f"{e.instrument}/{e.detector}")
                sent[(e.visit, e.detector)] = time.perf_counter()
            producer.flush(60)
            seen: set[tuple[int, int]] = set()
            deadline = time.monotonic() + 600
            while len(seen) < len(events):
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {len(seen)} of {len(events)} raw.ingested in 600 s")
                m = reader.poll(0.5)
                if m is None or m.error() is not None:
                    continue
                out = decode(m.value() or b"")
                assert isinstance(out, RawIngested)
                key = (out.visit, out.detector)
                if key in sent and key not in seen:
                    seen.add(key)
                    latencies.append(time.perf_counter() - sent[key])
            visit_s.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(60)
        reader.close()
    n = len(raws[0])
    return {"max_batch": max_batch, "raws_per_visit": n, "visits": len(raws),
            "raw_latency_p50_s": _pct(latencies, 50), "raw_latency_p95_s": _pct(latencies, 95),
            "visit_s": visit_s, "visit_median_s": float(np.median(visit_s)),
            "raws_per_s_median": n / float(np.median(visit_s))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=4)
    parser.add_argument("--detectors", type=int, default=64)
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--out", default=None, help="Also write the JSON here.")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        work = Path(tmp)
        raws = _raws(work / "raws", args.visits, args.detectors)
        runs = [_run(bootstrap, raws, b, work) for b in args.max_batch]
    result = {"bench": "ingest_service", "load_average": os.getloadavg(), "runs": runs}
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    for r in runs:
        print(f"ingest service, max_batch={r['max_batch']}: {r['raws_per_visit']} raws/visit, raw.arrived -> "
              f"raw.ingested p50 {r['raw_latency_p50_s']:.2f} s / p95 {r['raw_latency_p95_s']:.2f} s, "
              f"visit {r['visit_median_s']:.2f} s median ({r['raws_per_s_median']:.0f} raws/s)")


if __name__ == "__main__":
    main()
