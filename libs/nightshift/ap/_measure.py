"""Vectorised stamp extraction, centroids, second moments and PSF photometry at many positions at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._masks import MaskPlane
from ._psf import PsfModel

__all__ = ["PsfPhotometry", "gaussian_centroid", "psf_photometry", "stamps", "weighted_moments"]


def stamps(array: NDArray[Any], x: NDArray[np.integer], y: NDArray[np.integer], half: int,
           fill: float | int = 0) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """``(n, 2h+1, 2h+1)`` stamps of ``array`` centred on integer pixels (x, y), and which pixels are off the image.

    Off-image pixels take ``fill``.
    """
    off = np.arange(-half, half + 1)
    ny, nx = array.shape
    iy = np.asarray(y, np.int64)[:, None, None] + off[None, :, None]
    ix = np.asarray(x, np.int64)[:, None, None] + off[None, None, :]
    outside = (iy < 0) | (iy >= ny) | (ix < 0) | (ix >= nx)
    iy, ix = np.broadcast_arrays(np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1))
    outside = np.broadcast_to(outside, iy.shape)
    out = array[iy, ix]
    if outside.any():
        out = np.where(outside, np.asarray(fill, dtype=out.dtype), out)
    return out, np.asarray(outside)


def gaussian_centroid(image: NDArray[np.floating], x: NDArray[np.floating], y: NDArray[np.floating], sigma: float,
                      *, half: int | None = None, iterations: int = 3, sign: NDArray[np.floating] | None = None
                      ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Gaussian-weighted first-moment centroids, iterated; returns (x, y, failed).

    A centroid that moves more than 2 pixels from the start or has a non-positive weighted sum is kept at
    the start position and flagged as failed. ``sign`` (±1 per source) flips negative sources.
    """
    h = half or max(3, int(np.ceil(3 * sigma)))
    cx = np.asarray(x, np.float64).copy()
    cy = np.asarray(y, np.float64).copy()
    x0, y0 = cx.copy(), cy.copy()
    s = np.ones(cx.size) if sign is None else np.asarray(sign, np.float64)
    failed = np.zeros(cx.size, bool)
    off = np.arange(-h, h + 1, dtype=np.float64)
    for _ in range(iterations):
        ix, iy = np.round(cx).astype(np.int64), np.round(cy).astype(np.int64)
        st, outside = stamps(image, ix, iy, h)
        st = np.where(outside, 0.0, st.astype(np.float64)) * s[:, None, None]
        dx = off[None, None, :] + (ix - cx)[:, None, None]
        dy = off[None, :, None] + (iy - cy)[:, None, None]
        w = np.exp(-0.5 * (dx**2 + dy**2) / sigma**2) * st
        tot = w.sum(axis=(1, 2))
        good = tot > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mx = (w * dx).sum(axis=(1, 2)) / tot
            my = (w * dy).sum(axis=(1, 2)) / tot
        # the weighted mean of a Gaussian seen through a Gaussian weight is pulled in by a factor 2: undo it
        cx = np.where(good, cx + 2 * np.clip(mx, -1, 1), cx)
        cy = np.where(good, cy + 2 * np.clip(my, -1, 1), cy)
        failed |= ~good
    moved = np.hypot(cx - x0, cy - y0) > 2.0
    failed |= moved
    cx[failed], cy[failed] = x0[failed], y0[failed]
    return cx, cy, failed


def weighted_moments(image: NDArray[np.floating], x: NDArray[np.floating], y: NDArray[np.floating], sigma: float,
                     *, sign: NDArray[np.floating] | None = None, half: int | None = None
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Gaussian-weighted (weight sigma = ``sigma``) second moments ``(ixx, iyy, ixy, failed)`` about (x, y).

    The moments are corrected for the weight (the Gaussian result: ``I = (1/Iw - 1/W)^-1`` per axis,
    applied to the matrix), so a Gaussian source of width s gives s² whatever the weight.
    """
    h = half or max(4, int(np.ceil(4 * sigma)))
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    s = np.ones(x.size) if sign is None else np.asarray(sign, np.float64)
    ix, iy = np.round(x).astype(np.int64), np.round(y).astype(np.int64)
    st, outside = stamps(image, ix, iy, h)
    st = np.where(outside, 0.0, st.astype(np.float64)) * s[:, None, None]
    off = np.arange(-h, h + 1, dtype=np.float64)
    dx = off[None, None, :] + (ix - x)[:, None, None]
    dy = off[None, :, None] + (iy - y)[:, None, None]
    w = np.exp(-0.5 * (dx**2 + dy**2) / sigma**2) * st
    tot = w.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        mxx = (w * dx * dx).sum(axis=(1, 2)) / tot
        myy = (w * dy * dy).sum(axis=(1, 2)) / tot
        mxy = (w * dx * dy).sum(axis=(1, 2)) / tot
        # deconvolve the weight: M = (Mw^-1 - W^-1)^-1 with W = sigma² I
        det = mxx * myy - mxy**2
        a, b, c = myy / det - 1 / sigma**2, mxx / det - 1 / sigma**2, -mxy / det
        det2 = a * b - c * c
        ixx, iyy, ixy = b / det2, a / det2, -c / det2
    failed = ~(tot > 0) | ~np.isfinite(ixx) | (ixx <= 0) | (iyy <= 0) | (det2 <= 0)
    return ixx, iyy, ixy, failed


@dataclass
class PsfPhotometry:
    """PSF fluxes at many positions.

    Attributes
    ----------
    flux, flux_err : numpy.ndarray
        Maximum-likelihood PSF amplitude and its 1-sigma error (image units).
    chi2 : numpy.ndarray
        Chi-square of the PSF fit over the good pixels.
    ndata : numpy.ndarray
        Good pixels used.
    edge : numpy.ndarray of bool
        The PSF footprint runs off the image.
    no_good_pixels : numpy.ndarray of bool
        No usable pixel: flux is NaN.
    mask_or : numpy.ndarray
        Bitwise OR of the mask over the 5×5 core (for pixel flags).
    mask_center : numpy.ndarray
        Mask of the centre pixel.
    """

    flux: NDArray[np.float64]
    flux_err: NDArray[np.float64]
    chi2: NDArray[np.float64]
    ndata: NDArray[np.int64]
    edge: NDArray[np.bool_]
    no_good_pixels: NDArray[np.bool_]
    mask_or: NDArray[np.int64]
    mask_center: NDArray[np.int64]


def psf_photometry(image: NDArray[np.floating], variance: NDArray[np.floating], mask: NDArray[np.integer],
                   x: NDArray[np.floating], y: NDArray[np.floating], psf: PsfModel, *,
                   bad_bits: int | None = None) -> PsfPhotometry:
    """Linear PSF-amplitude fit at fixed positions: ``flux = Σ P D / V / Σ P² / V``.

    Parameters
    ----------
    image, variance, mask : numpy.ndarray
        The image planes.
    x, y : numpy.ndarray
        Source positions (0-based pixels).
    psf : PsfModel
        The PSF (shifted to each sub-pixel position).
    bad_bits : int, optional
        Mask bits excluded from the fit (default ``MaskPlane.unusable()``).

    Returns
    -------
    PsfPhotometry
        Fluxes, errors and flags.
    """
    bits = int(MaskPlane.unusable()) if bad_bits is None else int(bad_bits)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    h = psf.half
    ix, iy = np.round(x).astype(np.int64), np.round(y).astype(np.int64)
    p = psf.images_at(x - ix, y - iy).astype(np.float64)
    d_raw, outside = stamps(image, ix, iy, h)
    v_raw, _ = stamps(variance, ix, iy, h, fill=np.inf)
    m, _ = stamps(mask, ix, iy, h, fill=int(MaskPlane.NO_DATA))
    d: NDArray[np.float64] = np.asarray(d_raw, np.float64)
    v: NDArray[np.float64] = np.asarray(v_raw, np.float64)
    good = ~outside & ((m.astype(np.int64) & bits) == 0) & np.isfinite(v) & (v > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(good, p / v, 0.0)
        num = (w * np.where(good, d, 0.0)).sum(axis=(1, 2))
        den = (w * p).sum(axis=(1, 2))
        flux = num / den
        err = 1.0 / np.sqrt(den)
        resid = np.where(good, d - flux[:, None, None] * p, 0.0)
        chi2 = (resid**2 / np.where(good, v, np.inf)).sum(axis=(1, 2))
    ndata = good.sum(axis=(1, 2))
    nogood = ~(den > 0)
    flux[nogood] = np.nan
    err[nogood] = np.nan
    c0, c1 = max(0, h - 2), h + 3
    mask_or = np.bitwise_or.reduce(m[:, c0:c1, c0:c1].reshape(x.size, -1).astype(np.int64), axis=1) \
        if x.size else np.zeros(0, np.int64)
    edge = np.asarray(outside.any(axis=(1, 2)), bool)
    return PsfPhotometry(flux, err, chi2, ndata.astype(np.int64), edge, nogood,
                         mask_or, m[:, h, h].astype(np.int64))
