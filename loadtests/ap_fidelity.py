"""Alert Production science fidelity against simulated truth (docs/science.md regenerates from this).

``--visits`` simulated visits (default 20) over ``--fields`` revisited fields
(default 4): each field has a static sky (stars), a template (sharper,
deeper, on its own rotated grid) and ``--transients`` truth transients at
fixed positions whose flux in each visit is drawn so that the expected
difference-image S/N is uniform in [3, 50]. Every visit also gets ~100
cosmic rays per 4k×4k area and, every third visit, a satellite trail. Each
visit runs ``nightshift.ap.process_detector`` (raw → ISR → characterize →
warp/subtract → detect/measure → associate → forced → cutouts) with the
field's DIA objects from the previous visits preloaded (an in-memory APDB).

Measured:

- completeness against the true S/N (bins of 1 to S/N 10, then wider), as a
  table and a PNG plot (``--plot``), before and after the reliability cut;
- spurious DIA sources per detector (no truth transient within 3 px), before
  and after the reliability cut, also scaled to a 4k×4k detector area;
- astrometric error (mas rms, per coordinate and total) and photometric bias
  (median of psfFlux / true flux − 1) of matched sources at true S/N ≥ 20;
- association purity: for each truth object, the fraction of its detected
  sources that went to its most common DIA object (1.0: never split).

Prints one JSON document, then one summary line.

Usage::

    .venv/bin/python loadtests/ap_fidelity.py [--visits 20] [--fields 4] [--size 2048] [--transients 80]
        [--plot docs/science_completeness.png] [--out loadtests/results/ap_fidelity.json]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ap"))

from ap_sim import Sky, add_cosmic_rays, gaussian_stamp_add, make_wcs, render, to_raw  # noqa: E402

from nightshift.ap import DetectorGeometry, PsfModel, process_detector  # noqa: E402
from nightshift.butler.formatters import Exposure  # noqa: E402

PSF_SIGMA = 1.9
SKY = 800.0
NJY_PER_E = 2.0
RELIABILITY_CUT = 0.5
SNR_BINS = [3, 4, 5, 5.5, 6, 7, 8, 10, 15, 20, 30, 50.01]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visits", type=int, default=20)
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--transients", type=int, default=80)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    size = args.size
    shape = (size, size)
    det = DetectorGeometry.grid(0, 4, 2, (size // 2, size // 4), overscan=32, saturation=1e9)
    half_deg = size * 0.2 / 3600 / 2 * 1.15
    # expected PSF-flux error of a point source on the sky (e-): sqrt(4 pi sigma^2 (sky + read noise^2))
    sigma_f = float(np.sqrt(4 * np.pi * PSF_SIGMA**2 * (SKY + 25.0 + 36.0 / NJY_PER_E**2)))
    fields = []
    for f in range(args.fields):
        ra0 = 150.0 + 0.5 * f
        sky = Sky.random(int(2500 * (size / 4096) ** 2 * 4), ra0=ra0, half_width_deg=half_deg, seed=100 + f,
                         mag_range=(16.5, 24.0))
        wcs = make_wcs(shape, ra0=ra0)
        rng = np.random.default_rng(200 + f)
        tx, ty = rng.uniform(40, size - 40, args.transients), rng.uniform(40, size - 40, args.transients)
        tra, tdec = wcs.all_pix2world(tx, ty, 0)
        tshape = (size + 80, size + 80)
        twcs = make_wcs(tshape, ra0=ra0, rotation_deg=0.15, shift=(9.4, -6.1))
        timg, _ = render(sky, twcs, tshape, psf_sigma=1.3, njy_per_e=1.0, sky_level=0.0, noise=False)
        timg += rng.normal(0, 6.0, tshape).astype(np.float32)
        template = Exposure(image=timg, variance=np.full(tshape, 36.0, np.float32), wcs=twcs)
        fields.append({"sky": sky, "wcs": wcs, "tra": tra, "tdec": tdec, "template": template, "objects": None,
                       "history": None, "ra0": ra0})
    truth_rows: list[dict[str, Any]] = []
    spurious: list[int] = []
    spurious_rel: list[int] = []
    n_det_total = 0
    t0 = time.perf_counter()
    step_cpu: dict[str, list[float]] = {}
    cut_totals: dict[str, int] = {}
    for v in range(args.visits):
        fld = fields[v % args.fields]
        rng = np.random.default_rng(1000 + v)
        wcs = fld["wcs"]
        tx, ty = wcs.all_world2pix(fld["tra"], fld["tdec"], 0)
        snr_true = rng.uniform(3, 50, tx.size)
        flux_e = snr_true * sigma_f
        img, _ = render(fld["sky"], wcs, shape, psf_sigma=PSF_SIGMA, njy_per_e=NJY_PER_E, sky_level=SKY,
                        seed=5000 + v, extra=(tx, ty, flux_e))
        add_cosmic_rays(img, int(100 * (size / 4096) ** 2 * 4), seed=7000 + v)
        if v % 3 == 0:  # a satellite trail across the detector
            xs = np.linspace(0, size - 1, size * 2)
            gaussian_stamp_add(img, xs, 0.3 * xs + rng.uniform(0, size * 0.6), np.full(xs.size, 150.0), 1.5)
        raw = to_raw(img, det, seed=9000 + v, saturation_clip=False)
        pointing = make_wcs(shape, ra0=fld["ra0"], rotation_deg=0.01, shift=tuple(rng.uniform(-20, 20, 2)))
        res = process_detector(raw, det, visit=10 + v, midpoint_mjd=60000.0 + v, band="r", pointing_wcs=pointing,
                               refcat=fld["sky"].refcat(), template=fld["template"],
                               template_psf=PsfModel.gaussian(1.3), preloaded_objects=fld["objects"],
                               preloaded_sources=fld["history"])
        for k, val in res.cpu_timings.items():
            step_cpu.setdefault(k, []).append(val)
        for k, val in res.dia_sources.cut_counts.items():
            cut_totals[k] = cut_totals.get(k, 0) + val
        src = res.association.sources
        n_det_total += src.num_rows
        sx, sy = src["x"].to_numpy(), src["y"].to_numpy()
        rel = src["reliability"].to_numpy(zero_copy_only=False)
        neg = src["isNegative"].to_numpy(zero_copy_only=False)
        d_nearest = np.array([np.min(np.hypot(tx - a, ty - b)) for a, b in zip(sx, sy, strict=True)]) \
            if sx.size else np.zeros(0)
        spur = d_nearest > 3.0
        spurious.append(int(spur.sum()))
        spurious_rel.append(int((spur & (rel >= RELIABILITY_CUT)).sum()))
        for i in range(tx.size):
            d = np.hypot(sx - tx[i], sy - ty[i]) if sx.size else np.zeros(0)
            j = int(np.argmin(d)) if d.size else -1
            hit = j >= 0 and d[j] < 1.5 and not neg[j]
            row: dict[str, Any] = {"visit": v, "field": v % args.fields, "truth": i, "snr": float(snr_true[i]),
                                   "detected": bool(hit), "reliable": bool(hit and rel[j] >= RELIABILITY_CUT)}
            if hit:
                ra, dec = src["ra"][j].as_py(), src["dec"][j].as_py()
                row.update(dra_mas=(ra - fld["tra"][i]) * np.cos(np.radians(dec)) * 3.6e6,
                           ddec_mas=(dec - fld["tdec"][i]) * 3.6e6,
                           flux_ratio=src["psfFlux"][j].as_py() / (flux_e[i] * NJY_PER_E),
                           object=int(src["diaObjectId"][j].as_py()))
            truth_rows.append(row)
        # the in-memory APDB: replace the touched objects, append the sources to the history
        new_objs = res.association.objects
        if fld["objects"] is None:
            fld["objects"] = new_objs
        else:
            keep = pc.invert(pc.is_in(fld["objects"]["diaObjectId"], new_objs["diaObjectId"]))
            fld["objects"] = pa.concat_tables([fld["objects"].filter(keep), new_objs.cast(fld["objects"].schema)])
        fld["history"] = src if fld["history"] is None else pa.concat_tables([fld["history"], src])
        print(f"visit {v}: {src.num_rows} DIA sources, {int(spur.sum())} spurious, "
              f"{res.cpu_timings['total']:.1f} s CPU", file=sys.stderr)
    snr = np.array([r["snr"] for r in truth_rows])
    det_ = np.array([r["detected"] for r in truth_rows])
    rel_ = np.array([r["reliable"] for r in truth_rows])
    table = []
    for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True):
        sel = (snr >= lo) & (snr < hi)
        table.append({"snr_lo": lo, "snr_hi": round(hi, 1), "n": int(sel.sum()),
                      "completeness": round(float(det_[sel].mean()), 4) if sel.any() else None,
                      "completeness_after_reliability_cut": round(float(rel_[sel].mean()), 4) if sel.any() else None})
    bright = [r for r in truth_rows if r["detected"] and r["snr"] >= 20]
    dra = np.array([r["dra_mas"] for r in bright])
    ddec = np.array([r["ddec_mas"] for r in bright])
    ratio = np.array([r["flux_ratio"] for r in bright])
    # association purity
    purity = []
    by_truth: dict[tuple[int, int], list[int]] = {}
    for r in truth_rows:
        if r["detected"]:
            by_truth.setdefault((r["field"], r["truth"]), []).append(r["object"])
    for objs in by_truth.values():
        if len(objs) >= 2:
            _, counts = np.unique(objs, return_counts=True)
            purity.append(counts.max() / len(objs))
    area_scale = (4096 / size) ** 2
    out = {
        "benchmark": "ap_fidelity",
        "visits": args.visits, "fields": args.fields, "detector_size": size,
        "transients_per_visit": args.transients, "reliability_cut": RELIABILITY_CUT,
        "completeness": table,
        "completeness_snr_ge_8": round(float(det_[snr >= 8].mean()), 4),
        "completeness_snr_5_5_to_6": round(float(det_[(snr >= 5.5) & (snr < 6)].mean()), 4),
        "spurious_per_detector": round(float(np.mean(spurious)), 2),
        "spurious_per_detector_after_reliability_cut": round(float(np.mean(spurious_rel)), 2),
        "spurious_per_4k_detector_after_reliability_cut": round(float(np.mean(spurious_rel)) * area_scale, 2),
        "artefact_cuts_total": cut_totals,
        "astrometry_snr_ge_20": {"n": int(dra.size), "rms_ra_mas": round(float(np.sqrt(np.mean(dra**2))), 1),
                                 "rms_dec_mas": round(float(np.sqrt(np.mean(ddec**2))), 1),
                                 "rms_total_mas": round(float(np.sqrt(np.mean(dra**2 + ddec**2))), 1)},
        "photometry_snr_ge_20": {"n": int(ratio.size), "median_bias": round(float(np.median(ratio) - 1), 4),
                                 "scatter": round(float(1.4826 * np.median(np.abs(ratio - np.median(ratio)))), 4)},
        "association_purity": {"truth_objects": len(purity), "mean": round(float(np.mean(purity)), 4),
                               "fraction_pure": round(float(np.mean(np.array(purity) == 1.0)), 4)},
        "dia_sources_total": n_det_total,
        "median_cpu_s_per_step": {k: round(float(np.median(v)), 3) for k, v in step_cpu.items()},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        mids = [0.5 * (t["snr_lo"] + t["snr_hi"]) for t in table]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(mids, [t["completeness"] for t in table], "o-", label="all DIA sources")
        ax.plot(mids, [t["completeness_after_reliability_cut"] for t in table], "s--",
                label=f"reliability >= {RELIABILITY_CUT}")
        ax.axhline(0.95, color="grey", lw=0.5)
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.axvline(5.5, color="grey", lw=0.5, ls=":")
        ax.axvline(8, color="grey", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("true S/N in the difference image")
        ax.set_ylabel("completeness")
        ax.set_title(f"nightshift.ap: {args.visits} visits, {len(truth_rows)} injections")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"ap_fidelity: completeness {out['completeness_snr_ge_8']:.3f} at S/N>=8, "
          f"{out['completeness_snr_5_5_to_6']:.3f} at S/N 5.5-6; spurious/4k det after cut "
          f"{out['spurious_per_4k_detector_after_reliability_cut']}; astrometry "
          f"{out['astrometry_snr_ge_20']['rms_total_mas']} mas; photometric bias "
          f"{out['photometry_snr_ge_20']['median_bias']:+.4f}; purity {out['association_purity']['mean']:.4f}")


if __name__ == "__main__":
    main()
