"""DIA source detection and measurement on a difference image.

Detection: a matched filter (Gaussian of the PSF's sigma) of the difference
divided by the filtered variance gives a significance image; connected
pixels beyond ``±nsigma`` are footprints, their extreme pixel a peak
(positive and negative sources alike).

Measurement, vectorised over all sources: Gaussian-weighted centroid, PSF
flux and error (linear fit of the PSF model), S/N, adaptive second moments,
aperture flux, pixel flags from the mask planes, PSF flux on the science
image and on the matched template at the same position.

Dipoles: a positive and a negative source closer than
``dipole_max_separation_fwhm`` are fitted jointly with two PSFs (positions
and fluxes) and merged into one source with ``isDipole`` set when the two
lobes have comparable flux.

Reliability (``reliabilityVersion = "nsheur1"``): a product of
factors in [0, 1] — PSF likeness of the size (``exp(-½ (ln q / 0.35)²)``
with ``q`` the ratio of the source's second-moment trace to the PSF's),
goodness of the PSF fit (``exp(-max(0, χ²/ν − 2) / 4)``), the unmasked
fraction of the PSF footprint, a logistic in the PSF-fit S/N
(``1 / (1 + exp(-(|S/N| − 5) / 0.5))``: matched-filter peaks whose PSF fit
is weak) and a penalty for sitting on a much brighter static source
(``1 / (1 + (|templateFlux / psfFlux| / 20)²)``: subtraction residuals of
bright stars) — times 0.3 for a dipole. Its separation of real and bogus is
measured in ``docs/science.md``.

Artefact cuts (``cut_artefacts``): sources with a cosmic ray, bad pixel,
saturation or no data at their centre, sources within ``edge_margin`` of the
image border, and trails (elongation ``> trail_elongation`` and size ``>
trail_min_size × PSF``) are removed; their counts are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from scipy import ndimage, optimize
from scipy.spatial import cKDTree

from ..apdb import make_source_ids
from ..butler.formatters import Exposure
from ._exceptions import ApInputError
from ._masks import MaskPlane
from ._measure import gaussian_centroid, psf_photometry, stamps, weighted_moments
from ._psf import PsfModel
from ._rows import apdb_rows

__all__ = ["RELIABILITY_VERSION", "DiaDetectConfig", "DiaSources", "detect_and_measure", "reliability_score"]

#: Version tag written to ``reliabilityVersion``.
RELIABILITY_VERSION = "nsheur1"  # the APDB column holds 7 characters (apdb.yaml)


@dataclass(frozen=True)
class DiaDetectConfig:
    """Settings of :func:`detect_and_measure`.

    Attributes
    ----------
    nsigma : float
        Detection threshold of the matched-filter significance.
    dipole_max_separation_fwhm : float
        Largest lobe separation (in PSF FWHM) of a dipole pair.
    dipole_flux_balance : float
        A dipole needs ``|f+ − f−| / (f+ + f−)`` below this.
    edge_margin : int
        Pixels from the border within which a source is an edge source.
    trail_elongation, trail_min_size : float
        Trail cut: axis ratio above and size (sqrt of the moment trace over the PSF's) above these.
    cut_artefacts : bool
        Remove artefacts instead of only flagging them.
    max_sources : int
        Cap on detections (the most significant are kept), a guard against a failed subtraction.
    """

    nsigma: float = 5.0
    dipole_max_separation_fwhm: float = 2.0
    dipole_flux_balance: float = 0.6
    edge_margin: int = 8
    trail_elongation: float = 2.5
    trail_min_size: float = 1.5
    cut_artefacts: bool = True
    max_sources: int = 50000


@dataclass
class DiaSources:
    """Output of :func:`detect_and_measure`.

    Attributes
    ----------
    table : pyarrow.Table
        DiaSource rows (APDB column names and types; ``diaObjectId`` not yet set). Fluxes in nJy.
    cut_counts : dict of str to int
        Sources removed by each artefact cut.
    diagnostics : dict
        Detections before cuts, positive / negative, dipoles.
    """

    table: pa.Table
    cut_counts: dict[str, int] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)


def reliability_score(size_ratio: NDArray[np.floating], chi2_per_dof: NDArray[np.floating],
                      good_fraction: NDArray[np.floating], is_dipole: NDArray[np.bool_],
                      snr: NDArray[np.floating] | None = None,
                      template_ratio: NDArray[np.floating] | None = None) -> NDArray[np.float64]:
    """The ``nsheur1`` real/bogus score in [0, 1] (see the module docstring)."""
    q = np.clip(np.nan_to_num(np.asarray(size_ratio, float), nan=10.0), 1e-3, None)
    chi = np.nan_to_num(np.asarray(chi2_per_dof, float), nan=100.0)
    score = (np.exp(-0.5 * (np.log(q) / 0.35) ** 2) * np.exp(-np.clip(chi - 2.0, 0, None) / 4.0)
             * np.clip(np.asarray(good_fraction, float), 0, 1))
    if snr is not None:
        s = np.abs(np.nan_to_num(np.asarray(snr, float)))
        score = score / (1.0 + np.exp(-(s - 5.0) / 0.5))
    if template_ratio is not None:
        t = np.nan_to_num(np.asarray(template_ratio, float), nan=0.0)
        score = score / (1.0 + (t / 20.0) ** 2)
    return np.asarray(np.where(is_dipole, 0.3 * score, score), np.float64)


def _significance(diff: Exposure, sigma: float) -> NDArray[np.float32]:
    img = np.asarray(diff.image, np.float32)
    var = np.asarray(diff.variance, np.float32)
    bad = ((np.asarray(diff.mask) & int(MaskPlane.NO_DATA)) != 0) | ~np.isfinite(var)
    finite_var = var[~bad]
    typical = np.float32(np.median(finite_var)) if finite_var.size else np.float32(1.0)
    d = np.where(bad, np.float32(0), img).astype(np.float32, copy=False)
    v = np.where(bad, typical, var).astype(np.float32, copy=False)
    num = ndimage.gaussian_filter(d, sigma, mode="constant", truncate=3.0)
    # G ⊛ D / sqrt(G² ⊛ V), with G² ⊛ V ≈ V Σ G² = V / (4π s²): the variance is smooth on the PSF scale
    # except on bright stars, where it only lowers the significance slightly (a conservative error)
    den = v / np.float32(4 * np.pi * sigma**2)
    sig = num / np.sqrt(den)
    sig[bad] = 0.0
    return np.asarray(sig, np.float32)


def _peaks(sig: NDArray[np.float32], threshold: float, sign: int) -> tuple[NDArray[np.float64], ...]:
    """Peak (x, y, value, footprint pixels) of each connected region beyond ``±threshold``.

    Works on the above-threshold pixels only (sort by label then value), not on the whole image.
    """
    above = sig > threshold if sign > 0 else sig < -threshold
    labels, n = ndimage.label(above)
    if n == 0:
        z = np.zeros(0)
        return z, z, z, z
    flat = np.flatnonzero(above)
    lab = labels.ravel()[flat]
    val = sig.ravel()[flat] * sign
    order = np.lexsort((-val, lab))
    first = np.r_[0, np.flatnonzero(np.diff(lab[order])) + 1]
    best = flat[order[first]]
    py, px = np.divmod(best, sig.shape[1])
    npix = np.bincount(lab, minlength=n + 1)[1:]
    return px.astype(np.float64), py.astype(np.float64), val[order[first]].astype(np.float64), npix.astype(
        np.float64)


def _fit_dipole(diff: Exposure, psf: PsfModel, xp: float, yp: float, xn: float, yn: float
                ) -> tuple[float, float, float, float, float, float, float, int]:
    """Two-PSF fit ``f+ P(r − r+) − f− P(r − r−)``; returns (x+, y+, x−, y−, f+, f−, χ², ndata)."""
    cx, cy = int(round(0.5 * (xp + xn))), int(round(0.5 * (yp + yn)))
    h = psf.half + int(np.ceil(0.5 * np.hypot(xp - xn, yp - yn))) + 1
    d, outside = stamps(np.asarray(diff.image), np.array([cx]), np.array([cy]), h)
    v, _ = stamps(np.asarray(diff.variance), np.array([cx]), np.array([cy]), h, fill=np.inf)
    m, _ = stamps(np.asarray(diff.mask), np.array([cx]), np.array([cy]), h, fill=int(MaskPlane.NO_DATA))
    good = (~outside[0]) & ((m[0] & int(MaskPlane.unusable())) == 0) & np.isfinite(v[0]) & (v[0] > 0)
    dd = np.asarray(d[0], float)[good]
    w = 1.0 / np.sqrt(np.asarray(v[0], float)[good])

    def model_columns(p: NDArray[np.float64]) -> NDArray[np.float64]:
        imgs = psf.images_at(np.array([p[0] - cx, p[2] - cx]), np.array([p[1] - cy, p[3] - cy]), half=h)
        return np.column_stack([imgs[0][good], -imgs[1][good]]).astype(np.float64)

    def resid(p: NDArray[np.float64]) -> NDArray[np.float64]:
        a = model_columns(p)
        f, *_ = np.linalg.lstsq(a * w[:, None], dd * w, rcond=None)
        return np.asarray((dd - a @ f) * w, np.float64)

    p0 = np.array([xp, yp, xn, yn], float)
    sol = optimize.least_squares(resid, p0, bounds=(p0 - 2.0, p0 + 2.0), max_nfev=60)
    a = model_columns(sol.x)
    f, *_ = np.linalg.lstsq(a * w[:, None], dd * w, rcond=None)
    chi2 = float(np.sum(resid(sol.x) ** 2))
    return (float(sol.x[0]), float(sol.x[1]), float(sol.x[2]), float(sol.x[3]), float(f[0]), float(f[1]), chi2,
            int(good.sum()))


def detect_and_measure(
    difference: Exposure,
    psf: PsfModel,
    *,
    visit: int,
    detector: int,
    midpoint_mjd: float,
    band: str | None = None,
    science: Exposure | None = None,
    template: Exposure | None = None,
    exposure_time: float | None = None,
    time_processed_mjd: float | None = None,
    config: DiaDetectConfig | None = None,
) -> DiaSources:
    """Detect and measure DIA sources; return APDB ``DiaSource`` rows.

    Parameters
    ----------
    difference : Exposure
        The difference image (science WCS; ``NJYPERCT`` in metadata converts counts to nJy, default 1).
    psf : PsfModel
        The science PSF.
    visit, detector : int
        Ids; ``diaSourceId = make_source_ids(visit, detector, index)`` with ``index`` the row number
        after sorting by (y, x) of the peak, so a rerun gives the same ids.
    midpoint_mjd : float
        Exposure midpoint (MJD TAI).
    band : str, optional
        Filter band (``u g r i z y``).
    science, template : Exposure, optional
        Calibrated science and PSF-matched template, for ``scienceFlux`` and ``templateFlux``.
    exposure_time : float, optional
        Seconds.
    time_processed_mjd : float, optional
        Processing time (default: ``midpoint_mjd``, which keeps reruns byte-identical).
    config : DiaDetectConfig, optional
        Settings.

    Returns
    -------
    DiaSources
        The rows, artefact cut counts and diagnostics.

    Raises
    ------
    ApInputError
        If the difference image has no WCS.
    """
    cfg = config or DiaDetectConfig()
    if difference.wcs is None:
        raise ApInputError("the difference image needs the science WCS to give DIA sources sky positions")
    scale = float(difference.metadata.get("NJYPERCT", 1.0))
    sigma = psf.sigma
    img = np.asarray(difference.image, np.float32)
    mask = np.asarray(difference.mask)
    var = np.asarray(difference.variance, np.float32)
    ny, nx = img.shape
    sig = _significance(difference, sigma)
    xs: list[NDArray[np.float64]] = []
    ys: list[NDArray[np.float64]] = []
    pk: list[NDArray[np.float64]] = []
    npx: list[NDArray[np.float64]] = []
    sg: list[NDArray[np.int8]] = []
    for sign in (1, -1):
        px, py, peak, npix = _peaks(sig, cfg.nsigma, sign)
        xs.append(px)
        ys.append(py)
        pk.append(peak)
        npx.append(npix)
        sg.append(np.full(px.size, sign, np.int8))
    x, y, peak, npix = (np.concatenate(a).astype(np.float64) for a in (xs, ys, pk, npx))
    sign_arr = np.concatenate(sg).astype(np.int8)
    diag: dict[str, Any] = {"n_positive": int((sign_arr > 0).sum()), "n_negative": int((sign_arr < 0).sum())}
    if x.size > cfg.max_sources:
        keep = np.argsort(-peak)[: cfg.max_sources]
        x, y, peak, npix, sign_arr = x[keep], y[keep], peak[keep], npix[keep], sign_arr[keep]
        diag["truncated_to"] = cfg.max_sources
    # deterministic order: by peak pixel (y, x)
    order = np.lexsort((x, y))
    x, y, peak, npix, sign_arr = x[order], y[order], peak[order], npix[order], sign_arr[order]
    n = x.size
    # -- dipoles: pair positive and negative peaks
    is_dipole = np.zeros(n, bool)
    dipole: dict[str, NDArray[np.float64]] = {k: np.full(n, np.nan) for k in
                                               ("mean", "diff", "length", "angle", "chi2", "ndata")}
    attempted = np.zeros(n, bool)
    drop = np.zeros(n, bool)
    posi, negi = np.nonzero(sign_arr > 0)[0], np.nonzero(sign_arr < 0)[0]
    if posi.size and negi.size:
        tree = cKDTree(np.column_stack([x[negi], y[negi]]))
        dist, j = tree.query(np.column_stack([x[posi], y[posi]]),
                             distance_upper_bound=cfg.dipole_max_separation_fwhm * psf.fwhm)
        used: set[int] = set()
        for a, (dd, jj) in enumerate(zip(dist, j, strict=True)):
            if not np.isfinite(dd) or int(jj) in used:
                continue
            used.add(int(jj))
            ip, ineg = int(posi[a]), int(negi[int(jj)])
            x1, y1, x2, y2, fp, fn, chi2, nd = _fit_dipole(difference, psf, x[ip], y[ip], x[ineg], y[ineg])
            attempted[ip] = True
            balance = abs(fp - fn) / max(fp + fn, 1e-30)
            dipole["mean"][ip] = 0.5 * (fp + fn) * scale
            dipole["diff"][ip] = (fp - fn) * scale
            dipole["length"][ip] = np.hypot(x1 - x2, y1 - y2)
            dipole["angle"][ip] = np.degrees(np.arctan2(y1 - y2, x1 - x2))
            dipole["chi2"][ip] = chi2
            dipole["ndata"][ip] = nd
            if fp > 0 and fn > 0 and balance < cfg.dipole_flux_balance:
                is_dipole[ip] = True
                drop[ineg] = True
                x[ip], y[ip] = 0.5 * (x1 + x2), 0.5 * (y1 + y2)
    diag["n_dipoles"] = int(is_dipole.sum())
    keep = ~drop
    x, y, peak, npix, sign_arr = x[keep], y[keep], peak[keep], npix[keep], sign_arr[keep]
    is_dipole, attempted = is_dipole[keep], attempted[keep]
    dipole = {k: v[keep] for k, v in dipole.items()}
    n = x.size
    # -- measurement
    s = sign_arr.astype(np.float64)
    cx, cy, cfail = gaussian_centroid(img, x, y, sigma, sign=s)
    cx = np.where(is_dipole, x, cx)
    cy = np.where(is_dipole, y, cy)
    cfail &= ~is_dipole
    phot = psf_photometry(img, var, mask, cx, cy, psf)
    snr = np.abs(phot.flux) / phot.flux_err
    ixx, iyy, ixy, sfail = weighted_moments(img, cx, cy, sigma, sign=s)
    pxx, pyy, pxy = psf.moments()
    size_ratio = (ixx + iyy) / (pxx + pyy)
    tr = ixx + iyy
    disc = np.sqrt(np.clip((ixx - iyy) ** 2 + 4 * ixy**2, 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        elong = np.sqrt((tr + disc) / np.clip(tr - disc, 1e-6, None))
    r_ap = max(3.0, 2.5 * sigma)
    h_ap = int(np.ceil(r_ap))
    ixi, iyi = np.round(cx).astype(np.int64), np.round(cy).astype(np.int64)
    d_ap, out_ap = stamps(img, ixi, iyi, h_ap)
    v_ap, _ = stamps(var, ixi, iyi, h_ap, fill=np.inf)
    off = np.arange(-h_ap, h_ap + 1)
    in_ap = (off[None, :, None] + (iyi - cy)[:, None, None]) ** 2 + (off[None, None, :] + (ixi - cx)[:, None, None]
                                                                      ) ** 2 <= r_ap**2
    ap_flux = np.where(in_ap, d_ap, 0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore"):
        ap_err = np.sqrt(np.where(in_ap & np.isfinite(v_ap), v_ap, 0).sum(axis=(1, 2)))
    ap_trunc = np.asarray((in_ap & out_ap).any(axis=(1, 2)), bool)
    # good fraction of the PSF footprint
    m_st, out_st = stamps(mask, ixi, iyi, psf.half, fill=int(MaskPlane.NO_DATA))
    w_psf = psf.kernel[None] / psf.kernel.sum()
    bad_pix = ((m_st & int(MaskPlane.unusable())) != 0) | out_st
    good_frac = 1.0 - (w_psf * bad_pix).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        chi_dof = phot.chi2 / np.maximum(phot.ndata - 1, 1)
    # -- pixel flags
    mo, mc = phot.mask_or, phot.mask_center

    def bit(a: NDArray[np.int64], b: MaskPlane) -> NDArray[np.bool_]:
        return np.asarray((a & int(b)) != 0, bool)

    edge = (cx < cfg.edge_margin) | (cy < cfg.edge_margin) | (cx > nx - 1 - cfg.edge_margin) | \
        (cy > ny - 1 - cfg.edge_margin) | phot.edge | bit(mo, MaskPlane.EDGE)
    trail = (elong > cfg.trail_elongation) & (np.sqrt(np.clip(size_ratio, 0, None)) > cfg.trail_min_size) & ~sfail
    flags = {
        "pixelFlags_bad": bit(mo, MaskPlane.BAD),
        "pixelFlags_cr": bit(mo, MaskPlane.CR),
        "pixelFlags_crCenter": bit(mc, MaskPlane.CR),
        "pixelFlags_edge": edge,
        "pixelFlags_nodata": bit(mo, MaskPlane.NO_DATA),
        "pixelFlags_nodataCenter": bit(mc, MaskPlane.NO_DATA),
        "pixelFlags_interpolated": bit(mo, MaskPlane.INTRP),
        "pixelFlags_interpolatedCenter": bit(mc, MaskPlane.INTRP),
        "pixelFlags_saturated": bit(mo, MaskPlane.SAT),
        "pixelFlags_saturatedCenter": bit(mc, MaskPlane.SAT),
        "pixelFlags_suspect": bit(mo, MaskPlane.SUSPECT),
        "pixelFlags_suspectCenter": bit(mc, MaskPlane.SUSPECT),
        "pixelFlags_streak": bit(mo, MaskPlane.STREAK) | trail,
        "pixelFlags_streakCenter": bit(mc, MaskPlane.STREAK),
        "pixelFlags_offimage": phot.edge,
    }
    flags["pixelFlags"] = np.logical_or.reduce([v for k, v in flags.items() if k != "pixelFlags_offimage"])
    cuts = {
        "cosmic_ray": flags["pixelFlags_crCenter"],
        "bad_pixel": bit(mc, MaskPlane.BAD),
        "saturated": flags["pixelFlags_saturatedCenter"],
        "no_data": flags["pixelFlags_nodataCenter"] | phot.no_good_pixels,
        "edge": edge,
        "trail": trail,
    }
    cut_counts: dict[str, int] = {}
    remove = np.zeros(n, bool)
    for name, c in cuts.items():
        cut_counts[name] = int((c & ~remove).sum())
        remove |= c
    diag["n_detected"] = int(n)
    if not cfg.cut_artefacts:
        remove[:] = False
    # -- science and template fluxes at the same place
    def flux_on(exp: Exposure | None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if exp is None:
            return np.full(n, np.nan), np.full(n, np.nan)
        ph = psf_photometry(np.asarray(exp.image), np.asarray(exp.variance), np.asarray(exp.mask), cx, cy, psf)
        return ph.flux * scale, ph.flux_err * scale

    sci_f, sci_e = flux_on(science)
    tmp_f, tmp_e = flux_on(template)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_ratio = np.abs(tmp_f) / np.maximum(np.abs(phot.flux * scale), 1e-30)
    rel = reliability_score(size_ratio, chi_dof, good_frac, is_dipole, snr, t_ratio)
    ra, dec = difference.wcs.all_pix2world(cx, cy, 0)
    pix_scale = float(np.sqrt(abs(np.linalg.det(difference.wcs.pixel_scale_matrix)))) * 3600.0
    with np.errstate(invalid="ignore", divide="ignore"):
        xerr = np.sqrt(2.0) * sigma / snr
    k = ~remove
    m = int(k.sum())
    number = np.arange(m)
    values: dict[str, Any] = {
        "diaSourceId": make_source_ids(visit, detector, number),
        "visit": visit,
        "detector": detector,
        "midpointMjdTai": midpoint_mjd,
        "ra": ra[k],
        "dec": dec[k],
        "raErr": (xerr * pix_scale / 3600.0)[k],
        "decErr": (xerr * pix_scale / 3600.0)[k],
        "x": cx[k],
        "y": cy[k],
        "xErr": xerr[k],
        "yErr": xerr[k],
        "centroid_flag": cfail[k],
        "apFlux": (ap_flux * scale)[k],
        "apFluxErr": (ap_err * scale)[k],
        "apFlux_flag": ap_trunc[k],
        "apFlux_flag_apertureTruncated": ap_trunc[k],
        "isNegative": (sign_arr < 0)[k],
        "snr": snr[k],
        "psfFlux": (phot.flux * scale)[k],
        "psfFluxErr": (phot.flux_err * scale)[k],
        "psfChi2": phot.chi2[k],
        "psfNdata": phot.ndata[k],
        "psfFlux_flag": (phot.no_good_pixels | phot.edge)[k],
        "psfFlux_flag_edge": phot.edge[k],
        "psfFlux_flag_noGoodPixels": phot.no_good_pixels[k],
        "trailNdata": np.zeros(m, np.int32),
        "dipoleMeanFlux": dipole["mean"][k],
        "dipoleFluxDiff": dipole["diff"][k],
        "dipoleLength": (dipole["length"] * pix_scale)[k],
        "dipoleAngle": dipole["angle"][k],
        "dipoleChi2": dipole["chi2"][k],
        "dipoleNdata": np.nan_to_num(dipole["ndata"][k]).astype(np.int32),
        "isDipole": is_dipole[k],
        "dipoleFitAttempted": attempted[k],
        "scienceFlux": sci_f[k],
        "scienceFluxErr": sci_e[k],
        "templateFlux": tmp_f[k],
        "templateFluxErr": tmp_e[k],
        "ixx": ixx[k],
        "iyy": iyy[k],
        "ixy": ixy[k],
        "ixxPSF": np.full(m, pxx),
        "iyyPSF": np.full(m, pyy),
        "ixyPSF": np.full(m, pxy),
        "shape_flag": sfail[k],
        "extendedness": np.clip((size_ratio[k] - 1.0) / 0.5, 0, 1),
        "reliability": rel[k],
        "reliabilityVersion": RELIABILITY_VERSION,
        "timeProcessedMjdTai": midpoint_mjd if time_processed_mjd is None else time_processed_mjd,
        "bboxSize": np.clip(2 * np.ceil(np.sqrt(npix[k] / np.pi)) + 2 * psf.half, 0, 2**31 - 1).astype(np.int32),
        **{name: v[k] for name, v in flags.items()},
    }
    if band is not None:
        values["band"] = band
    if exposure_time is not None:
        values["exposureTime"] = exposure_time
    diag["n_kept"] = m
    return DiaSources(apdb_rows("DiaSource", m, values), cut_counts if cfg.cut_artefacts else {}, diag)
