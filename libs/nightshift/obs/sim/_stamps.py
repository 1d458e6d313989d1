"""PSF and galaxy stamps drawn with GalSim once per visit, then placed by adding arrays.

Drawing each object with GalSim costs milliseconds; a 4k x 4k detector holds
thousands. So per visit (one PSF) the simulator draws, with GalSim, the PSF at
4 x 4 sub-pixel phases and a bank of galaxy profiles (exponential discs of a
few sizes and shapes, convolved with the PSF), and renders a detector by
adding scaled copies of those stamps: the light profiles are GalSim's, the
placement is numpy.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["StampBank", "stamp_bank"]

PHASES = 4
_SIZES = (0.3, 0.5, 0.8, 1.3, 2.0)  # galaxy half-light radii, arcsec
_SHAPES = ((0.0, 0.0), (0.3, 0.0), (-0.3, 0.0), (0.0, 0.3), (0.0, -0.3), (0.5, 0.2), (-0.2, -0.5))


@dataclass(frozen=True)
class StampBank:
    """Unit-flux stamps: ``psf[py, px]`` at sub-pixel phases; ``galaxies[size, shape]`` centred."""

    pixel_scale: float
    fwhm: float
    psf: np.ndarray  # (PHASES, PHASES, n, n)
    galaxies: np.ndarray  # (len(_SIZES), len(_SHAPES), m, m)
    sizes: tuple[float, ...] = _SIZES
    shapes: tuple[tuple[float, float], ...] = _SHAPES

    @property
    def sigma_pixels(self) -> float:
        """Gaussian-equivalent PSF sigma in pixels."""
        return self.fwhm / 2.3548 / self.pixel_scale

    def galaxy_index(self, hlr: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest bank entry (size, shape) of each galaxy."""
        size = np.abs(np.log(hlr)[:, None] - np.log(np.array(self.sizes))[None, :]).argmin(axis=1)
        shapes = np.array(self.shapes)
        shape = ((e1[:, None] - shapes[None, :, 0]) ** 2 + (e2[:, None] - shapes[None, :, 1]) ** 2).argmin(axis=1)
        return size, shape


@functools.lru_cache(maxsize=16)
def stamp_bank(fwhm: float, pixel_scale: float) -> StampBank:
    """Stamps for a Kolmogorov PSF of ``fwhm`` arcsec on pixels of ``pixel_scale`` arcsec (cached)."""
    import galsim

    psf = galsim.Kolmogorov(fwhm=fwhm)
    # Pixels much larger than the PSF (small test detectors covering a real focal plane) make GalSim's
    # FFTs huge: draw on pixels `over` times finer and sum them into the coarse pixels instead.
    over = min(16, max(1, math.ceil(2 * pixel_scale / fwhm)))
    fine = pixel_scale / over
    n = int(2 * np.ceil(3.0 * fwhm / pixel_scale) + 1)
    phases = np.zeros((PHASES, PHASES, n, n), dtype=np.float32)
    for py in range(PHASES):
        for px in range(PHASES):
            off = (((px + 0.5) / PHASES - 0.5) * over, ((py + 0.5) / PHASES - 0.5) * over)
            img = psf.drawImage(nx=n * over, ny=n * over, scale=fine, offset=off).array
            img = img.reshape(n, over, n, over).sum(axis=(1, 3))
            phases[py, px] = img / img.sum()
    m = int(2 * np.ceil((3.0 * fwhm + 4 * max(_SIZES)) / pixel_scale / 2) + 1)
    gals = np.zeros((len(_SIZES), len(_SHAPES), m, m), dtype=np.float32)
    for i, hlr in enumerate(_SIZES):
        for j, (e1, e2) in enumerate(_SHAPES):
            prof = galsim.Convolve(galsim.Exponential(half_light_radius=hlr).shear(e1=e1, e2=e2), psf)
            img = prof.drawImage(nx=m * over, ny=m * over, scale=fine).array
            img = img.reshape(m, over, m, over).sum(axis=(1, 3))
            gals[i, j] = img / img.sum()
    return StampBank(pixel_scale, fwhm, phases, gals)


def add_stamps(image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, stamps: np.ndarray,
               which: np.ndarray | None = None) -> None:
    """Add ``flux``-scaled stamps centred at pixel positions (x, y) (clipped at the edges).

    ``stamps`` is (PHASES, PHASES, n, n) (sub-pixel phase chosen from x, y) when ``which`` is None,
    else (k, n, n) with ``which`` the stamp of each object.
    """
    h, w = image.shape
    n = stamps.shape[-1]
    half = n // 2
    for k in range(len(x)):
        if not (math.isfinite(x[k]) and math.isfinite(y[k])):
            continue
        ix, iy = int(np.floor(x[k] + 0.5)), int(np.floor(y[k] + 0.5))
        if which is None:
            px = min(PHASES - 1, int((x[k] - ix + 0.5) * PHASES))
            py = min(PHASES - 1, int((y[k] - iy + 0.5) * PHASES))
            stamp = stamps[py, px]
        else:
            stamp = stamps[which[k]]
        x0, y0 = ix - half, iy - half
        sx0, sy0 = max(0, -x0), max(0, -y0)
        sx1, sy1 = min(n, w - x0), min(n, h - y0)
        if sx1 <= sx0 or sy1 <= sy0:
            continue
        image[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1] += flux[k] * stamp[sy0:sy1, sx0:sx1]
