"""Resample an exposure onto another WCS (template → science pixel grid).

The pixel mapping (science pixel → sky → template pixel) is computed exactly
with astropy on a coarse grid and represented by a cubic polynomial in
(x, y) fitted to it (its residual is checked and reported: a TAN/SIP pair
over one detector is smooth to < 0.01 px); the full-resolution mapping is
then a handful of vectorised multiply-adds, and the pixels are resampled
with :func:`scipy.ndimage.map_coordinates` (cubic spline for the image,
nearest for the smooth variance and for the mask bits). Pixels that map outside
the template get ``NO_DATA``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS, FITSFixedWarning
from numpy.typing import NDArray
from scipy import ndimage

from ..butler.formatters import Exposure
from ._exceptions import ApInputError
from ._masks import MaskPlane

__all__ = ["PixelMapping", "pixel_mapping", "warp_exposure"]


@dataclass(frozen=True)
class PixelMapping:
    """A polynomial map from target pixels to source pixels.

    Attributes
    ----------
    cx, cy : numpy.ndarray
        Coefficients of ``x_src`` and ``y_src`` on the monomials ``u**i * v**j`` (``i + j <= degree``),
        with ``u, v`` the target pixel coordinates scaled to [-1, 1].
    degree : int
        Polynomial degree.
    shape : tuple of int
        Target ``(rows, cols)``.
    max_residual : float
        Largest deviation (pixels) from the exact mapping on the fit grid.
    """

    cx: NDArray[np.float64]
    cy: NDArray[np.float64]
    degree: int
    shape: tuple[int, int]
    max_residual: float

    def _terms(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(self.degree + 1) for j in range(self.degree + 1 - i)]

    def evaluate(self, rows: slice | None = None) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Source-pixel coordinates ``(x_src, y_src)`` of every target pixel (optionally of a range of rows)."""
        ny, nx = self.shape
        rs = rows or slice(0, ny)
        u = (np.arange(nx, dtype=np.float64) - (nx - 1) / 2) / max(1.0, (nx - 1) / 2)
        v = (np.arange(rs.start, rs.stop, dtype=np.float64) - (ny - 1) / 2) / max(1.0, (ny - 1) / 2)
        # Horner-like: for each j accumulate the u-polynomial, multiply by v**j on the row axis
        xs = np.zeros((v.size, nx), np.float32)
        ys = np.zeros((v.size, nx), np.float32)
        for j in range(self.degree + 1):
            pu_x = np.zeros(nx)
            pu_y = np.zeros(nx)
            for k, (i, jj) in enumerate(self._terms()):
                if jj == j:
                    pu_x += self.cx[k] * u**i
                    pu_y += self.cy[k] * u**i
            vj = (v**j)[:, None].astype(np.float32, copy=False)
            xs += vj * pu_x[None, :].astype(np.float32, copy=False)
            ys += vj * pu_y[None, :].astype(np.float32, copy=False)
        return xs, ys


def pixel_mapping(target_wcs: WCS, target_shape: tuple[int, int], source_wcs: WCS, *, step: int = 128,
                  degree: int = 3) -> PixelMapping:
    """Fit the target-pixel → source-pixel mapping on a grid every ``step`` pixels.

    Parameters
    ----------
    target_wcs, source_wcs : astropy.wcs.WCS
        WCS of the output grid and of the image to resample.
    target_shape : tuple of int
        ``(rows, cols)`` of the output.
    step : int
        Grid spacing of the exact evaluation.
    degree : int
        Polynomial degree.

    Returns
    -------
    PixelMapping
        The fitted mapping.
    """
    ny, nx = target_shape
    gx = np.unique(np.r_[np.arange(0, nx, step), nx - 1]).astype(np.float64)
    gy = np.unique(np.r_[np.arange(0, ny, step), ny - 1]).astype(np.float64)
    xx, yy = np.meshgrid(gx, gy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        ra, dec = target_wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
        sx, sy = source_wcs.all_world2pix(ra, dec, 0)
    u = (xx.ravel() - (nx - 1) / 2) / max(1.0, (nx - 1) / 2)
    v = (yy.ravel() - (ny - 1) / 2) / max(1.0, (ny - 1) / 2)
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    a = np.column_stack([u**i * v**j for i, j in terms])
    cx, *_ = np.linalg.lstsq(a, sx, rcond=None)
    cy, *_ = np.linalg.lstsq(a, sy, rcond=None)
    resid = float(np.max(np.hypot(a @ cx - sx, a @ cy - sy)))
    return PixelMapping(cx, cy, degree, (ny, nx), resid)


def warp_exposure(source: Exposure, target_wcs: WCS, target_shape: tuple[int, int], *, order: int = 3,
                  max_residual: float = 0.02) -> Exposure:
    """Resample ``source`` onto ``target_wcs`` / ``target_shape``.

    Parameters
    ----------
    source : Exposure
        The exposure to warp (needs a WCS).
    target_wcs : astropy.wcs.WCS
        The output WCS.
    target_shape : tuple of int
        The output ``(rows, cols)``.
    order : int
        Spline order of the image interpolation (1: bilinear, 3: cubic).
    max_residual : float
        Largest tolerated polynomial-mapping error in pixels.

    Returns
    -------
    Exposure
        The warped exposure, with ``target_wcs``, the source PSF and ``NO_DATA`` outside the source.

    Raises
    ------
    ApInputError
        If the source has no WCS or the mapping is not smooth enough for the polynomial.
    """
    if source.wcs is None:
        raise ApInputError("the exposure to warp has no WCS")
    mapping = pixel_mapping(target_wcs, target_shape, source.wcs)
    if mapping.max_residual > max_residual:
        raise ApInputError(f"the pixel mapping is not smooth enough for a cubic polynomial "
                           f"(residual {mapping.max_residual:.3f} px > {max_residual}): use a finer grid")
    ny, nx = target_shape
    sny, snx = source.image.shape
    img = np.asarray(source.image, np.float32)
    # prefilter once (a cubic spline needs it), then resample row blocks: the coordinate arrays stay small
    coeffs = ndimage.spline_filter(img, order=order, output=np.float32, mode="nearest") if order > 1 else img
    var_in = np.asarray(source.variance, np.float32)
    var_in = np.where(np.isfinite(var_in), var_in, np.float32(0)).astype(np.float32, copy=False)
    src_mask = np.asarray(source.mask)
    any_mask = bool(src_mask.any())
    warped = np.empty(target_shape, np.float32)
    var = np.empty(target_shape, np.float32)
    mask = np.empty(target_shape, np.int32)
    block = 256
    for r0 in range(0, ny, block):
        rows = slice(r0, min(ny, r0 + block))
        xs, ys = mapping.evaluate(rows)
        coords = np.stack([ys, xs])
        ndimage.map_coordinates(coeffs, coords, order=order, mode="nearest", prefilter=False, output=warped[rows])
        # the variance of a template is smooth: nearest-neighbour resampling is enough
        ndimage.map_coordinates(var_in, coords, order=0, mode="nearest", output=var[rows])
        if any_mask:
            ndimage.map_coordinates(src_mask, coords, order=0, mode="nearest", output=mask[rows])
        else:
            mask[rows] = 0
        outside = (xs < -0.5) | (xs > snx - 0.5) | (ys < -0.5) | (ys > sny - 0.5)
        if outside.any():
            mask[rows][outside] |= int(MaskPlane.NO_DATA)
            warped[rows][outside] = 0.0
            var[rows][outside] = np.inf
    return Exposure(image=warped, mask=mask, variance=var, wcs=target_wcs, psf=source.psf,
                    metadata=source.metadata.copy())
