"""Camera simulator benchmark: time to render one 4k x 4k detector (target <= 2 s per detector per core).

Run::

    .venv/bin/python loadtests/sim_bench.py [--size 4096] [--detectors 4] [--out results.json]

Renders ``--detectors`` detectors of one ``LSSTCam-sim`` visit (seeing 0.8", r band, 30 s) in this
process, one after the other, and reports for each the CPU time (``time.process_time``: what one
core spends, whatever else the machine runs) and the wall time. The first detector also pays for
the visit's GalSim stamp bank (PSF and galaxy profiles) and the catalog cells it touches; later
detectors reuse them, as a whole visit does. Writing the raw (uint16 FITS) is timed separately.

Prints one JSON document and a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from nightshift.obs import lsstcam_like
from nightshift.obs.sim import Observation, render_detector, write_raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--detectors", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    camera = lsstcam_like(args.size)
    obs = Observation("LSSTCam-sim", 20261206, 1, "2026-12-07T03:00:00", ra=150.0, dec=2.0, sky_angle=20.0,
                      seeing=0.8)
    runs = []
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        for det in range(90, 90 + args.detectors):
            c0, w0 = time.process_time(), time.perf_counter()
            rendered = render_detector(obs, camera, det, seed=0)
            c1, w1 = time.process_time(), time.perf_counter()
            write_raw(tmp, obs, camera, det, rendered.adu)
            c2 = time.process_time()
            runs.append({"detector": det, "render_cpu_s": round(c1 - c0, 3), "render_wall_s": round(w1 - w0, 3),
                         "write_cpu_s": round(c2 - c1, 3), "transients": len(rendered.truth),
                         "cosmic_rays": rendered.cosmic_rays})
    steady = [r["render_cpu_s"] for r in runs[1:]] or [runs[0]["render_cpu_s"]]
    result = {"benchmark": "render one LSSTCam-sim detector", "size": args.size, "cpus": os.cpu_count(),
              "load_average_1m": round(os.getloadavg()[0], 1), "runs": runs,
              "first_detector_cpu_s": runs[0]["render_cpu_s"], "median_cpu_s_per_detector": statistics.median(steady),
              "target_cpu_s": 2.0}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"SUMMARY {args.size}x{args.size} detector: {result['median_cpu_s_per_detector']:.2f} CPU-s to render "
          f"(first of the visit {result['first_detector_cpu_s']:.2f} s with the GalSim stamp bank), "
          f"write {statistics.median(r['write_cpu_s'] for r in runs):.2f} CPU-s; target <= 2 s")


if __name__ == "__main__":
    main()
