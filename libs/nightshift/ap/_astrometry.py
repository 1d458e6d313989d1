"""Astrometric calibration: match detected sources to a reference catalog and fit a TAN(+SIP) WCS.

1. Project the reference stars with the initial WCS (the telescope's pointing).
2. Find the pointing offset: the peak of the histogram of all
   (source − reference) pixel offsets between the brightest of each.
3. Match within a radius (k-d tree), fit a TAN WCS with
   :func:`astropy.wcs.utils.fit_wcs_from_points`, re-match tighter, refit
   with a small SIP distortion when enough stars match.
4. Fail with :class:`AstrometryFitError` and the numbers when too few stars
   match or the residuals are too large.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import fit_wcs_from_points
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from ._exceptions import ApInputError, AstrometryFitError

__all__ = ["AstrometryConfig", "AstrometryResult", "fit_astrometry"]


@dataclass(frozen=True)
class AstrometryConfig:
    """Settings of :func:`fit_astrometry`.

    Attributes
    ----------
    max_offset_pix : float
        Largest pointing error searched (pixels).
    match_radius_pix : float
        Final match radius (pixels).
    n_bright : int
        Brightest sources / references used in the offset search.
    min_matches : int
        Fewer matches fail the fit.
    max_rms_arcsec : float
        A larger residual rms fails the fit.
    sip_degree : int
        SIP distortion degree of the final fit (0: pure TAN); used when at least ``10 * (degree + 1)**2`` stars match.
    """

    max_offset_pix: float = 150.0
    match_radius_pix: float = 2.0
    n_bright: int = 200
    min_matches: int = 8
    max_rms_arcsec: float = 0.3
    sip_degree: int = 2


@dataclass
class AstrometryResult:
    """A fitted WCS and its diagnostics.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        The fitted WCS (TAN, with SIP if fitted).
    source_index, ref_index : numpy.ndarray
        Indices of the matched sources and reference stars.
    rms_arcsec : float
        RMS on-sky residual of the matches.
    diagnostics : dict
        Offsets found, match counts per iteration, SIP degree.
    """

    wcs: WCS
    source_index: NDArray[np.intp]
    ref_index: NDArray[np.intp]
    rms_arcsec: float
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _offset_peak(sx: NDArray[np.float64], sy: NDArray[np.float64], rx: NDArray[np.float64],
                 ry: NDArray[np.float64], max_offset: float, bin_size: float) -> tuple[float, float, int]:
    dx = (sx[:, None] - rx[None, :]).ravel()
    dy = (sy[:, None] - ry[None, :]).ravel()
    keep = (np.abs(dx) < max_offset) & (np.abs(dy) < max_offset)
    nb = max(2, int(np.ceil(2 * max_offset / bin_size)))
    h, xe, ye = np.histogram2d(dx[keep], dy[keep], bins=nb, range=[[-max_offset, max_offset]] * 2)
    i, j = np.unravel_index(int(np.argmax(h)), h.shape)
    cx, cy = 0.5 * (xe[i] + xe[i + 1]), 0.5 * (ye[j] + ye[j + 1])
    near = keep & (np.abs(dx - cx) < bin_size) & (np.abs(dy - cy) < bin_size)
    if near.any():
        cx, cy = float(np.median(dx[near])), float(np.median(dy[near]))
    return cx, cy, int(h[i, j])


def _match(x: NDArray[np.float64], y: NDArray[np.float64], rx: NDArray[np.float64], ry: NDArray[np.float64],
           radius: float) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Nearest-neighbour matches within ``radius``, each reference used once (closest source wins)."""
    if not rx.size or not x.size:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    d, j = cKDTree(np.column_stack([rx, ry])).query(np.column_stack([x, y]), distance_upper_bound=radius)
    ok = np.isfinite(d)
    si, ri, dd = np.nonzero(ok)[0], j[ok], d[ok]
    order = np.argsort(dd)
    _, first = np.unique(ri[order], return_index=True)
    pick = order[first]
    return si[pick].astype(np.intp), ri[pick].astype(np.intp)


def fit_astrometry(
    x: NDArray[np.floating],
    y: NDArray[np.floating],
    flux: NDArray[np.floating],
    refcat: Table,
    initial_wcs: WCS,
    shape: tuple[int, int],
    config: AstrometryConfig | None = None,
) -> AstrometryResult:
    """Fit the WCS of an image from its detected sources and a reference catalog.

    Parameters
    ----------
    x, y, flux : numpy.ndarray
        Source centroids (0-based pixels) and fluxes (any unit; only the ranking matters).
    refcat : astropy.table.Table
        Reference stars with ``ra``, ``dec`` (degrees) and ``mag`` columns.
    initial_wcs : astropy.wcs.WCS
        The WCS from the telescope pointing (may be off by up to ``max_offset_pix``).
    shape : tuple of int
        ``(rows, cols)`` of the image.
    config : AstrometryConfig, optional
        Settings.

    Returns
    -------
    AstrometryResult
        The fitted WCS and matches.

    Raises
    ------
    ApInputError
        If the reference catalog lacks a column.
    AstrometryFitError
        If too few stars match or the residuals are too large (with the diagnostics).
    """
    cfg = config or AstrometryConfig()
    for col in ("ra", "dec", "mag"):
        if col not in refcat.colnames:
            raise ApInputError(f"the reference catalog needs columns ra, dec, mag; '{col}' is missing "
                               f"(has {refcat.colnames})")
    x, y, flux = (np.asarray(a, np.float64) for a in (x, y, flux))
    ra = np.asarray(refcat["ra"], np.float64)
    dec = np.asarray(refcat["dec"], np.float64)
    mag = np.asarray(refcat["mag"], np.float64)
    diag: dict[str, Any] = {"n_sources": int(x.size), "n_refs": int(ra.size)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        rx, ry = initial_wcs.all_world2pix(ra, dec, 0)
    margin = cfg.max_offset_pix
    inside = (rx > -margin) & (rx < shape[1] + margin) & (ry > -margin) & (ry < shape[0] + margin)
    diag["n_refs_in_footprint"] = int(inside.sum())
    if inside.sum() < cfg.min_matches or x.size < cfg.min_matches:
        raise AstrometryFitError("too few reference stars or sources in the detector footprint: check the "
                                 "initial WCS and that the reference catalog covers the field", diag)
    ref_in = np.nonzero(inside)[0]
    bs = np.argsort(-flux)[: cfg.n_bright]
    br = ref_in[np.argsort(mag[ref_in])][: cfg.n_bright]
    ox, oy, peak = _offset_peak(x[bs], y[bs], rx[br], ry[br], cfg.max_offset_pix, 4.0)
    diag.update(offset_pix=(round(ox, 2), round(oy, 2)), offset_peak_count=peak)
    radius = max(4.0, 2 * cfg.match_radius_pix)
    wcs = initial_wcs
    pred_x, pred_y = rx + ox, ry + oy
    history: list[int] = []
    si = ri = np.zeros(0, np.intp)
    rms = float("inf")
    for it in range(3):
        si, ri = _match(x, y, pred_x[ref_in], pred_y[ref_in], radius)
        ri = ref_in[ri]
        history.append(int(si.size))
        if si.size < cfg.min_matches:
            diag["matches_per_iteration"] = history
            raise AstrometryFitError("too few matches between sources and reference stars: the pointing may be "
                                     "further off than max_offset_pix or the catalog may not cover the field", diag)
        sip = cfg.sip_degree if (it == 2 and si.size >= 10 * (cfg.sip_degree + 1) ** 2) else None
        coords = SkyCoord(ra[ri] * u.deg, dec[ri] * u.deg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = fit_wcs_from_points((x[si], y[si]), coords, proj_point="center", projection="TAN",
                                      sip_degree=sip)
            fx, fy = wcs.all_world2pix(ra, dec, 0)
        pred_x, pred_y = fx, fy
        radius = cfg.match_radius_pix
        fit_ra, fit_dec = wcs.all_pix2world(x[si], y[si], 0)
        dra = (fit_ra - ra[ri]) * np.cos(np.radians(dec[ri])) * 3600.0
        ddec = (fit_dec - dec[ri]) * 3600.0
        rms = float(np.sqrt(np.mean(dra**2 + ddec**2)))
        diag["sip_degree"] = sip or 0
    diag.update(matches_per_iteration=history, rms_arcsec=round(rms, 4))
    if not np.isfinite(rms) or rms > cfg.max_rms_arcsec:
        raise AstrometryFitError(f"astrometric residuals {rms:.3f}\" exceed max_rms_arcsec={cfg.max_rms_arcsec}",
                                 diag)
    return AstrometryResult(wcs, si, ri, rms, diag)
