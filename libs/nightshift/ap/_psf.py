"""PSF models: a pixelized PSF stacked from stars, with Gaussian-equivalent moments.

:class:`PsfModel` holds a normalised, centred kernel image; ``images_at``
returns it shifted to many sub-pixel positions at once (one vectorised
spline interpolation), which is what the PSF-flux measurement uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ._exceptions import ApInputError, PsfFitError

__all__ = ["PsfModel", "fit_psf", "gaussian_kernel"]


def gaussian_kernel(sigma: float, half: int | None = None) -> NDArray[np.float32]:
    """A centred, sum-normalised circular Gaussian kernel of ``2 * half + 1`` pixels (``half`` = ceil(4 sigma))."""
    h = int(np.ceil(4 * sigma)) if half is None else half
    g = np.exp(-0.5 * (np.arange(-h, h + 1) / sigma) ** 2)
    k = np.outer(g, g)
    return np.asarray(k / k.sum(), np.float32)


@dataclass(frozen=True)
class PsfModel:
    """A pixelized PSF.

    Attributes
    ----------
    kernel : numpy.ndarray
        Odd-sized square image, centred on its middle pixel, summing to 1.
    """

    kernel: NDArray[np.float32]

    def __post_init__(self) -> None:
        k = np.asarray(self.kernel, np.float32)
        if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
            raise ApInputError(f"a PSF kernel must be square with an odd size, got {k.shape}")
        object.__setattr__(self, "kernel", k / np.float32(k.sum()))

    @classmethod
    def gaussian(cls, sigma: float, half: int | None = None) -> PsfModel:
        """A circular Gaussian PSF of ``sigma`` pixels."""
        return cls(gaussian_kernel(sigma, half))

    @property
    def half(self) -> int:
        """Half-size: the kernel is ``2 * half + 1`` pixels wide."""
        return int(self.kernel.shape[0] // 2)

    def moments(self) -> tuple[float, float, float]:
        """Adaptive (Gaussian-weighted, weight-corrected) second moments ``(ixx, iyy, ixy)`` in pixels².

        Robust to noise in the kernel's wings, unlike unweighted moments; exact for a Gaussian PSF.
        """
        k = self.kernel.astype(np.float64)
        c = np.arange(k.shape[0]) - self.half
        xx, yy = np.meshgrid(c, c)
        ixx = iyy = max(0.5, float((np.clip(k, 0, None) * (xx**2 + yy**2)).sum() / 2))
        ixy = 0.0
        for _ in range(20):
            m = np.array([[ixx, ixy], [ixy, iyy]])
            minv = np.linalg.inv(m)
            w = np.exp(-0.5 * (minv[0, 0] * xx**2 + 2 * minv[0, 1] * xx * yy + minv[1, 1] * yy**2)) * k
            tot = w.sum()
            mw = np.array([[(w * xx * xx).sum(), (w * xx * yy).sum()], [(w * xx * yy).sum(), (w * yy * yy).sum()]])
            mw /= tot
            # the weighted moments of a Gaussian G(M) with weight G(W=M) are (M^-1 + W^-1)^-1 = M / 2
            new = 2 * mw
            if np.allclose(new, m, rtol=1e-6, atol=1e-9):
                break
            ixx, iyy, ixy = float(new[0, 0]), float(new[1, 1]), float(new[0, 1])
        return ixx, iyy, ixy

    @property
    def sigma(self) -> float:
        """Gaussian-equivalent sigma (pixels) from the trace of the second moments."""
        ixx, iyy, _ = self.moments()
        return float(np.sqrt(0.5 * (ixx + iyy)))

    @property
    def fwhm(self) -> float:
        """Gaussian-equivalent FWHM in pixels."""
        return 2.3548 * self.sigma

    @property
    def effective_area(self) -> float:
        """Noise-equivalent area ``1 / sum(kernel²)`` in pixels."""
        return float(1.0 / np.sum(self.kernel.astype(np.float64) ** 2))

    def images_at(self, dx: NDArray[np.floating], dy: NDArray[np.floating], half: int | None = None
                  ) -> NDArray[np.float32]:
        """The PSF shifted by sub-pixel offsets, one stamp per offset.

        Parameters
        ----------
        dx, dy : numpy.ndarray
            Offsets (pixels) of the source centre from each stamp's middle pixel, shape ``(n,)``.
        half : int, optional
            Half-size of the stamps (default: the kernel's).

        Returns
        -------
        numpy.ndarray
            ``(n, 2 * half + 1, 2 * half + 1)`` float32 stamps.
        """
        h = self.half if half is None else half
        dx = np.asarray(dx, np.float64).ravel()
        dy = np.asarray(dy, np.float64).ravel()
        c = np.arange(-h, h + 1, dtype=np.float64)
        ys = c[None, :, None] - dy[:, None, None] + self.half
        xs = c[None, None, :] - dx[:, None, None] + self.half
        ys, xs = np.broadcast_arrays(ys, xs)
        coeffs = ndimage.spline_filter(self.kernel.astype(np.float64), order=3, mode="constant")
        out = ndimage.map_coordinates(coeffs, [ys.ravel(), xs.ravel()], order=3, mode="constant", cval=0.0,
                                      prefilter=False)
        return np.asarray(out.reshape(dx.size, 2 * h + 1, 2 * h + 1), np.float32)


def fit_psf(
    image: NDArray[np.float32],
    x: NDArray[np.floating],
    y: NDArray[np.floating],
    flux: NDArray[np.floating],
    *,
    usable: NDArray[np.bool_] | None = None,
    half: int = 12,
    max_stars: int = 200,
    min_stars: int = 5,
) -> PsfModel:
    """Stack bright, clean stars into a pixelized PSF.

    Each star's stamp is shifted to a common centre (cubic spline),
    normalised by its flux, and the per-pixel median taken; stars whose
    stamps disagree with the median by more than 3× the median disagreement
    are dropped and the median retaken.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image.
    x, y, flux : numpy.ndarray
        Star centroids (pixels) and approximate fluxes; the brightest ``max_stars`` are used.
    usable : numpy.ndarray of bool, optional
        Pixels free of saturation, cosmic rays and defects; stars with any unusable pixel in the stamp are skipped.
    half : int
        Half-size of the model (``2 * half + 1`` pixels).
    max_stars, min_stars : int
        Stars used at most, and needed at least.

    Returns
    -------
    PsfModel
        The stacked model.

    Raises
    ------
    PsfFitError
        If fewer than ``min_stars`` stars are usable.
    """
    ny, nx = image.shape
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    order = np.argsort(-np.asarray(flux, float))
    stamps: list[NDArray[np.float64]] = []
    pad = half + 2
    for i in order:
        cx, cy = int(round(x[i])), int(round(y[i]))
        if cx < pad or cy < pad or cx >= nx - pad or cy >= ny - pad:
            continue
        win = (slice(cy - pad, cy + pad + 1), slice(cx - pad, cx + pad + 1))
        if usable is not None and not usable[win].all():
            continue
        stamp = image[win].astype(np.float64)
        shifted = ndimage.shift(stamp, (cy - y[i], cx - x[i]), order=3, mode="nearest")[2:-2, 2:-2]
        total = shifted.sum()
        if total <= 0:
            continue
        stamps.append(shifted / total)
        if len(stamps) >= max_stars:
            break
    if len(stamps) < min_stars:
        raise PsfFitError("too few clean stars to model the PSF: check the detection threshold, saturation and "
                          "cosmic-ray masks", {"usable_stars": len(stamps), "min_stars": min_stars,
                                               "candidates": int(x.size)})
    cube = np.stack(stamps)
    med = np.median(cube, axis=0)
    dev = np.abs(cube - med).sum(axis=(1, 2))
    keep = dev <= 3 * np.median(dev)
    if keep.sum() >= min_stars:
        med = np.median(cube[keep], axis=0)
    return PsfModel(np.asarray(med, np.float32))
