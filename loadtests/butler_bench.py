"""Butler datastore benchmark: put/get throughput and cutout latency, POSIX and S3.

Run (the local stack must be up for S3: ``.venv/bin/nightshift dev up``)::

    .venv/bin/python loadtests/butler_bench.py [--small N] [--large N] [--no-s3] [--out results.json]

Measures, through the public ``Butler`` (SQLite registry, one transaction per put):

* small: N puts of a ~1 KB JSON dict (one transaction each), N more with
  ``put_many`` in batches of 100, N gets by ref and by data ID;
* large: puts and gets of a 4096×4096 float32 image written as FITS;
* cutout: p50 latency of a 50×50 ``bbox`` read of that image vs a full read;
* export: a new repository holding a copy (and a symlink view) of N small datasets.

With ``--daf-python /path/to/other/venv/bin/python`` the same small-dataset
work also runs on Rubin's ``lsst-daf-butler`` (POSIX + SQLite) in that
separate environment, in the same run, and the ratios are reported. It is
never a dependency of nightshift::

    python3.11 -m venv /tmp/dafenv && /tmp/dafenv/bin/pip install lsst-daf-butler
    .venv/bin/python loadtests/butler_bench.py --daf-python /tmp/dafenv/bin/python

Prints one JSON document and a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.butler import DatasetType
from nightshift.butler._butler import Butler
from nightshift.butler.formatters import Box

SMALL = DatasetType("bench_metric", ["instrument", "detector"], "StructuredDataDict")
LARGE = DatasetType("bench_image", ["instrument", "detector"], "NumpyArray")
FORMATTERS = {"dataset_types": {"bench_image": "fits_image"}}


def payload(i: int) -> dict[str, Any]:
    """About 1 KB of JSON."""
    return {"i": i, "name": f"metric-{i}", "values": [round(0.001 * k * i, 6) for k in range(80)]}


def make_repo(root: Path, datastore: dict[str, Any], n: int) -> Butler:
    Butler.create(root, datastore=datastore).close()
    b = Butler(root, run="bench")
    b.registry.insert_dimension_records("instrument", [{"name": "Bench", "visit_max": 10**6, "detector_max": 10**6}])
    b.registry.insert_dimension_records("detector", [{"instrument": "Bench", "id": d} for d in range(n)])
    b.register_dataset_type(SMALL)
    b.register_dataset_type(LARGE)
    return b


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def bench_small(b: Butler, n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    refs = [b.put(payload(i), "bench_metric", instrument="Bench", detector=i) for i in range(n)]
    t_put = time.perf_counter() - t0
    t0 = time.perf_counter()
    for ref in refs:
        b.get(ref)
    t_get_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n):
        b.get("bench_metric", instrument="Bench", detector=i)
    t_get_did = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch = 100
    for start in range(n, 2 * n, batch):
        b.put_many(
            [(payload(i), {"instrument": "Bench", "detector": i}) for i in range(start, min(start + batch, 2 * n))],
            "bench_metric",
        )
    t_put_many = time.perf_counter() - t0
    return {"n": n, "put_per_s": rate(n, t_put), "put_many_batch100_per_s": rate(n, t_put_many),
            "get_by_ref_per_s": rate(n, t_get_ref), "get_by_data_id_per_s": rate(n, t_get_did)}


def bench_large(b: Butler, n: int) -> dict[str, Any]:
    base = np.random.default_rng(0).normal(size=(4096, 4096)).astype(np.float32)
    mb = base.nbytes / 2**20
    puts, gets, warm, cuts, fulls = [], [], [], [], []
    refs = []
    for i in range(n):
        image = base + np.float32(i)  # distinct bytes: a content-addressed cache cannot serve one for another
        t0 = time.perf_counter()
        refs.append(b.put(image, "bench_image", instrument="Bench", detector=i))
        puts.append(time.perf_counter() - t0)
    for ref in refs:
        t0 = time.perf_counter()
        b.get(ref)
        gets.append(time.perf_counter() - t0)
    for ref in refs:  # second read: served by the local cache for remote stores
        t0 = time.perf_counter()
        b.get(ref)
        warm.append(time.perf_counter() - t0)
    rng = np.random.default_rng(1)
    for _ in range(50):
        x, y = (int(v) for v in rng.integers(0, 4096 - 50, 2))
        t0 = time.perf_counter()
        cut = b.get(refs[0], parameters={"bbox": Box(x, y, x + 50, y + 50)})
        cuts.append(time.perf_counter() - t0)
        if cut.shape != (50, 50):
            raise RuntimeError("cutout has the wrong shape")
    for _ in range(min(5, n + 2)):
        t0 = time.perf_counter()
        b.get(refs[0])
        fulls.append(time.perf_counter() - t0)
    p50 = statistics.median
    return {
        "n": n, "size_mb": round(mb, 1),
        "put_p50_s": round(p50(puts), 3), "put_mb_per_s": round(mb / p50(puts), 1),
        "get_p50_s": round(p50(gets), 3), "get_mb_per_s": round(mb / p50(gets), 1),
        "get_again_p50_s": round(p50(warm), 3),
        "cutout_50x50_p50_ms": round(p50(cuts) * 1e3, 3), "full_read_p50_ms": round(p50(fulls) * 1e3, 1),
    }


DAF_BUTLER_SCRIPT = r'''
import json, sys, tempfile, time, warnings
warnings.simplefilter("ignore")
from lsst.daf.butler import Butler, DatasetType

n = int(sys.argv[1])
def payload(i):
    return {"i": i, "name": f"metric-{i}", "values": [round(0.001 * k * i, 6) for k in range(80)]}
with tempfile.TemporaryDirectory() as tmp:
    Butler.makeRepo(tmp)
    b = Butler.from_config(tmp, writeable=True, run="bench")
    b.registry.insertDimensionData("instrument", {"name": "Bench", "detector_max": 10**6, "visit_max": 10**6,
                                                  "exposure_max": 10**6})
    b.registry.insertDimensionData(
        "detector", *[{"instrument": "Bench", "id": i, "full_name": str(i)} for i in range(n)]
    )
    b.registry.registerDatasetType(DatasetType("bench_metric", ("instrument", "detector"), "StructuredDataDict",
                                               universe=b.dimensions))
    t0 = time.perf_counter()
    refs = [b.put(payload(i), "bench_metric", instrument="Bench", detector=i) for i in range(n)]
    t_put = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in refs:
        b.get(r)
    t_get = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n):
        b.get("bench_metric", instrument="Bench", detector=i)
    t_did = time.perf_counter() - t0
    import lsst.daf.butler
    print(json.dumps({"version": lsst.daf.butler.__version__, "n": n, "put_per_s": round(n / t_put, 1),
                      "get_by_ref_per_s": round(n / t_get, 1), "get_by_data_id_per_s": round(n / t_did, 1)}))
'''


def daf_butler_small(python: str, n: int) -> dict[str, Any]:
    """The small-dataset work on lsst-daf-butler, in its own environment."""
    import subprocess

    out = subprocess.run([python, "-c", DAF_BUTLER_SCRIPT, str(n)], capture_output=True, text=True, check=True,
                         timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def raw_s3_baseline(bucket: str, small: int) -> dict[str, Any]:
    """The same transfers with plain boto3 calls: what the S3 server itself allows."""
    from nightshift.butler.datastores import S3Backend

    client = S3Backend(bucket, create_bucket=True).client
    body = json.dumps(payload(1)).encode()
    t0 = time.perf_counter()
    for i in range(small):
        client.put_object(Bucket=bucket, Key=f"raw/{i}.json", Body=body)
    t_put = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(small):
        client.get_object(Bucket=bucket, Key=f"raw/{i}.json")["Body"].read()
    t_get = time.perf_counter() - t0
    big = np.random.default_rng(0).normal(size=(4096, 4096)).astype(np.float32).tobytes()
    t0 = time.perf_counter()
    client.put_object(Bucket=bucket, Key="raw/big", Body=big)
    t_big_put = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.get_object(Bucket=bucket, Key="raw/big")["Body"].read()
    t_big_get = time.perf_counter() - t0
    mb = len(big) / 2**20
    return {"small_put_per_s": rate(small, t_put), "small_get_per_s": rate(small, t_get),
            "large_put_mb_per_s": round(mb / t_big_put, 1), "large_get_mb_per_s": round(mb / t_big_get, 1)}


def bench_export(n: int) -> dict[str, Any]:
    """Export (copy) and view (symlink) subsets of n small datasets into new repositories."""
    with tempfile.TemporaryDirectory(prefix="butler-bench-export-") as tmp:
        b = make_repo(Path(tmp) / "src", {"cls": "posix", "root": "datastore"}, n)
        try:
            for start in range(0, n, 1000):
                b.put_many([(payload(i), {"instrument": "Bench", "detector": i})
                            for i in range(start, min(start + 1000, n))], "bench_metric")
            out: dict[str, Any] = {"n": n}
            for mode in ("copy", "symlink"):
                t0 = time.perf_counter()
                with b.export_subset(Path(tmp) / mode, ["bench_metric"], transfer=mode) as new:
                    elapsed = time.perf_counter() - t0
                    if len(new.all_datasets()) != n:
                        raise RuntimeError(f"{mode} export lost datasets")
                out[f"{mode}_s"] = round(elapsed, 2)
                out[f"{mode}_per_s"] = rate(n, elapsed)
            return out
        finally:
            b.close()


def run(kind: str, datastore: dict[str, Any], small: int, large: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"butler-bench-{kind}-") as tmp:
        b = make_repo(Path(tmp) / "repo", datastore, max(2 * small, large))
        try:
            return {"small": bench_small(b, small), "large": bench_large(b, large)}
        finally:
            b.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--large", type=int, default=4)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--no-fsync", action="store_true", help="POSIX without fsync (crash safety off)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--export", type=int, default=10_000, help="datasets for the export/import benchmark (0: skip)")
    ap.add_argument("--daf-python", help="python of a separate venv with lsst-daf-butler, for a side-by-side run")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    posix = {"cls": "posix", "root": "datastore", "fsync": not args.no_fsync, "formatters": FORMATTERS}
    results["posix"] = run("posix", posix, args.small, args.large)
    if args.export:
        results["export_posix"] = bench_export(args.export)
    if not args.no_s3:
        from nightshift_dev.devstack import up

        os.environ.update(up(names=["s3"]))
        s3 = {"cls": "s3", "bucket": "bench" + uuid.uuid4().hex[:8], "create_bucket": True,
              "formatters": FORMATTERS, "cache": {"directory": "cache"}}
        results["s3"] = run("s3", s3, max(1, args.small // 4), args.large)
        results["s3"]["raw_boto3"] = raw_s3_baseline("raw" + uuid.uuid4().hex[:8], max(1, args.small // 4))
    if args.daf_python:
        daf = daf_butler_small(args.daf_python, args.small)
        ours = results["posix"]["small"]
        results["daf_butler_posix_sqlite"] = {"small": daf, "ratio_nightshift_over_daf": {
            k: round(ours[k] / daf[k], 1) for k in ("put_per_s", "get_by_ref_per_s", "get_by_data_id_per_s")}}
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    p = results["posix"]
    line = (f"posix: small put {p['small']['put_per_s']}/s (batched {p['small']['put_many_batch100_per_s']}/s) "
            f"get-by-ref {p['small']['get_by_ref_per_s']}/s; "
            f"4k² put {p['large']['put_mb_per_s']} MB/s get {p['large']['get_mb_per_s']} MB/s; "
            f"cutout {p['large']['cutout_50x50_p50_ms']} ms vs full {p['large']['full_read_p50_ms']} ms")
    if "export_posix" in results:
        e = results["export_posix"]
        line += f"; export {e['n']} copy {e['copy_s']} s, view {e['symlink_s']} s"
    if "s3" in results:
        s = results["s3"]
        line += (f" | s3: small put {s['small']['put_per_s']}/s get-by-ref {s['small']['get_by_ref_per_s']}/s; "
                 f"4k² put {s['large']['put_mb_per_s']} MB/s get {s['large']['get_mb_per_s']} MB/s; "
                 f"cutout {s['large']['cutout_50x50_p50_ms']} ms; raw boto3 small put "
                 f"{s['raw_boto3']['small_put_per_s']}/s get {s['raw_boto3']['small_get_per_s']}/s")
    if "daf_butler_posix_sqlite" in results:
        r = results["daf_butler_posix_sqlite"]["ratio_nightshift_over_daf"]
        line += (f" | vs daf_butler: put x{r['put_per_s']} get-by-ref x{r['get_by_ref_per_s']} "
                 f"get-by-data-id x{r['get_by_data_id_per_s']}")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
