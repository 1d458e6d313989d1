"""Compare nightshift's Alard–Lupton subtraction with SFFT (PyPI ``sfft``) on the same simulated pair.

Both get the same science image and the same template already warped to
the science grid (nightshift's warp), the same stars to fit on, a kernel
half-width of 9 px and spatial kernel / background polynomial degrees 2 / 1
(nightshift uses its default basis). Measured on the difference: the
rms of ``diff / sqrt(var)`` away from transients and image edges (1.0 is
ideal), the mean, the recovered flux of 20 injected transients (median ratio
to truth and its scatter), and the wall / CPU time of the subtraction only.

``sfft`` is not a nightshift dependency: it runs in a separate virtual
environment given by ``--peer-python`` (``python3.11 -m venv /tmp/sfft-venv &&
/tmp/sfft-venv/bin/pip install sfft``), fed by FITS files in a temporary
directory. ``properimage`` does not install from PyPI here (its dependency
``tinynpydb`` downloads setuptools at build time) and ``zogyp`` needs the
SExtractor and PSFEx executables, which PyPI does not provide: neither is compared.

Usage::

    .venv/bin/python loadtests/ap_subtraction_compare.py --peer-python /tmp/sfft-venv/bin/python [--size 1024]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ap"))
from ap_sim import make_pair  # noqa: E402

from nightshift.ap import MaskPlane, PsfModel, prepare_template, subtract_images  # noqa: E402
from nightshift.ap._subtract import _select_stamps  # noqa: E402

SFFT_SCRIPT = r"""
import json, sys, time
from sfft.CustomizedPacket import Customized_Packet
d = sys.argv[1]
t0, c0 = time.perf_counter(), time.process_time()
Customized_Packet.CP(FITS_REF=d + '/ref.fits', FITS_SCI=d + '/sci.fits', FITS_mREF=d + '/mref.fits',
                     FITS_mSCI=d + '/msci.fits', ForceConv='REF', GKerHW=9, FITS_DIFF=d + '/diff_sfft.fits',
                     KerPolyOrder=2, BGPolyOrder=1, ConstPhotRatio=True, BACKEND_4SUBTRACT='Numpy',
                     NUM_CPU_THREADS_4SUBTRACT=1, VERBOSE_LEVEL=0)
print(json.dumps({'wall_s': time.perf_counter() - t0, 'cpu_s': time.process_time() - c0}))
"""


def _score(diff: np.ndarray, var: np.ndarray, mask: np.ndarray, tx: np.ndarray, ty: np.ndarray,
           tf: np.ndarray) -> dict[str, Any]:
    ny, nx = diff.shape
    yy, xx = np.mgrid[:ny, :nx]
    good = (mask & int(MaskPlane.unusable())) == 0
    good[:30] = good[-30:] = False
    good[:, :30] = good[:, -30:] = False
    near = np.zeros_like(good)
    ratios = []
    for x, y, f in zip(tx, ty, tf, strict=True):
        r = np.hypot(xx - x, yy - y)
        near |= r < 15
        ratios.append(float(diff[r < 8].sum() / f))
    sel = good & ~near
    pull = diff[sel] / np.sqrt(var[sel])
    return {"pull_rms": round(float(np.std(pull)), 4), "pull_mean": round(float(np.mean(pull)), 4),
            "transient_flux_ratio_median": round(float(np.median(ratios)), 4),
            "transient_flux_ratio_scatter": round(float(np.std(ratios)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--peer-python", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(4)
    n_tr = 20
    tx, ty = rng.uniform(60, args.size - 60, n_tr), rng.uniform(60, args.size - 60, n_tr)
    tf = rng.uniform(5000, 20000, n_tr)
    sky, sci, tmpl = make_pair((args.size, args.size), seed=31, extra=(tx, ty, tf),
                               n_stars=int(2000 * (args.size / 1024) ** 2),
                               half_width_deg=args.size * 0.2 / 3600 / 2 * 1.1)
    warped = prepare_template(tmpl, sci)
    x, y = sci.wcs.all_world2pix(sky.ra, sky.dec, 0)
    t0, c0 = time.perf_counter(), time.process_time()
    res = subtract_images(sci, warped, PsfModel.gaussian(2.0), PsfModel.gaussian(1.3), x, y, sky.flux_njy)
    ours = {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - c0, 3),
            **_score(res.difference.image, res.difference.variance, res.difference.mask, tx, ty, tf)}
    out: dict[str, Any] = {"benchmark": "ap_subtraction_compare", "size": args.size,
                           "nightshift_alard_lupton": ours}
    if args.peer_python:
        with tempfile.TemporaryDirectory() as d:
            chosen = _select_stamps(sci, warped, x, y, sky.flux_njy, 17, 150)
            stamp_mask = np.zeros(sci.image.shape, bool)
            for i in chosen:
                cx, cy = int(round(x[i])), int(round(y[i]))
                stamp_mask[cy - 8:cy + 9, cx - 8:cx + 9] = True
            ref = np.where((warped.mask & int(MaskPlane.NO_DATA)) != 0, 0, warped.image).astype(np.float64)
            scimg = sci.image.astype(np.float64)
            for name, arr in (("ref", ref), ("sci", scimg), ("mref", np.where(stamp_mask, ref, 0.0)),
                              ("msci", np.where(stamp_mask, scimg, 0.0))):
                fits.PrimaryHDU(arr).writeto(f"{d}/{name}.fits")
            proc = subprocess.run([str(args.peer_python), "-c", SFFT_SCRIPT, d], capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0:
                out["sfft"] = {"error": proc.stderr[-2000:]}
            else:
                timing = json.loads(proc.stdout.strip().splitlines()[-1])
                diff = fits.getdata(f"{d}/diff_sfft.fits").astype(np.float32)
                # SFFT writes SCI - REF ⊛ K: score it with the same variance and mask as ours
                out["sfft"] = {"wall_s": round(timing["wall_s"], 3), "cpu_s": round(timing["cpu_s"], 3),
                               **_score(diff, res.difference.variance, res.difference.mask, tx, ty, tf)}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    line = " | ".join(f"{k}: pull rms {v['pull_rms']}, flux ratio {v['transient_flux_ratio_median']}, "
                      f"{v['cpu_s']} s CPU" for k, v in out.items() if isinstance(v, dict) and "pull_rms" in v)
    print(f"ap_subtraction_compare {args.size}px: {line}")


if __name__ == "__main__":
    main()
