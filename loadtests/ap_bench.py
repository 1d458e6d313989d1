"""Alert Production benchmark: time per step on one simulated 4k x 4k detector, one core.

Simulates a raw (16 amplifiers with overscan, stars, sky, cosmic rays, 50
transients), a deeper and sharper template on its own (shifted, rotated)
grid, a reference catalog and 500 preloaded DIA objects, then runs
``nightshift.ap.process_detector`` (ISR -> characterize -> warp -> subtract ->
DIA detect/measure -> associate -> forced photometry -> cutouts) ``--repeats``
times and reports, per step, the median wall and CPU seconds and the CPU seconds
of the least-disturbed run (the best estimate on a shared machine). The simulation time is
not counted. Thread pools are limited to one thread (one core, as Rubin's
one-CPU pods per detector). Prints one JSON document, then one summary line.

Usage::

    .venv/bin/python loadtests/ap_bench.py [--size 4096] [--repeats 3] [--out loadtests/results/ap_bench.json]
        [--profile]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ap"))

from ap_sim import Sky, add_cosmic_rays, make_wcs, render, to_raw  # noqa: E402

from nightshift.ap import ApConfig, DetectorGeometry, PsfModel, apdb_rows, process_detector  # noqa: E402
from nightshift.butler.formatters import Exposure  # noqa: E402


def simulate(size: int, seed: int = 1) -> dict[str, Any]:
    """Inputs of one detector: raw, geometry, pointing WCS, refcat, template, preloaded objects."""
    shape = (size, size)
    half_deg = size * 0.2 / 3600 / 2 * 1.15
    sky = Sky.random(int(4000 * (size / 4096) ** 2), half_width_deg=half_deg, seed=seed, mag_range=(16.5, 24.0))
    wcs = make_wcs(shape)
    rng = np.random.default_rng(seed)
    n_tr = 50
    tx, ty = rng.uniform(50, size - 50, n_tr), rng.uniform(50, size - 50, n_tr)
    tf = rng.uniform(1500, 30000, n_tr)
    img, _ = render(sky, wcs, shape, psf_sigma=1.9, njy_per_e=2.0, sky_level=800.0, seed=seed, extra=(tx, ty, tf))
    add_cosmic_rays(img, int(200 * (size / 4096) ** 2), seed=seed)
    det = DetectorGeometry.grid(0, 8, 2, (size // 2, size // 8), overscan=32, gain=1.0, read_noise=5.0,
                                saturation=1e9)
    raw = to_raw(img, det, saturation_clip=False)
    tshape = (size + 100, size + 100)
    twcs = make_wcs(tshape, rotation_deg=0.2, shift=(11.3, -7.7))
    timg, _ = render(sky, twcs, tshape, psf_sigma=1.3, njy_per_e=1.0, sky_level=0.0, noise=False)
    timg += rng.normal(0, 8.0, tshape).astype(np.float32)
    template = Exposure(image=timg, variance=np.full(tshape, 64.0, np.float32), wcs=twcs)
    pointing = make_wcs(shape, rotation_deg=0.02, shift=(14.0, -9.0))
    orng = np.random.default_rng(seed + 5)
    n_obj = 500
    ora, odec = wcs.all_pix2world(orng.uniform(0, size, n_obj), orng.uniform(0, size, n_obj), 0)
    objects = apdb_rows("DiaObject", n_obj, {"diaObjectId": np.arange(1, n_obj + 1), "ra": ora, "dec": odec,
                                             "validityStartMjdTai": 59000.0, "nDiaSources": 1})
    return {"raw": raw, "detector": det, "pointing_wcs": pointing, "refcat": sky.refcat(), "template": template,
            "preloaded_objects": objects}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--profile", action="store_true", help="also print the top functions of one run (cProfile)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    inputs = simulate(args.size)
    sim_s = time.perf_counter() - t0
    runs = []
    cpu_runs = []
    res = None
    for r in range(args.repeats):
        res = process_detector(**inputs, visit=100 + r, midpoint_mjd=60000.1, band="r",
                               template_psf=PsfModel.gaussian(1.3), config=ApConfig())
        runs.append(res.timings)
        cpu_runs.append(res.cpu_timings)
    assert res is not None
    steps = list(runs[0])
    median = {k: float(np.median([t[k] for t in runs])) for k in steps}
    median_cpu = {k: float(np.median([t[k] for t in cpu_runs])) for k in steps}
    # on a shared machine the least-disturbed run is the best estimate of the intrinsic cost
    best = int(np.argmin([t["total"] for t in cpu_runs]))
    out: dict[str, Any] = {
        "benchmark": "ap_bench",
        "size": args.size,
        "repeats": args.repeats,
        "simulate_s": round(sim_s, 2),
        "median_wall_s": {k: round(v, 3) for k, v in median.items()},
        "median_cpu_s": {k: round(v, 3) for k, v in median_cpu.items()},
        "min_total_run_cpu_s": {k: round(v, 3) for k, v in cpu_runs[best].items()},
        "cpu_runs_s": [{k: round(v, 3) for k, v in t.items()} for t in cpu_runs],
        "wall_runs_s": [{k: round(v, 3) for k, v in t.items()} for t in runs],
        "target_total_s": 10.0,
        "outputs": {
            "dia_sources": res.dia_sources.table.num_rows,
            "cut_counts": res.dia_sources.cut_counts,
            "new_objects": int(res.association.new_object_ids.size),
            "forced_sources": res.forced.num_rows,
            "cutouts": len(res.cutouts),
            "cosmic_ray_pixels": res.isr.n_cosmic_ray_pixels,
            "psf_sigma": round(res.calib.psf.sigma, 3),
            "astrometry_rms_arcsec": round(res.calib.astrometry.rms_arcsec, 4),
            "subtraction": {k: (round(v, 4) if isinstance(v, float) else v)
                            for k, v in res.subtraction.diagnostics.items()},
        },
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
    }
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        process_detector(**inputs, visit=999, midpoint_mjd=60000.1, band="r", template_psf=PsfModel.gaussian(1.3))
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        out["profile_top"] = buf.getvalue().splitlines()[:45]
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    steps_txt = " ".join(f"{k}={v:.2f}s" for k, v in median_cpu.items() if k != "total")
    print(f"ap_bench {args.size}x{args.size}: total {median_cpu['total']:.2f} s CPU median "
          f"({cpu_runs[best]['total']:.2f} s best run) / {median['total']:.2f} s wall, load average "
          f"{os.getloadavg()[0]:.1f} (target <= 10 s) | median CPU per step: {steps_txt}")


if __name__ == "__main__":
    main()
