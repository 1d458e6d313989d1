"""Sky-region benchmark: HEALPix pixel ranges of cones and polygons, cdshealpix against lsst-sphgeom.

For each shape (a visit-sized cone, a small cone, a detector-sized square and
a patch-sized quadrilateral) and each HEALPix depth, it times

* ``nightshift``      -- :func:`nightshift.sky.pixel_ranges` (cdshealpix cover, sphgeom ``RangeSet``);
* ``cdshealpix``      -- cdshealpix's ``cone_search`` / ``polygon_search`` alone;
* ``sphgeom_healpix`` -- ``lsst.sphgeom.HealpixPixelization(depth).envelope(region)``;
* ``sphgeom_htm``     -- ``lsst.sphgeom.HtmPixelization(depth).envelope(region)`` (HTM, for reference:
  a trixel at level L is ~2/3 the area of a HEALPix cell at depth L);

and records the median time, the number of ranges and the number of cells
covered (tightness: fewer is better at the same depth). sphgeom's HEALPix
envelope enumerates every cell at 16x the resolution, so it is only run up
to ``--max-sphgeom-depth``. It also times the exact tests: polygon-polygon
overlap and point containment (sphgeom, vectorised).

Prints JSON (also written to ``--out``) and a one-line summary.

Example::

    .venv/bin/python loadtests/sky_bench.py --repeat 5 --out loadtests/results/sky_bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import astropy.units as u
import cdshealpix
import lsst.sphgeom as sg
import numpy as np
from astropy.coordinates import Latitude, Longitude
from cdshealpix.nested import cone_search, polygon_search

from nightshift.sky import Circle, ConvexPolygon, pixel_ranges


def _square(ra: float, dec: float, half: float, tilt_deg: float = 0.0) -> ConvexPolygon:
    t = np.radians(tilt_deg)
    corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
    verts = []
    for x, y in corners:
        xr, yr = x * np.cos(t) - y * np.sin(t), x * np.sin(t) + y * np.cos(t)
        verts.append((ra + xr / np.cos(np.radians(dec + yr)), dec + yr))
    return ConvexPolygon(tuple(verts))


SHAPES: dict[str, Circle | ConvexPolygon] = {
    "cone_1.75deg": Circle(150.0, -30.0, 1.75),
    "cone_0.05deg": Circle(150.0, -30.0, 0.05),
    "detector_0.22deg": _square(150.0, -30.0, 0.11, tilt_deg=17.0),
    "patch_1.8deg": _square(40.0, 10.0, 0.9, tilt_deg=5.0),
}


def _time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    result = fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, result


def _cds_raw(shape: Circle | ConvexPolygon, depth: int) -> np.ndarray:
    if isinstance(shape, Circle):
        ipix, _d, _f = cone_search(Longitude(shape.ra, u.deg), Latitude(shape.dec, u.deg), shape.radius * u.deg,
                                   depth=depth)
    else:
        arr = np.asarray(shape.vertices)
        ipix, _d, _f = polygon_search(Longitude(arr[:, 0], u.deg), Latitude(arr[:, 1], u.deg), depth=depth)
    return np.asarray(ipix)


def _summary_of(ranges: np.ndarray) -> dict[str, int]:
    return {"ranges": int(len(ranges)), "cells": int((ranges[:, 1] - ranges[:, 0]).sum()) if len(ranges) else 0}


def _rangeset_summary(rs: sg.RangeSet) -> dict[str, int]:
    return {"ranges": int(rs.size()), "cells": int(rs.cardinality())}


def bench_ranges(depths: list[int], max_sphgeom_depth: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for name, shape in SHAPES.items():
        for depth in depths:
            row: dict[str, Any] = {"shape": name, "depth": depth}
            ms, ranges = _time(lambda s=shape, d=depth: pixel_ranges(s, d), repeat)
            row["nightshift"] = {"ms": round(ms, 3), **_summary_of(ranges)}
            ms, ipix = _time(lambda s=shape, d=depth: _cds_raw(s, d), repeat)
            row["cdshealpix"] = {"ms": round(ms, 3), "moc_cells": int(len(ipix))}
            if depth <= max_sphgeom_depth:
                pix = sg.HealpixPixelization(depth)
                ms, rs = _time(lambda s=shape, p=pix: p.envelope(s.sphgeom), max(1, repeat // 2))
                row["sphgeom_healpix"] = {"ms": round(ms, 3), **_rangeset_summary(rs)}
            else:
                row["sphgeom_healpix"] = {"skipped": f"depth > --max-sphgeom-depth {max_sphgeom_depth}"}
            if depth <= 20:
                htm = sg.HtmPixelization(depth)
                ms, rs = _time(lambda s=shape, p=htm: p.envelope(s.sphgeom), repeat)
                row["sphgeom_htm"] = {"ms": round(ms, 3), **_rangeset_summary(rs)}
            rows.append(row)
            print(f"  {name:18s} depth {depth:2d}: nightshift {row['nightshift']['ms']:9.2f} ms  "
                  f"sphgeom_healpix {row['sphgeom_healpix'].get('ms', float('nan')):9.2f} ms", file=sys.stderr)
    return rows


def bench_exact(repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    n = 1_000_000
    ra, dec = 148.0 + 4.0 * rng.random(n), -32.0 + 4.0 * rng.random(n)
    circle, det = SHAPES["cone_1.75deg"], SHAPES["detector_0.22deg"]
    ms_c, inside = _time(lambda: circle.contains(ra, dec), repeat)
    ms_p, _ = _time(lambda: det.contains(ra, dec), repeat)
    a, b = _square(10.1, 0.1, 0.1), _square(10.31, 0.1, 0.1)
    ms_o, _ = _time(lambda: [a.overlaps(b) for _ in range(1000)], repeat)
    ms_build, _ = _time(lambda: [_square(10.1, 0.1, 0.1) for _ in range(1000)], repeat)
    return {
        "contains_circle_1e6_points_ms": round(ms_c, 2),
        "contains_polygon_1e6_points_ms": round(ms_p, 2),
        "inside_fraction": round(float(inside.mean()), 4),
        "polygon_overlaps_us": round(ms_o, 3),  # 1000 calls in ms = us per call
        "polygon_build_us": round(ms_build, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", type=int, nargs="+", default=[7, 9, 11, 14, 20])
    p.add_argument("--max-sphgeom-depth", type=int, default=11)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("loadtests/results/sky_bench.json"))
    args = p.parse_args(argv)

    from importlib.metadata import version

    result = {
        "benchmark": "sky_bench",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "versions": {"cdshealpix": cdshealpix.__version__ if hasattr(cdshealpix, "__version__") else
                     version("cdshealpix"), "lsst-sphgeom": version("lsst-sphgeom"), "numpy": np.__version__},
        "repeat": args.repeat,
        "ranges": bench_ranges(args.depths, args.max_sphgeom_depth, args.repeat),
        "exact": bench_exact(args.repeat),
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    speedups = [r["sphgeom_healpix"]["ms"] / r["nightshift"]["ms"] for r in result["ranges"]
                if "ms" in r["sphgeom_healpix"] and r["depth"] >= 9]
    worst = max((r["nightshift"]["ms"] for r in result["ranges"]), default=0.0)
    print(f"sky_bench: nightshift.sky pixel ranges (cdshealpix) are {min(speedups):.0f}-{max(speedups):.0f}x faster "
          f"than sphgeom's HEALPix envelope at depth >= 9 (slowest nightshift case {worst:.1f} ms); exact overlap "
          f"{result['exact']['polygon_overlaps_us']:.1f} us/pair, polygon contains "
          f"{result['exact']['contains_polygon_1e6_points_ms']:.0f} ms per 1e6 points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
