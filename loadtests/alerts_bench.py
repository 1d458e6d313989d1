"""Alert benchmarks, side by side in one run: encoding, cutouts, publishing a visit to the local broker.

Usage::

    nightshift dev up kafka
    .venv/bin/python loadtests/alerts_bench.py                       # 10,000-alert visits, 5 repeats
    .venv/bin/python loadtests/alerts_bench.py --alerts 2000 --repeats 3 --codecs lz4

Encoding: alerts/s per core (CPU time of this process) for fully populated
alerts (30 previous DiaSources, 30 forced sources, three 30-pixel cutouts, ~29 KB each) --
nightshift's column-wise encoder without a cache (every history row encoded
from the tables) and with its cache (history rows encoded once, when new),
fastavro's ``schemaless_writer`` and lsst-alert-packet's ``Schema.serialize``
on identical records (their bytes are checked equal to nightshift's).
Cutouts: microseconds per cutout, nightshift's template writer against astropy's
``CCDData.write``. Publishing: one visit of ``--alerts`` alerts to the local
broker (acks=all, idempotent), time from the first encode to the last
acknowledgement, p50/p95 over ``--repeats``, built and sent whole and as 10 overlapped
batches of 1,000 alerts (each with its own objects' preload), MB/s and the compression ratio
(alert bytes / bytes librdkafka sent), per codec; and one detector's share
(53 alerts, with the preload of its own objects) p50/p95. Prints one JSON object, then a one-line summary.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
import uuid
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightshift.alerts import AlertEncoder, AlertPublisher, Cutouts, CutoutWriter, EncodedCache, LocalWcs
from nightshift.apdb import simulate_visit


def dataset(n: int, depth: int = 30, seed: int = 0, cutout_px: int = 30) -> dict[str, Any]:
    """``n`` objects with ``depth`` previous sources and forced sources each, plus this visit's sources."""
    rng = np.random.default_rng(seed)
    ra, dec = rng.random(n) * 3.0, rng.random(n) * 3.0
    ids = np.arange(1, n + 1, dtype=np.int64)
    det = np.sort(rng.integers(0, 189, n)).astype(np.int16)
    srcs, frcs = [], []
    for k in range(depth):
        _, s, f = simulate_visit(100 + k, 60000.0 + 3 * k, ra, dec, ids, rng=rng, detector=det, null_fraction=0.0)
        srcs.append(s)
        frcs.append(f)
    objects, new, _ = simulate_visit(100 + depth, 60000.0 + 3 * depth, ra, dec, ids, rng=rng, detector=det,
                                     null_fraction=0.0)
    writer = CutoutWriter()
    wcs = LocalWcs.around(1.0, 1.0, cutout_px, 0.2, 10.0)
    psf = np.ones((21, 21), np.float32)
    cutouts = []
    for _ in range(n):
        img = rng.normal(size=(cutout_px, cutout_px)).astype(np.float32)
        mask = img > 2.5
        c = [writer.write(img * s, np.abs(img), mask, psf, wcs, 10.0) for s in (1.0, 1.5, 0.7)]
        cutouts.append(Cutouts(*c))
    return {"new": new, "objects": objects, "sources": srcs, "forced": frcs, "cutouts": cutouts}


def cpu(fn: Any) -> tuple[float, Any]:
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def bench_encoding(data: dict[str, Any], sample: int) -> dict[str, Any]:
    pre = (None, pa.concat_tables(data["sources"]), pa.concat_tables(data["forced"]))
    n = data["new"].num_rows
    cold = AlertEncoder()
    cold.build(data["new"].slice(0, 10), data["objects"], preload=pre)  # warm imports
    t_cold, batch = cpu(lambda: cold.build(data["new"], data["objects"], preload=pre, cutouts=data["cutouts"]))
    warm = AlertEncoder(cache=EncodedCache(max_bytes=4 * 2**30))
    for s, f in zip(data["sources"], data["forced"], strict=True):  # earlier visits: their sources were new then
        warm.build(s, None, forced_sources=f)
    t_warm, batch2 = cpu(lambda: warm.build(data["new"], data["objects"], preload=pre, cutouts=data["cutouts"]))
    assert batch2.payloads == batch.payloads
    # The same records, as dicts, through fastavro and lsst-alert-packet.
    from lsst.alert.packet import Schema

    records = [fastavro.schemaless_reader(io.BytesIO(p), batch.schema.parsed) for p in batch.payloads[:sample]]
    parsed = batch.schema.parsed

    def fa() -> list[bytes]:
        out = []
        for r in records:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, r)
            out.append(buf.getvalue())
        return out

    t_fa, fa_bytes = cpu(fa)
    assert fa_bytes == batch.payloads[:sample], "nightshift's bytes differ from fastavro's"
    lsst = Schema.from_file()
    t_lsst, lsst_bytes = cpu(lambda: [lsst.serialize(r) for r in records])
    assert lsst_bytes == batch.payloads[:sample]
    mb = batch.nbytes / 1e6
    return {
        "alerts": n,
        "alert_kb": round(batch.nbytes / n / 1e3, 1),
        "visit_mb": round(mb, 1),
        "nightshift_cold_per_s": round(n / t_cold),
        "nightshift_cached_per_s": round(n / t_warm),
        "fastavro_per_s": round(sample / t_fa),
        "lsst_alert_packet_per_s": round(sample / t_lsst),
        "byte_identical_checked": sample,
    }


def bench_cutouts(repeats: int) -> dict[str, Any]:
    import astropy.units as u
    from astropy.nddata import CCDData, VarianceUncertainty

    rng = np.random.default_rng(1)
    out: dict[str, Any] = {}
    writer = CutoutWriter()
    for px in (30, 60, 102):
        img = rng.normal(size=(px, px)).astype(np.float32)
        var, mask, psf = np.abs(img), img > 2, np.ones((21, 21))
        wcs = LocalWcs.around(10.0, -5.0, px, 0.2, 33.0)
        writer.write(img, var, mask, psf, wcs, 33.0)
        t, _ = cpu(lambda: [writer.write(img, var, mask, psf, wcs, 33.0) for _ in range(repeats)])  # noqa: B023
        ccd = CCDData(img, unit=u.nJy, uncertainty=VarianceUncertainty(var), mask=mask, wcs=wcs.astropy(), psf=psf)
        ccd.header["ROTPA"] = 33.0
        k = max(repeats // 50, 20)
        ta, _ = cpu(lambda: [ccd.write(io.BytesIO(), format="fits") for _ in range(k)])  # noqa: B023
        out[f"{px}px"] = {"nightshift_us": round(t / repeats * 1e6, 1), "astropy_us": round(ta / k * 1e6, 1)}
    return out


def bench_publish(data: dict[str, Any], bootstrap: str, codec: str, repeats: int) -> dict[str, Any]:
    pre = (None, pa.concat_tables(data["sources"]), pa.concat_tables(data["forced"]))
    topic = f"bench-alerts-{uuid.uuid4().hex[:8]}"
    sent: list[int] = []

    def stats(js: str) -> None:
        sent.append(sum(b.get("txbytes", 0) for b in json.loads(js)["brokers"].values()))

    enc = AlertEncoder(cache=EncodedCache(max_bytes=4 * 2**30))
    for s, f in zip(data["sources"], data["forced"], strict=True):
        enc.build(s, None, forced_sources=f)
    times, mb, per_detector = [], 0.0, []
    cfg = {"compression.type": codec, "statistics.interval.ms": 100, "stats_cb": stats}
    with AlertPublisher(bootstrap, producer_config=cfg, topic=topic, partitions=45) as pub:
        pub.ensure_topics(topic)
        warm = enc.build(data["new"].slice(0, 53), data["objects"], preload=pre, cutouts=data["cutouts"][:53])
        pub.publish(warm)
        tx0 = sent[-1] if sent else 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            batch = enc.build(data["new"], data["objects"], preload=pre, cutouts=data["cutouts"])
            report = pub.publish(batch)
            times.append(time.perf_counter() - t0)
            mb += report.bytes / 1e6
        # The same visit in 10 batches of 1,000 alerts (each with the preload of its own objects, as
        # detector tasks have): encoding batch k+1 overlaps librdkafka compressing and sending batch k.
        n = data["new"].num_rows
        step = max(n // 10, 1)
        chunks = []
        for a in range(0, n, step):
            part = data["new"].slice(a, step)
            mine = pa.array(part.column("diaObjectId").to_numpy())
            chunks.append((a, part, (None, *(t.filter(pc.is_in(t["diaObjectId"], mine)) for t in pre[1:]))))
        pipelined = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            reports = [pub.publish(enc.build(part, data["objects"], preload=p, cutouts=data["cutouts"][a : a + step]),
                                   wait=False) for a, part, p in chunks]
            for r in reports:
                pub.wait(r)
            pipelined.append(time.perf_counter() - t0)
            mb += sum(r.bytes for r in reports) / 1e6
        times_all = times + pipelined
        time.sleep(0.3)  # one more statistics callback
        pub._producer.poll(0.2)  # type: ignore[union-attr]  # open: the benchmark published through it
        tx = (sent[-1] if sent else 0) - tx0
        # A detector task preloads its own footprint (as Rubin's do): the history of its objects.
        det = data["new"].slice(0, 53)
        mine = pa.array(det.column("diaObjectId").to_numpy())
        det_pre = (None, *(t.filter(pc.is_in(t["diaObjectId"], mine)) for t in pre[1:]))
        for _ in range(20):
            t0 = time.perf_counter()
            b = enc.build(det, data["objects"], preload=det_pre, cutouts=data["cutouts"][:53])
            pub.publish(b)
            per_detector.append(time.perf_counter() - t0)
    _delete_topic(bootstrap, topic)
    return {
        "codec": codec,
        "visit_alerts": data["new"].num_rows,
        "visit_s_p50": round(float(np.percentile(times, 50)), 3),
        "visit_s_p95": round(float(np.percentile(times, 95)), 3),
        "visit_pipelined_s_p50": round(float(np.percentile(pipelined, 50)), 3),
        "visit_pipelined_s_p95": round(float(np.percentile(pipelined, 95)), 3),
        "mb_per_s": round(mb / sum(times_all), 1),
        "compression_ratio": round(mb * 1e6 / tx, 3) if tx else None,
        "detector_53_s_p50": round(float(np.percentile(per_detector, 50)), 4),
        "detector_53_s_p95": round(float(np.percentile(per_detector, 95)), 4),
    }


def _delete_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--codecs", default="none,lz4,snappy,zstd")
    ap.add_argument("--sample", type=int, default=300, help="records through fastavro and lsst-alert-packet")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--skip-publish", action="store_true")
    args = ap.parse_args()
    data = dataset(args.alerts)
    result: dict[str, Any] = {"encoding": bench_encoding(data, min(args.sample, args.alerts))}
    result["cutouts"] = bench_cutouts(5000)
    if not args.skip_publish:
        result["publish"] = [bench_publish(data, args.bootstrap, c, args.repeats) for c in args.codecs.split(",")]
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    e, c = result["encoding"], result["cutouts"]["60px"]
    line = (
        f"encode {e['nightshift_cold_per_s']}/s cold, {e['nightshift_cached_per_s']}/s cached "
        f"(fastavro {e['fastavro_per_s']}/s, lsst-alert-packet {e['lsst_alert_packet_per_s']}/s); "
        f"cutout 60px {c['nightshift_us']} us (astropy {c['astropy_us']} us)"
    )
    for p in result.get("publish", []):
        line += (f"; {p['codec']}: visit {p['visit_s_p50']}/{p['visit_s_p95']} s p50/p95 "
                 f"(10 overlapped batches {p['visit_pipelined_s_p50']}/{p['visit_pipelined_s_p95']} s), "
                 f"{p['mb_per_s']} MB/s, "
                 f"ratio {p['compression_ratio']}, detector {p['detector_53_s_p95']} s p95")
    print(line)


if __name__ == "__main__":
    main()
