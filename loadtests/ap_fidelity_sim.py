"""Alert Production science fidelity on the GalSim camera simulator's raws (``nightshift.obs.sim``).

``--visits`` visits (default 20) of one ``LSSTCam-sim`` detector over ``--fields``
revisited fields (default 4, visited in turn), r band, 30 s. Each visit is a raw
rendered by :func:`nightshift.obs.sim.render_detector` (Kolmogorov PSF at the visit's
seeing, stars and exponential-disc galaxies from the simulator's seeded sky, variable
stars, sky, flat-field pattern, bias structure, hot/dead columns, cosmic rays, satellite
trails at the simulator's rate, gains, read noise, overscan, uint16). The simulator's own
transients are replaced by ``--transients`` per field at fixed positions, "appearing"
(always on), whose peak magnitude is redrawn each visit so that the expected
difference-image S/N is uniform in 3–50; the truth is the simulator's truth rows
(``snr_diff``, ``flux_e``, ``mag``, ``x``, ``y``, ``id``), written to ``--workdir``/truth.parquet
and read back for the measurement.

Calibrations: the simulator's ``bias_structure`` (× gain) and ``flat_pattern`` as master
bias and flat, its hot/dead columns as the defect mask. Template per field: the static sky
rendered as ``make_templates`` does (Kolmogorov 0.6" seeing, 10× deeper, north up, 0.2"/px)
over the field's footprint. Reference catalog: the simulator's non-variable stars (r < 23).
Pointing: the true WCS with a random offset of up to 3" (15 px). Each visit runs
``nightshift.ap.process_detector`` with the field's DIA objects from earlier visits
preloaded (an in-memory APDB). Science seeing: log-normal around 0.8" clipped to
0.65–1.4" (the template's 0.6" must be sharper for Alard–Lupton convolution of the template).

Measured as ``loadtests/ap_fidelity.py``: completeness vs true S/N (table, PNG), spurious
DIA sources per detector before/after the reliability cut (detections of the simulator's
variable stars are counted apart: they are real variability, not spurious), astrometric
rms and photometric bias at S/N ≥ 20, association purity per truth object. One JSON
document, then one summary line.

Usage::

    .venv/bin/python loadtests/ap_fidelity_sim.py [--visits 20] [--fields 4] [--size 4096] \
        [--plot docs/science_completeness_sim.png] [--out loadtests/results/ap_fidelity_sim-2026-12-06.json]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from astropy.table import Table  # noqa: E402
from astropy.time import Time, TimeDelta  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from nightshift.ap import ApConfig, IsrConfig, PsfModel, process_detector  # noqa: E402
from nightshift.butler.formatters import Exposure  # noqa: E402
from nightshift.obs import get_instrument  # noqa: E402
from nightshift.obs.sim import Observation, bias_structure, flat_pattern, render_detector, sky_catalog  # noqa: E402
from nightshift.obs.sim._catalog import SkyCatalog  # noqa: E402
from nightshift.obs.sim._render import SKY_MAGS, TEMPLATE_DEPTH, ZERO_POINTS  # noqa: E402
from nightshift.obs.sim._stamps import add_stamps, stamp_bank  # noqa: E402

RELIABILITY_CUT = 0.5
SNR_BINS = [3, 4, 5, 5.5, 6, 7, 8, 10, 15, 20, 30, 50.01]
DETECTOR = 94  # R22_S11, the centre of the focal plane
BAND = "r"
TEMPLATE_SEEING = 0.6


def _template(catalog: SkyCatalog, ra0: float, dec0: float, side: int, scale: float, seed: int) -> Exposure:
    """The static sky as ``make_templates`` renders it, over a square of ``side`` pixels around (ra0, dec0)."""
    k = scale / 3600
    wcs = WCS({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra0, "CRVAL2": dec0,
               "CRPIX1": (side + 1) / 2, "CRPIX2": (side + 1) / 2, "CD1_1": -k, "CD1_2": 0.0, "CD2_1": 0.0,
               "CD2_2": k, "CUNIT1": "deg", "CUNIT2": "deg"})
    bank = stamp_bank(TEMPLATE_SEEING, round(scale, 4))
    zp = ZERO_POINTS[BAND]
    light = np.zeros((side, side), dtype=np.float32)
    sky = 10 ** (-0.4 * (SKY_MAGS[BAND] - zp)) * scale**2 * 30.0
    x, y = wcs.all_world2pix(catalog.ra, catalog.dec, 0)
    flux = 10 ** (-0.4 * (catalog.mag_r - zp)) * 30.0
    stars, gals = catalog.kind == "star", catalog.kind == "galaxy"
    add_stamps(light, x[stars], y[stars], flux[stars], bank.psf)
    size, shape = bank.galaxy_index(catalog.hlr[gals], catalog.e1[gals], catalog.e2[gals])
    add_stamps(light, np.round(x[gals]), np.round(y[gals]), flux[gals],
               bank.galaxies.reshape(-1, *bank.galaxies.shape[-2:]), size * len(bank.shapes) + shape)
    rng = np.random.default_rng([seed, 7])
    variance = ((light + sky) / TEMPLATE_DEPTH).astype(np.float32)
    image = light + np.sqrt(variance) * rng.standard_normal(light.shape, np.float32)
    exp = Exposure(image=image.astype(np.float32), variance=variance, wcs=wcs, psf=bank.psf[2, 2])
    # pixels are electrons per 30 s at the band's zero point (1 e-/s); nJy per count:
    exp.metadata["NJYPERCT"] = 10 ** (0.4 * (31.4 - zp)) / 30.0
    return exp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visits", type=int, default=20)
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--transients", type=int, default=80)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--cr-factor", type=float, default=0.5,
                    help="cosmic-ray test width = this x the visit's Gaussian-equivalent PSF sigma (from its seeing): "
                         "Kolmogorov cores are sharper than a Gaussian's; at 0.8 about 8%% of bright star centres "
                         "are flagged, at 0.5 under 1%%")
    ap.add_argument("--no-galaxies", action="store_true",
                    help="diagnostic: drop the simulator's galaxies (science and template) to see what they cost")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--analyse-only", action="store_true",
                    help="measure from --workdir's truth.parquet and dia_sources.parquet (e.g. of an interrupted run)")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ap_fidelity_sim_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.analyse_only:
        finish(workdir, args, {})
        return
    camera = get_instrument("LSSTCam-sim", detector_size=args.size).camera
    det = camera[DETECTOR]
    scale = camera.plate_scale * det.pixel_size
    n = det.width
    zp = ZERO_POINTS[BAND]
    gain_map = np.zeros((det.height, det.width), np.float32)
    for amp in det.amplifiers:
        x0, y0, x1, y1 = amp.bbox
        gain_map[y0:y1, x0:x1] = amp.gain
    bias_e = bias_structure(camera, DETECTOR) * gain_map
    flat = flat_pattern(camera, DETECTOR)
    defects = np.zeros((det.height, det.width), bool)
    defects[:, np.random.default_rng([79, DETECTOR]).integers(0, det.width, 3)] = True  # the simulator's columns
    rn_e = float(np.mean([a.read_noise for a in det.amplifiers]))
    sky_e = 10 ** (-0.4 * (SKY_MAGS[BAND] - zp)) * scale**2 * 30.0
    t_start = Time("2026-12-07T02:00:00", scale="tai")
    rng0 = np.random.default_rng(args.seed)
    fields = []
    var_rows: list[dict[str, float]] = []
    for f in range(args.fields):
        ra0, dec0 = 150.0 + 3.5 * f, 2.0
        sky_angle = float(rng0.uniform(-3, 3))  # near 0: a north-up template of modest size covers it
        wcs0 = WCS(camera.wcs_header(DETECTOR, ra0, dec0, sky_angle))
        cra, cdec = (float(v[0]) for v in wcs0.all_pix2world([(n - 1) / 2], [(n - 1) / 2], 0))
        radius = math.hypot(n, n) * scale / 3600 / 2 + 0.02
        cat = sky_catalog(args.seed, cra, cdec, radius)
        if args.no_galaxies:
            keep = cat.kind != "galaxy"
            cat = dataclasses.replace(cat, **{k: getattr(cat, k)[keep] for k in (
                "kind", "id", "ra", "dec", "mag_r", "colour", "hlr", "e1", "e2", "var_amp", "var_period",
                "var_phase")})
        tx, ty = rng0.uniform(60, n - 60, args.transients), rng0.uniform(60, n - 60, args.transients)
        tra, tdec = wcs0.all_pix2world(tx, ty, 0)
        t0 = time.perf_counter()
        template = _template(cat, cra, cdec, n + 500, scale, args.seed + f)
        print(f"field {f}: {len(cat.ra)} objects, template {template.image.shape} in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        stars = (cat.kind == "star") & (cat.var_amp == 0) & (cat.mag_r < 23)
        refcat = Table({"ra": cat.ra[stars], "dec": cat.dec[stars], "mag": cat.mag_r[stars]})
        var = (cat.kind == "star") & (cat.var_amp > 0)
        var_rows.extend({"ra": a, "dec": b} for a, b in zip(cat.ra[var], cat.dec[var], strict=True))
        fields.append({"ra0": ra0, "dec0": dec0, "sky_angle": sky_angle, "cat": cat, "tra": tra, "tdec": tdec,
                       "template": template, "refcat": refcat, "objects": None, "history": None})
    pq.write_table(pa.Table.from_pylist(var_rows), workdir / "variables.parquet")
    truth: list[dict[str, Any]] = []
    det_rows: list[dict[str, Any]] = []
    per_visit: list[dict[str, Any]] = []
    step_cpu: dict[str, list[float]] = {}
    cut_totals: dict[str, int] = {}
    t_all = time.perf_counter()
    for v in range(args.visits):
        fi = v % args.fields
        fld = fields[fi]
        rng = np.random.default_rng([args.seed, v])
        seeing = float(np.clip(rng.lognormal(math.log(0.8), 0.2), 0.65, 1.4))
        dra, ddec = rng.uniform(-20, 20, 2) / 3600  # a small dither
        obs = Observation(instrument="LSSTCam-sim", day_obs=20261206, seq_num=v + 1,
                          begin=(t_start + TimeDelta(90.0 * v, format="sec")).isot, physical_filter="r_57",
                          ra=fld["ra0"] + dra, dec=fld["dec0"] + ddec, sky_angle=fld["sky_angle"],
                          exposure_time=30.0, seeing=seeing, target=f"field{fi}")
        bank = stamp_bank(round(seeing, 3), round(scale, 4))
        neff = 4 * math.pi * bank.sigma_pixels**2
        snr_target = rng.uniform(3, 50, args.transients)
        flux_e = snr_target * math.sqrt(neff * (sky_e + rn_e**2) * (1 + 1 / TEMPLATE_DEPTH))
        cat = dataclasses.replace(
            fld["cat"], t_id=np.arange(args.transients) + 1_000_000 * (fi + 1), t_ra=fld["tra"], t_dec=fld["tdec"],
            t_kind=np.full(args.transients, "appearing"), t_t0=np.zeros(args.transients),
            t_peak=zp - 2.5 * np.log10(flux_e / 30.0), t_tau=np.ones(args.transients))
        t0 = time.perf_counter()
        raw = render_detector(obs, camera, DETECTOR, seed=args.seed, catalog=cat)
        render_s = time.perf_counter() - t0
        truth_wcs = WCS(camera.wcs_header(DETECTOR, obs.ra, obs.dec, obs.sky_angle))
        pointing = truth_wcs.deepcopy()
        pointing.wcs.crval = pointing.wcs.crval + rng.uniform(-3, 3, 2) / 3600 * np.array(
            [1 / math.cos(math.radians(obs.dec)), 1])
        visit = 100 + v
        for r in raw.truth:
            truth.append({**r, "visit": visit, "field": fi})
        cfg = ApConfig(isr=IsrConfig(cr_psf_sigma=args.cr_factor * seeing / 2.3548 / scale))
        res = process_detector(raw.adu.astype(np.float32), det, visit=visit, midpoint_mjd=obs.mjd, band=BAND,
                               pointing_wcs=pointing, refcat=fld["refcat"], template=fld["template"],
                               template_psf=PsfModel(fld["template"].psf), preloaded_objects=fld["objects"],
                               preloaded_sources=fld["history"], bias=bias_e, flat=flat, defects=defects, config=cfg)
        for k, val in res.cpu_timings.items():
            step_cpu.setdefault(k, []).append(val)
        for k, val in res.dia_sources.cut_counts.items():
            cut_totals[k] = cut_totals.get(k, 0) + val
        src = res.association.sources
        for i in range(src.num_rows):
            det_rows.append({"visit": visit, "field": fi, "ra": src["ra"][i].as_py(), "dec": src["dec"][i].as_py(),
                             "x": src["x"][i].as_py(), "y": src["y"][i].as_py(),
                             "psfFlux": src["psfFlux"][i].as_py(), "reliability": src["reliability"][i].as_py(),
                             "isNegative": bool(src["isNegative"][i].as_py()),
                             "diaObjectId": int(src["diaObjectId"][i].as_py())})
        new_objs = res.association.objects
        if fld["objects"] is None:
            fld["objects"] = new_objs
        else:
            keep = pc.invert(pc.is_in(fld["objects"]["diaObjectId"], new_objs["diaObjectId"]))
            fld["objects"] = pa.concat_tables([fld["objects"].filter(keep), new_objs.cast(fld["objects"].schema)])
        fld["history"] = src if fld["history"] is None else pa.concat_tables([fld["history"], src])
        per_visit.append({"visit": visit, "field": fi, "seeing": round(seeing, 3), "satellite": raw.satellite,
                          "cosmic_rays": raw.cosmic_rays, "dia_sources": src.num_rows,
                          "astrometry_rms_arcsec": res.calib.calexp.metadata.get("ASTRMS"),
                          "render_s": round(render_s, 2), "cpu_s": round(res.cpu_timings["total"], 2)})
        print(f"visit {visit}: {per_visit[-1]}", file=sys.stderr)
        # after every visit, so an interrupted run can still be measured (--analyse-only)
        pq.write_table(pa.Table.from_pylist(truth), workdir / "truth.parquet")
        pq.write_table(pa.Table.from_pylist(det_rows), workdir / "dia_sources.parquet")
        (workdir / "run.json").write_text(json.dumps({
            "per_visit": per_visit, "artefact_cuts_total": cut_totals, "pixel_scale_arcsec": scale,
            "median_cpu_s_per_step": {k: round(float(np.median(v)), 3) for k, v in step_cpu.items()},
            "wall_s": round(time.perf_counter() - t_all, 1)}, default=float))
    finish(workdir, args, {})


def finish(workdir: Path, args: argparse.Namespace, extra: dict[str, Any]) -> None:
    """Measure from the files in ``workdir``, print and write the result."""
    run = json.loads((workdir / "run.json").read_text())
    out = analyse(pq.read_table(workdir / "truth.parquet"), pq.read_table(workdir / "dia_sources.parquet"),
                  pq.read_table(workdir / "variables.parquet"), run["pixel_scale_arcsec"], args)
    out["visits"] = len(run["per_visit"])
    out.update(run)
    out["workdir"] = str(workdir)
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"ap_fidelity_sim: completeness {out['completeness_snr_ge_8']} at S/N>=8, "
          f"{out['completeness_snr_5_5_to_6']} at S/N 5.5-6; spurious/det after cut "
          f"{out['spurious_per_detector_after_reliability_cut']}; astrometry "
          f"{out['astrometry_snr_ge_20']['rms_total_mas']} mas; photometric bias "
          f"{out['photometry_snr_ge_20']['median_bias']}; purity {out['association_purity']['mean']}")


def _nearest(ra: np.ndarray, dec: np.ndarray, ra2: np.ndarray, dec2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance (arcsec) to the nearest (ra2, dec2) of each (ra, dec)."""
    from scipy.spatial import cKDTree

    def unit(r: np.ndarray, d: np.ndarray) -> np.ndarray:
        r, d = np.radians(r), np.radians(d)
        return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)

    if len(ra2) == 0:
        return np.full(len(ra), -1), np.full(len(ra), np.inf)
    dist, idx = cKDTree(unit(np.asarray(ra2), np.asarray(dec2))).query(unit(np.asarray(ra), np.asarray(dec)))
    return idx, np.degrees(2 * np.arcsin(np.clip(dist / 2, 0, 1))) * 3600


def analyse(truth: pa.Table, dia: pa.Table, variables: pa.Table, scale: float,
            args: argparse.Namespace) -> dict[str, Any]:
    t = truth.to_pydict()
    d = dia.to_pydict()
    match_r = 1.5 * scale  # arcsec
    rows = []
    for vis in sorted(set(t["visit"])):
        ti = [i for i, v in enumerate(t["visit"]) if v == vis]
        di = np.array([i for i, v in enumerate(d["visit"]) if v == vis], int)
        dra = np.array(d["ra"])[di] if di.size else np.zeros(0)
        ddec = np.array(d["dec"])[di] if di.size else np.zeros(0)
        neg = np.array(d["isNegative"])[di] if di.size else np.zeros(0, bool)
        for i in ti:
            if di.size:
                sep = _nearest(np.array([t["ra"][i]]), np.array([t["dec"][i]]), dra, ddec)
                j, s = int(sep[0][0]), float(sep[1][0])
            else:
                j, s = -1, np.inf
            hit = j >= 0 and s < match_r and not neg[j]
            row = {"visit": vis, "id": t["id"][i], "snr": t["snr_diff"][i], "detected": hit,
                   "reliable": bool(hit and d["reliability"][di[j]] >= RELIABILITY_CUT)}
            if hit:
                k = di[j]
                row.update(dra_mas=(d["ra"][k] - t["ra"][i]) * math.cos(math.radians(t["dec"][i])) * 3.6e6,
                           ddec_mas=(d["dec"][k] - t["dec"][i]) * 3.6e6,
                           flux_ratio=d["psfFlux"][k] / 10 ** (-0.4 * (t["mag"][i] - 31.4)),
                           object=d["diaObjectId"][k])
            rows.append(row)
    # spurious: no truth transient within 3 px; detections of variable stars counted apart
    n_visits = len(set(d["visit"])) or 1
    tra, tdec = np.array(t["ra"]), np.array(t["dec"])
    var_ra = variables["ra"].to_numpy()
    var_dec = variables["dec"].to_numpy()
    dra_all, ddec_all = np.array(d["ra"]), np.array(d["dec"])
    _, s_truth = _nearest(dra_all, ddec_all, tra, tdec)
    _, s_var = _nearest(dra_all, ddec_all, var_ra, var_dec)
    rel = np.array(d["reliability"]) >= RELIABILITY_CUT
    not_truth = s_truth > 3 * scale
    variable = not_truth & (s_var < 3 * scale)
    spur = not_truth & ~variable
    snr = np.array([r["snr"] for r in rows])
    det_ = np.array([r["detected"] for r in rows])
    rel_ = np.array([r["reliable"] for r in rows])
    table = []
    for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True):
        sel = (snr >= lo) & (snr < hi)
        table.append({"snr_lo": lo, "snr_hi": round(hi, 1), "n": int(sel.sum()),
                      "completeness": round(float(det_[sel].mean()), 4) if sel.any() else None,
                      "completeness_after_reliability_cut": round(float(rel_[sel].mean()), 4) if sel.any() else None})
    bright = [r for r in rows if r["detected"] and r["snr"] >= 20]
    dra = np.array([r["dra_mas"] for r in bright])
    ddec = np.array([r["ddec_mas"] for r in bright])
    ratio = np.array([r["flux_ratio"] for r in bright])
    by_truth: dict[int, list[int]] = {}
    for r in rows:
        if r["detected"]:
            by_truth.setdefault(r["id"], []).append(r["object"])
    purity = [np.unique(o, return_counts=True)[1].max() / len(o) for o in by_truth.values() if len(o) >= 2]
    out: dict[str, Any] = {
        "benchmark": "ap_fidelity_sim", "simulator": "nightshift.obs.sim (GalSim)", "camera": "LSSTCam-sim",
        "detector": DETECTOR, "detector_size": args.size, "pixel_scale_arcsec": scale, "visits": args.visits,
        "fields": args.fields, "transients_per_field": args.transients, "reliability_cut": RELIABILITY_CUT,
        "injections": len(rows), "completeness": table,
        "completeness_snr_ge_8": round(float(det_[snr >= 8].mean()), 4),
        "completeness_snr_ge_8_after_cut": round(float(rel_[snr >= 8].mean()), 4),
        "completeness_snr_5_5_to_6": round(float(det_[(snr >= 5.5) & (snr < 6)].mean()), 4),
        "spurious_per_detector": round(float(spur.sum()) / n_visits, 2),
        "spurious_per_detector_after_reliability_cut": round(float((spur & rel).sum()) / n_visits, 2),
        "variable_star_detections_per_detector": round(float(variable.sum()) / n_visits, 2),
        "astrometry_snr_ge_20": {"n": int(dra.size),
                                 "rms_ra_mas": round(float(np.sqrt(np.mean(dra**2))), 1) if dra.size else None,
                                 "rms_dec_mas": round(float(np.sqrt(np.mean(ddec**2))), 1) if dra.size else None,
                                 "rms_total_mas": round(float(np.sqrt(np.mean(dra**2 + ddec**2))), 1)
                                 if dra.size else None},
        "photometry_snr_ge_20": {"n": int(ratio.size),
                                 "median_bias": round(float(np.median(ratio) - 1), 4) if ratio.size else None,
                                 "scatter": round(float(1.4826 * np.median(np.abs(ratio - np.median(ratio)))), 4)
                                 if ratio.size else None},
        "association_purity": {"truth_objects": len(purity),
                               "mean": round(float(np.mean(purity)), 4) if purity else None,
                               "fraction_pure": round(float(np.mean(np.array(purity) == 1.0)), 4) if purity else None},
        "dia_sources_total": len(d["visit"]),
    }
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        mids = [0.5 * (r["snr_lo"] + r["snr_hi"]) for r in table]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(mids, [r["completeness"] for r in table], "o-", label="all DIA sources")
        ax.plot(mids, [r["completeness_after_reliability_cut"] for r in table], "s--",
                label=f"reliability >= {RELIABILITY_CUT}")
        for yv in (0.5, 0.95):
            ax.axhline(yv, color="grey", lw=0.5)
        for xv in (5.5, 8):
            ax.axvline(xv, color="grey", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("expected S/N in the difference image (simulator truth)")
        ax.set_ylabel("completeness")
        ax.set_title(f"GalSim simulator: {len(set(t['visit']))} visits, {len(rows)} injections")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    return out


if __name__ == "__main__":
    main()
