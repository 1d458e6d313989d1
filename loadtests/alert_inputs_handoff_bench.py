"""How the runner hands one detector's alert inputs to the alert publisher: the options, measured.

One detector's alert inputs as the runner produces them (``--alerts`` new
DiaSources with their DiaObjects and forced sources, the field's DiaSource
history of two earlier visits, and three FITS cutouts per source, ~8 MB) go
from the runner's memory to the publisher's memory (an ``AlertInputs``) by:

``arrow_s3``
    the chosen way: one Arrow IPC file (``AlertInputs.to_bytes``) PUT to the
    object store, its URI in ``dia.results``; the publisher GETs and opens it;
``parquet_s3``
    one Parquet object per table (7 PUTs, 7 GETs);
``inline_kafka``
    the same Arrow bytes inside the Kafka message itself (a topic allowing
    32 MB messages; produced with ``acks=all``, consumed by a reader at the end
    of the topic), no object store.

Re-reading the APDB is not measured here: the cutouts are not in the APDB, so it
still needs the object store, and the history read alone is the APDB preload,
measured by ``loadtests/apdb_bench.py`` (``docs/performance.md``).

Prints one JSON document, then one summary line::

    eval "$(nightshift dev env)"; .venv/bin/python loadtests/alert_inputs_handoff_bench.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from nightshift.alerts import AlertInputs, s3_client, simulated_cutouts
from nightshift.apdb import SkyField

_TABLES = ("sources", "objects", "forced_sources", "preload_objects", "preload_sources", "preload_forced_sources",
           "cutouts")


def one_detector(alerts: int) -> AlertInputs:
    sky = SkyField(centres=1, density=max(4.0 * 189 * alerts / 9.6, 400.0), sources_per_visit=189 * alerts,
                   forced_per_visit=189 * alerts)
    rng = np.random.default_rng(3)
    history = []
    for i in range(3):
        v = sky.visit(i)
        det = v.sources.column("detector").to_numpy() == 0
        if i < 2:
            history.append(v.sources.filter(pa.array(det)))
            continue
        src = v.sources.filter(pa.array(det))
        ids = src.column("diaSourceId").to_numpy().tolist()
        fmask = pa.array(v.forced_sources.column("detector").to_numpy() == 0)
        return AlertInputs(src, v.objects.filter(pa.array(det)), v.forced_sources.filter(fmask),
                           preload_sources=pa.concat_tables(history),
                           cutouts=AlertInputs.cutout_table(ids, simulated_cutouts(src, rng)))
    raise AssertionError("unreachable")


def arrow_s3(inputs: AlertInputs, s3: Any, bucket: str, key: str) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    data = inputs.to_bytes()
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    t1 = time.perf_counter()
    back = AlertInputs.from_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    t2 = time.perf_counter()
    assert back.sources.num_rows == inputs.sources.num_rows
    return t1 - t0, t2 - t1, len(data)


def parquet_s3(inputs: AlertInputs, s3: Any, bucket: str, key: str) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    size = 0
    names = [n for n in _TABLES if getattr(inputs, n) is not None]
    for name in names:
        buf = io.BytesIO()
        pq.write_table(getattr(inputs, name), buf)
        size += buf.tell()
        s3.put_object(Bucket=bucket, Key=f"{key}/{name}.parquet", Body=buf.getvalue())
    t1 = time.perf_counter()
    tables = {n: pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=f"{key}/{n}.parquet")["Body"].read()))
              for n in names}
    back = AlertInputs(**tables)
    t2 = time.perf_counter()
    assert back.sources.num_rows == inputs.sources.num_rows
    return t1 - t0, t2 - t1, size


class InlineKafka:
    """A 32 MB-message topic, an acks=all producer and a reader at its end."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": str(32 << 20)})])[topic].result(30)
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                  "message.max.bytes": 33 << 20, "linger.ms": 0})
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{topic}",
                                  "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 64 << 20,
                                  "enable.auto.commit": False})
        deadline = time.monotonic() + 30
        while True:
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
                break
            except Exception:  # noqa: BLE001 - a new topic may have no leader yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.consumer.assign([TopicPartition(topic, 0, high)])

    def __call__(self, inputs: AlertInputs) -> tuple[float, float, int]:
        t0 = time.perf_counter()
        data = inputs.to_bytes()
        errors: list[Any] = []
        self.producer.produce(self.topic, data, on_delivery=lambda err, msg: errors.append(err))
        self.producer.flush(60)
        assert errors == [None], errors
        t1 = time.perf_counter()
        while True:
            msgs = self.consumer.consume(1, 10)
            if msgs and msgs[0].error() is None:
                back = AlertInputs.from_bytes(msgs[0].value() or b"")
                break
        t2 = time.perf_counter()
        assert back.sources.num_rows == inputs.sources.num_rows
        return t1 - t0, t2 - t1, len(data)

    def close(self) -> None:
        self.consumer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=53)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    tag = uuid.uuid4().hex[:8]
    s3 = s3_client()
    bucket = f"handoff-{tag}"
    s3.create_bucket(Bucket=bucket)
    inputs = one_detector(args.alerts)
    inline = InlineKafka(bootstrap, f"handoff-{tag}")
    options = {
        "arrow_s3": lambda i: arrow_s3(inputs, s3, bucket, f"arrow/{i}.arrow"),
        "parquet_s3": lambda i: parquet_s3(inputs, s3, bucket, f"parquet/{i}"),
        "inline_kafka": lambda i: inline(inputs),
    }
    runs: dict[str, dict[str, list[float]]] = {k: {"write": [], "read": [], "total": []} for k in options}
    sizes: dict[str, int] = {}
    for i in range(args.repeats):
        for name, run in options.items():  # interleaved: the machine's load hits every option alike
            w, r, size = run(i)
            runs[name]["write"].append(w)
            runs[name]["read"].append(r)
            runs[name]["total"].append(w + r)
            sizes[name] = size
    inline.close()
    summary = {name: {k: {"p50": round(float(np.median(v)), 4), "p95": round(float(np.percentile(v, 95)), 4)}
                      for k, v in r.items()} | {"bytes": sizes[name]} for name, r in runs.items()}
    base = summary["arrow_s3"]["total"]["p50"]
    for name in summary:
        summary[name]["total_p50_over_arrow_s3"] = round(summary[name]["total"]["p50"] / base, 2)
    doc = {"benchmark": "alert_inputs_handoff", "alerts": args.alerts, "repeats": args.repeats,
           "sources": inputs.sources.num_rows, "history_rows": inputs.preload_sources.num_rows
           if inputs.preload_sources is not None else 0, "results": summary,
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "load": os.getloadavg()}}
    text = json.dumps(doc, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print("handoff p50 (write+read): " + ", ".join(
        f"{n} {s['total']['p50'] * 1000:.0f} ms ({s['total_p50_over_arrow_s3']}x, {s['bytes'] / 1e6:.1f} MB)"
        for n, s in summary.items()))


if __name__ == "__main__":
    main()
