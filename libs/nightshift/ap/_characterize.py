"""Characterize and calibrate a post-ISR exposure: background, detection, PSF, WCS, zero point.

:func:`characterize` returns the calibrated exposure (``calexp``: background
subtracted, with the fitted WCS and PSF kernel, the photometric calibration
in its metadata) and the measured source catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sep
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from ..butler.formatters import Exposure
from ._astrometry import AstrometryConfig, AstrometryResult, fit_astrometry
from ._exceptions import ApInputError, PhotometryError
from ._masks import MaskPlane
from ._measure import gaussian_centroid, psf_photometry
from ._psf import PsfModel, fit_psf

__all__ = ["CharacterizeConfig", "CharacterizeResult", "characterize", "njy_per_count", "zero_point"]

#: AB magnitude of 1 nJy.
AB_NJY_ZERO = 31.4


def njy_per_count(zp: float) -> float:
    """nJy per image count for an AB zero point ``zp`` (magnitude of one count)."""
    return float(10 ** (-0.4 * (zp - AB_NJY_ZERO)))


@dataclass(frozen=True)
class CharacterizeConfig:
    """Settings of :func:`characterize`.

    Attributes
    ----------
    background_box : int
        Mesh size (pixels) of the ``sep`` background.
    detection_nsigma : float
        Detection threshold in background-rms units.
    min_area : int
        Minimum pixels of a detection.
    psf_half : int
        Half-size of the PSF model.
    psf_min_snr : float
        Minimum S/N of PSF stars.
    zp_min_snr : float
        Minimum S/N of zero-point stars.
    astrometry : AstrometryConfig
        Astrometric fit settings.
    """

    background_box: int = 128
    detection_nsigma: float = 5.0
    min_area: int = 5
    psf_half: int = 12
    psf_min_snr: float = 50.0
    zp_min_snr: float = 20.0
    astrometry: AstrometryConfig = field(default_factory=AstrometryConfig)


@dataclass
class CharacterizeResult:
    """Output of :func:`characterize`.

    Attributes
    ----------
    calexp : Exposure
        Background-subtracted image with WCS, PSF kernel; metadata ``MAGZERO``, ``NJYPERCT``,
        ``ASTRMS``, ``PSFSIGMA``, ``BGMEAN``, ``BGRMS``.
    background : numpy.ndarray
        The subtracted background.
    sources : astropy.table.Table
        Detected sources: ``x``, ``y``, ``ra``, ``dec``, ``psfFlux`` (counts), ``psfFluxErr``, ``snr``,
        ``flags`` (sep), ``mag_cal``.
    psf : PsfModel
        The PSF model.
    astrometry : AstrometryResult
        The WCS fit.
    zero_point : float
        AB magnitude of one count.
    diagnostics : dict
        Numbers for the quantum's metadata.
    """

    calexp: Exposure
    background: NDArray[np.float32]
    sources: Table
    psf: PsfModel
    astrometry: AstrometryResult
    zero_point: float
    diagnostics: dict[str, Any] = field(default_factory=dict)


def zero_point(inst_flux: NDArray[np.floating], ref_mag: NDArray[np.floating], snr: NDArray[np.floating],
               min_snr: float = 20.0, min_stars: int = 5) -> tuple[float, float, int]:
    """Sigma-clipped zero point ``median(ref_mag + 2.5 log10(inst_flux))`` of bright matched stars.

    Returns
    -------
    tuple
        ``(zero point, its scatter, stars used)``.

    Raises
    ------
    PhotometryError
        If fewer than ``min_stars`` stars qualify.
    """
    f = np.asarray(inst_flux, float)
    m = np.asarray(ref_mag, float)
    ok = (f > 0) & np.isfinite(m) & (np.asarray(snr, float) >= min_snr)
    if ok.sum() < min_stars:
        raise PhotometryError("too few matched stars to measure a zero point",
                              {"stars": int(ok.sum()), "min_stars": min_stars, "min_snr": min_snr})
    zp = m[ok] + 2.5 * np.log10(f[ok])
    for _ in range(3):
        med = float(np.median(zp))
        mad = 1.4826 * float(np.median(np.abs(zp - med))) or 1e-3
        zp = zp[np.abs(zp - med) < 3 * mad]
    return float(np.median(zp)), float(1.4826 * np.median(np.abs(zp - np.median(zp)))), int(zp.size)


def characterize(exposure: Exposure, refcat: Table, initial_wcs: WCS | None = None,
                 config: CharacterizeConfig | None = None) -> CharacterizeResult:
    """Background, detection, PSF, astrometric and photometric calibration of a post-ISR exposure.

    Parameters
    ----------
    exposure : Exposure
        Post-ISR exposure (image, mask, variance); its ``wcs`` is the initial WCS unless one is given.
    refcat : astropy.table.Table
        Reference catalog with ``ra``, ``dec`` (deg) and ``mag`` (AB) columns covering the detector.
    initial_wcs : astropy.wcs.WCS, optional
        The pointing WCS (default ``exposure.wcs``).
    config : CharacterizeConfig, optional
        Settings.

    Returns
    -------
    CharacterizeResult
        The calexp and its measurements.

    Raises
    ------
    ApInputError
        If there is no initial WCS.
    PsfFitError, AstrometryFitError, PhotometryError
        If a fit fails (with diagnostics).
    """
    cfg = config or CharacterizeConfig()
    wcs0 = initial_wcs if initial_wcs is not None else exposure.wcs
    if wcs0 is None:
        raise ApInputError("characterize needs an initial WCS (from the raw's pointing) to match the reference "
                           "catalog: pass initial_wcs or set exposure.wcs")
    image = np.ascontiguousarray(exposure.image, dtype=np.float32)
    mask = np.asarray(exposure.mask)
    variance = np.asarray(exposure.variance, np.float32)
    unusable = (mask & int(MaskPlane.unusable())) != 0
    bkg = sep.Background(image, mask=unusable, bw=cfg.background_box, bh=cfg.background_box)
    background = bkg.back().astype(np.float32, copy=False)
    sub = image - background
    err = np.sqrt(np.where(np.isfinite(variance) & (variance > 0), variance, np.float32(1e30)))
    err = err.astype(np.float32, copy=False)
    # detection mask: only pixels with no data; saturated/CR pixels keep their interpolated/clipped values
    nodata = (mask & int(MaskPlane.NO_DATA | MaskPlane.BAD)) != 0
    sep.set_extract_pixstack(max(300000, image.size // 20))
    objs = sep.extract(sub, cfg.detection_nsigma, err=err, mask=nodata, minarea=cfg.min_area,
                       deblend_cont=0.005, clean=True)
    diag: dict[str, Any] = {"n_detected": int(len(objs)), "background_mean": float(bkg.globalback),
                            "background_rms": float(bkg.globalrms)}
    x, y = objs["x"].astype(np.float64), objs["y"].astype(np.float64)
    snr_rough = objs["flux"] / np.sqrt(np.maximum(objs["flux"], 1) + objs["npix"] * bkg.globalrms**2)
    star = (objs["flag"] == 0) & (snr_rough >= cfg.psf_min_snr) & (objs["peak"] < 0.8 * np.nanmax(sub))
    sigma0 = float(np.median(np.sqrt(objs["a"][star] * objs["b"][star]))) if star.any() else 2.0
    x, y, _ = gaussian_centroid(sub, x, y, sigma0)
    psf = fit_psf(sub, x[star], y[star], objs["flux"][star], usable=~unusable, half=cfg.psf_half)
    diag["psf_sigma"] = psf.sigma
    # refine the (isophotal) sep centroids with PSF-weighted ones
    x, y, _ = gaussian_centroid(sub, x, y, psf.sigma)
    phot = psf_photometry(sub, variance, mask, x, y, psf)
    snr = np.abs(phot.flux) / phot.flux_err
    astro = fit_astrometry(x, y, np.nan_to_num(phot.flux), refcat, wcs0, image.shape, cfg.astrometry)
    diag.update({f"astrometry_{k}": v for k, v in astro.diagnostics.items()})
    zp, zp_scatter, nzp = zero_point(phot.flux[astro.source_index], np.asarray(refcat["mag"])[astro.ref_index],
                                     snr[astro.source_index], cfg.zp_min_snr)
    diag.update(zero_point=zp, zero_point_scatter=zp_scatter, zero_point_stars=nzp)
    ra, dec = astro.wcs.all_pix2world(x, y, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mag_cal = zp - 2.5 * np.log10(phot.flux)
    sources = Table({"x": x, "y": y, "ra": ra, "dec": dec, "psfFlux": phot.flux, "psfFluxErr": phot.flux_err,
                     "snr": snr, "flags": objs["flag"].astype(np.int32), "mag_cal": mag_cal,
                     "psf_star": star})
    calexp = Exposure(image=sub, mask=mask, variance=variance, wcs=astro.wcs, psf=psf.kernel,
                      metadata=exposure.metadata.copy())
    md = calexp.metadata
    md["MAGZERO"] = (zp, "AB mag of one count")
    md["NJYPERCT"] = (njy_per_count(zp), "nJy per count")
    md["ASTRMS"] = (astro.rms_arcsec, "astrometric rms of reference matches (arcsec)")
    md["PSFSIGMA"] = (psf.sigma, "Gaussian-equivalent PSF sigma (pixels)")
    md["BGMEAN"] = (float(bkg.globalback), "mean subtracted background (counts)")
    md["BGRMS"] = (float(bkg.globalrms), "background rms (counts)")
    return CharacterizeResult(calexp, background, sources, psf, astro, zp, diag)
