"""Forced PSF photometry of known DIA objects on the difference and calibrated images."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..apdb import make_source_ids
from ..butler.formatters import Exposure
from ._exceptions import ApInputError
from ._measure import psf_photometry
from ._psf import PsfModel
from ._rows import apdb_rows

__all__ = ["forced_photometry"]


def forced_photometry(objects: pa.Table, difference: Exposure, calexp: Exposure, psf: PsfModel, *, visit: int,
                      detector: int, midpoint_mjd: float, band: str | None = None,
                      time_processed_mjd: float | None = None) -> pa.Table:
    """PSF fluxes at the positions of known DIA objects: ``DiaForcedSource`` rows.

    Only objects whose position falls on the detector are measured. ``psfFlux`` is measured on the
    difference image, ``scienceFlux`` on the calibrated exposure, both in nJy (``NJYPERCT`` of the
    difference image's metadata, default 1). ``diaForcedSourceId`` is ``make_source_ids(visit, detector, i)``
    with ``i`` the row number after sorting the measured objects by ``diaObjectId``.

    Parameters
    ----------
    objects : pyarrow.Table
        DiaObject rows (``diaObjectId``, ``ra``, ``dec``).
    difference, calexp : Exposure
        Difference image (with the science WCS) and calibrated science exposure.
    psf : PsfModel
        The science PSF.
    visit, detector : int
        Ids of the exposure.
    midpoint_mjd : float
        Exposure midpoint (MJD TAI).
    band : str, optional
        Filter band.
    time_processed_mjd : float, optional
        Processing time (default ``midpoint_mjd``).

    Returns
    -------
    pyarrow.Table
        DiaForcedSource rows.

    Raises
    ------
    ApInputError
        If the difference image has no WCS or the two images differ in shape.
    """
    if difference.wcs is None:
        raise ApInputError("forced photometry needs the difference image's WCS")
    if difference.image.shape != calexp.image.shape:
        raise ApInputError("the difference and calibrated images must have the same shape")
    ny, nx = difference.image.shape
    order = np.argsort(objects["diaObjectId"].to_numpy(), kind="stable")
    ids = objects["diaObjectId"].to_numpy()[order]
    ra = objects["ra"].to_numpy()[order]
    dec = objects["dec"].to_numpy()[order]
    x, y = difference.wcs.all_world2pix(ra, dec, 0)
    on = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    ids, ra, dec, x, y = ids[on], ra[on], dec[on], x[on], y[on]
    scale = float(difference.metadata.get("NJYPERCT", 1.0))
    d = psf_photometry(np.asarray(difference.image), np.asarray(difference.variance), np.asarray(difference.mask),
                       x, y, psf)
    c = psf_photometry(np.asarray(calexp.image), np.asarray(calexp.variance), np.asarray(calexp.mask), x, y, psf)
    n = int(ids.size)
    values: dict[str, Any] = {
        "diaForcedSourceId": make_source_ids(visit, detector, np.arange(n)),
        "diaObjectId": ids, "ra": ra, "dec": dec, "visit": visit, "detector": detector,
        "psfFlux": d.flux * scale, "psfFluxErr": d.flux_err * scale,
        "scienceFlux": c.flux * scale, "scienceFluxErr": c.flux_err * scale,
        "midpointMjdTai": midpoint_mjd,
        "timeProcessedMjdTai": midpoint_mjd if time_processed_mjd is None else time_processed_mjd,
    }
    if band is not None:
        values["band"] = band
    return apdb_rows("DiaForcedSource", n, values)
