"""Raw ingest benchmark: raws ingested per second, headers only, as links (symlink transfer).

Run::

    .venv/bin/python loadtests/ingest_bench.py [--sizes 189 10000] [--processes N] [--out results.json]

Writes simulated ``LSSTCam-sim`` raws (one exposure = 189 detector files; 10,000
files = 53 exposures) with full headers and tiny pixel arrays (ingest reads
headers only, so the pixel count does not change its cost), then ingests
each set into a fresh SQLite + POSIX repository through the public
``nightshift.obs.ingest_raws`` (parse in worker processes, dimension records,
datastore links, registry rows) and times it end to end, with the POSIX
datastore's fsync on (the default: every link and record durable before the
registry commits) and off. A second ingest of the same files (all no-ops) is
timed too.

Rubin's obs_base ingest is not measured side by side: ``lsst-obs-base`` and its
``lsst-afw`` stack are not installable from PyPI on this machine (conda/EUPS only).

The machine is shared, so besides wall-clock raws/s the benchmark reports the
CPU seconds spent (this process and its workers) per raw, and the load average.

Prints one JSON document and a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from nightshift.butler import Butler
from nightshift.obs import get_instrument, ingest_raws
from nightshift.obs.sim import Observation, write_raw


def make_raws(directory: Path, n_files: int) -> list[Path]:
    camera = get_instrument("LSSTCam-sim", detector_size=16).camera
    files: list[Path] = []
    seq = 0
    while len(files) < n_files:
        seq += 1
        obs = Observation("LSSTCam-sim", 20261206, seq, f"2026-12-07T{1 + seq // 60:02d}:{seq % 60:02d}:00",
                          ra=30.0 + 3.5 * (seq % 20), dec=-30.0 + 3.5 * (seq // 20), sky_angle=float(seq % 90))
        for det in range(189):
            if len(files) == n_files:
                break
            files.append(write_raw(directory, obs, camera, det))
    return files


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the header-reading workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(n_files: int, processes: int, fsync: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        t0 = time.perf_counter()
        make_raws(Path(tmp) / "raw", n_files)
        write_s = time.perf_counter() - t0
        store = {"cls": "posix", "name": "posix", "root": "datastore", "fsync": fsync}
        with Butler.create(Path(tmp) / "repo", datastore=store) as butler:
            t0, c0 = time.perf_counter(), _cpu()
            report = ingest_raws(butler, [Path(tmp) / "raw"], transfer="symlink", processes=processes)
            first, cpu = time.perf_counter() - t0, _cpu() - c0
            if not report.ok or len(report.ingested) != n_files:
                raise SystemExit(f"ingest failed: {report.summary()} {report.skipped[:3]}")
            t0 = time.perf_counter()
            again = ingest_raws(butler, [Path(tmp) / "raw"], transfer="symlink", processes=processes)
            second = time.perf_counter() - t0
            assert len(again.unchanged) == n_files
    return {"files": n_files, "exposures": -(-n_files // 189), "processes": processes, "fsync": fsync,
            "write_files_s": round(write_s, 2), "ingest_s": round(first, 3),
            "raws_per_s": round(n_files / first, 1), "cpu_s": round(cpu, 2),
            "cpu_ms_per_raw": round(1000 * cpu / n_files, 2), "raws_per_cpu_s": round(n_files / cpu, 1),
            "load_average_1m": round(os.getloadavg()[0], 1), "reingest_noop_s": round(second, 3),
            "reingest_raws_per_s": round(n_files / second, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[189, 10_000])
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--fsync", type=lambda v: v == "on", nargs="+", default=[True, False], metavar="on|off")
    args = parser.parse_args()
    results = {"benchmark": "ingest_raws headers-only symlink", "cpus": os.cpu_count(),
               "runs": [run(n, args.processes, fsync) for n in args.sizes for fsync in args.fsync]}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print("SUMMARY " + "; ".join(f"{r['files']} raws{'' if r['fsync'] else ' (no fsync)'}: "
                                 f"{r['raws_per_s']:.0f} raws/s wall, {r['raws_per_cpu_s']:.0f} per CPU-s "
                                 f"(re-ingest no-op {r['reingest_raws_per_s']:.0f}/s)" for r in results["runs"]))


if __name__ == "__main__":
    main()
