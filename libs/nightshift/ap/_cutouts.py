"""Alert cutouts: difference, science and template stamps around each DIA source.

The stamp side is the source's ``bboxSize`` clipped to 30–102 pixels (as
Rubin sizes alert cutouts from the footprint). Stamps running off the image
are padded with ``NO_DATA`` so every stamp has the requested size; the WCS
of each stamp is the parent WCS with ``CRPIX`` shifted (valid for SIP too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from astropy.wcs import WCS
from numpy.typing import NDArray

from ..butler.formatters import Exposure
from ._exceptions import ApInputError
from ._masks import MaskPlane

__all__ = ["MAX_CUTOUT", "MIN_CUTOUT", "AlertCutouts", "Cutout", "cutout_size", "make_cutouts"]

#: Smallest and largest cutout side in pixels.
MIN_CUTOUT, MAX_CUTOUT = 30, 102


@dataclass(frozen=True)
class Cutout:
    """One stamp.

    Attributes
    ----------
    image, variance : numpy.ndarray
        float32 planes.
    mask : numpy.ndarray
        int32 mask bits (:class:`MaskPlane`).
    wcs : astropy.wcs.WCS or None
        WCS of the stamp (pixel 0 is ``origin`` in the parent).
    psf : numpy.ndarray or None
        PSF kernel image at the source.
    origin : tuple of int
        ``(x0, y0)`` of the stamp's pixel [0, 0] in the parent image.
    """

    image: NDArray[np.float32]
    variance: NDArray[np.float32]
    mask: NDArray[np.int32]
    wcs: WCS | None
    psf: NDArray[np.float32] | None
    origin: tuple[int, int]


@dataclass(frozen=True)
class AlertCutouts:
    """The three cutouts of one DIA source."""

    dia_source_id: int
    difference: Cutout
    science: Cutout
    template: Cutout


def cutout_size(bbox_size: int | float) -> int:
    """Side of the cutout for a source footprint of ``bbox_size`` pixels: clipped to [30, 102]."""
    return int(np.clip(int(np.ceil(bbox_size)), MIN_CUTOUT, MAX_CUTOUT))


def _stamp(exp: Exposure, xc: float, yc: float, size: int) -> Cutout:
    ny, nx = exp.image.shape
    x0 = int(np.floor(xc + 0.5)) - size // 2
    y0 = int(np.floor(yc + 0.5)) - size // 2
    img = np.zeros((size, size), np.float32)
    var = np.full((size, size), np.inf, np.float32)
    msk = np.full((size, size), int(MaskPlane.NO_DATA), np.int32)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(nx, x0 + size), min(ny, y0 + size)
    if sx1 > sx0 and sy1 > sy0:
        dst = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
        src = (slice(sy0, sy1), slice(sx0, sx1))
        img[dst] = exp.image[src]
        var[dst] = np.asarray(exp.variance)[src]
        msk[dst] = np.asarray(exp.mask)[src]
    wcs = None
    if exp.wcs is not None:
        wcs = exp.wcs.deepcopy()
        wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0], float)
    psf = None if exp.psf is None else np.asarray(exp.psf, np.float32)
    return Cutout(img, var, msk, wcs, psf, (x0, y0))


def make_cutouts(sources: pa.Table, difference: Exposure, science: Exposure, template: Exposure,
                 ids: NDArray[np.int64] | None = None) -> list[AlertCutouts]:
    """Cutouts of every source (or of the ``ids`` given, e.g. the new DIA sources that will raise alerts).

    Parameters
    ----------
    sources : pyarrow.Table
        DiaSource rows (``diaSourceId``, ``x``, ``y``, ``bboxSize``).
    difference, science, template : Exposure
        The three images on the same pixel grid (template PSF-matched).
    ids : numpy.ndarray, optional
        Source ids to cut out (default all).

    Returns
    -------
    list of AlertCutouts
        In the order of ``sources``.

    Raises
    ------
    ApInputError
        If the images are not on one grid.
    """
    shape = difference.image.shape
    if science.image.shape != shape or template.image.shape != shape:
        raise ApInputError("difference, science and template must be on the same pixel grid")
    sid = sources["diaSourceId"].to_numpy()
    x = sources["x"].to_numpy()
    y = sources["y"].to_numpy()
    bb = sources["bboxSize"].to_numpy()
    wanted = np.ones(sid.size, bool) if ids is None else np.isin(sid, ids)
    out = []
    for i in np.nonzero(wanted)[0]:
        size = cutout_size(bb[i])
        out.append(AlertCutouts(int(sid[i]), _stamp(difference, x[i], y[i], size), _stamp(science, x[i], y[i], size),
                                _stamp(template, x[i], y[i], size)))
    return out
