"""Same visits through Rubin's lsst-dax-apdb (SQL backend) and nightshift, same PostgreSQL.

Two halves, two environments (dax_apdb is never a nightshift dependency):

    # 1. export the benchmark visits (nightshift venv)
    .venv/bin/python loadtests/apdb/dax_compare.py export --visits 6 --dir /tmp/dax_visits
    # 2. store + preload them with dax_apdb (separate venv: python3.11 -m venv .cache/dax-venv;
    #    .cache/dax-venv/bin/pip install lsst-dax-apdb psycopg2-binary)
    .cache/dax-venv/bin/python loadtests/apdb/dax_compare.py dax --visits 6 --dir /tmp/dax_visits
    # 3. the same with nightshift on a fresh schema (nightshift venv)
    .venv/bin/python loadtests/apdb/dax_compare.py nightshift --visits 6 --dir /tmp/dax_visits

Per visit: store time, then the next field's preload (objects in the region + 12 months
of DiaSources and DiaForcedSources of those objects), single process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DSN = os.environ.get("PG_DSN", "postgresql://nightshift@127.0.0.1:15433/nightshift")
CENTRES, DENSITY, RADIUS = 14, 5200.0, 1.75


def export(args: argparse.Namespace) -> None:
    from nightshift.apdb import SkyField

    sky = SkyField(centres=CENTRES, density=DENSITY, sources_per_visit=10_000, forced_per_visit=10_000)
    args.dir.mkdir(parents=True, exist_ok=True)
    for i in range(args.visits + 1):
        v = sky.visit(i)
        arrays: dict[str, np.ndarray] = {"mjd": np.array(v.mjd)}
        for tag, t in (("o", v.objects), ("s", v.sources), ("f", v.forced_sources)):
            for name in t.column_names:
                col = t[name]
                assert col.null_count == 0
                a = col.to_numpy(zero_copy_only=False)
                arrays[f"{tag}:{name}"] = a.astype("U") if a.dtype == object else a
        ra, dec = sky.centre(i)
        arrays["centre"] = np.array([ra, dec])
        np.savez(args.dir / f"visit{i}.npz", **arrays)


def _load(path: Path) -> tuple[float, tuple[float, float], dict[str, dict[str, np.ndarray]]]:
    z = np.load(path)
    out: dict[str, dict[str, np.ndarray]] = {"o": {}, "s": {}, "f": {}}
    for key in z.files:
        if ":" in key:
            tag, name = key.split(":", 1)
            out[tag][name] = z[key]
    return float(z["mjd"]), (float(z["centre"][0]), float(z["centre"][1])), out


def _pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {
        "p50": round(float(np.median(a)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
    }


def run_dax(args: argparse.Namespace) -> None:
    import astropy.time
    import pandas as pd
    from lsst.dax.apdb import Apdb
    from lsst.dax.apdb.sql import ApdbSql
    from lsst.sphgeom import Angle, Circle, LonLat, UnitVector3d

    url = DSN.replace("postgresql://", "postgresql+psycopg2://")
    config = ApdbSql.init_database(url, namespace=args.schema, drop=True, dia_object_index="last_object_table")
    apdb = Apdb.from_config(config)
    rows = []
    for i in range(args.visits):
        mjd, _, data = _load(args.dir / f"visit{i}.npz")
        nxt_mjd, (ra, dec), _ = _load(args.dir / f"visit{i + 1}.npz")
        frames = {k: pd.DataFrame(v) for k, v in data.items()}
        t = astropy.time.Time(mjd, format="mjd", scale="tai")
        t0 = time.perf_counter()
        apdb.store(t, frames["o"], frames["s"], frames["f"])
        t1 = time.perf_counter()
        region = Circle(UnitVector3d(LonLat.fromDegrees(ra, dec)), Angle.fromDegrees(RADIUS))
        nt = astropy.time.Time(nxt_mjd, format="mjd", scale="tai")
        objs = apdb.getDiaObjects(region)
        ids = objs["diaObjectId"].to_numpy()
        src = apdb.getDiaSources(region, ids, nt)
        fsrc = apdb.getDiaForcedSources(region, ids, nt)
        t2 = time.perf_counter()
        rec = {"visit": i, "store_s": round(t1 - t0, 3), "preload_s": round(t2 - t1, 3),
               "rows": [len(objs), 0 if src is None else len(src), 0 if fsrc is None else len(fsrc)]}
        print(json.dumps(rec), file=sys.stderr, flush=True)
        rows.append(rec)
    _report("dax_apdb", rows)


def run_nightshift(args: argparse.Namespace) -> None:
    import asyncio

    import pyarrow as pa

    from nightshift.apdb import ApdbSettings, AsyncApdb, Circle

    async def main() -> None:
        rows = []
        async with AsyncApdb(ApdbSettings(dsn=DSN, schema_name=args.schema + "_ns")) as apdb:
            await apdb.create(drop=True)
            for i in range(args.visits):
                mjd, _, data = _load(args.dir / f"visit{i}.npz")
                nxt_mjd, (ra, dec), _ = _load(args.dir / f"visit{i + 1}.npz")
                tables = {k: pa.table(v) for k, v in data.items()}
                t0 = time.perf_counter()
                await apdb.store(mjd, tables["o"], tables["s"], tables["f"])
                t1 = time.perf_counter()
                pre = await apdb.preload(Circle(ra, dec, RADIUS), nxt_mjd - 365.0)
                t2 = time.perf_counter()
                rec = {"visit": i, "store_s": round(t1 - t0, 3), "preload_s": round(t2 - t1, 3),
                       "rows": [pre.objects.num_rows, pre.sources.num_rows, pre.forced_sources.num_rows]}
                print(json.dumps(rec), file=sys.stderr, flush=True)
                rows.append(rec)
            await apdb.drop()
        _report("nightshift", rows)

    asyncio.run(main())


def _report(name: str, rows: list[dict]) -> None:
    out = {"backend": name, "visits": rows,
           "store_s": _pct([r["store_s"] for r in rows]), "preload_s": _pct([r["preload_s"] for r in rows])}
    print(json.dumps(out))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["export", "dax", "nightshift"])
    ap.add_argument("--visits", type=int, default=6)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/dax_visits"))
    ap.add_argument("--schema", default="apdb_dax_compare")
    a = ap.parse_args()
    {"export": export, "dax": run_dax, "nightshift": run_nightshift}[a.mode](a)
