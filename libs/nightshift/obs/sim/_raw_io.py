"""Writing simulated raws: one FITS file per detector, primary HDU = header + raw pixels (uint16 ADU)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._camera import Camera
from ._pointing import Observation, raw_header

__all__ = ["raw_filename", "write_raw"]


def raw_filename(obs: Observation, detector: int) -> str:
    """``<instrument>_<day_obs>_<seq:06d>_<detector:03d>.fits``."""
    return f"{obs.obs_id}_{detector:03d}.fits"


def write_raw(directory: str | os.PathLike[str], obs: Observation, camera: Camera, detector: int,
              adu: np.ndarray | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write one detector's raw; without ``adu``, a bias-level frame (headers-only tests and benchmarks).

    Returns
    -------
    pathlib.Path
        The file written (``directory/raw_filename(obs, detector)``).
    """
    from astropy.io import fits

    det = camera[detector]
    wcs = camera.wcs_header(detector, obs.ra, obs.dec, obs.sky_angle) if obs.observation_type == "science" else None
    header = fits.Header()
    for key, value in {**raw_header(obs, detector, det.name, wcs), **(extra or {})}.items():
        header[key] = value
    if adu is None:
        adu = np.zeros(det.raw_shape, dtype=np.uint16)
        for amp in det.amplifiers:
            x0, y0, x1, y1 = amp.raw_bbox
            adu[y0:y1, x0:x1] = int(amp.bias_level)
    if adu.shape != det.raw_shape:
        raise ValueError(f"raw pixels have shape {adu.shape}; detector {detector} raws are {det.raw_shape}")
    path = Path(directory) / raw_filename(obs, detector)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(adu.astype(np.uint16, copy=False), header=header)
    hdu.writeto(path, overwrite=True)
    return path
