"""Instrument signature removal: raw amplifier segments to an assembled image in electrons.

Steps, per amplifier: serial-overscan subtraction (row-by-row median), trim
and flip into the assembled layout, saturation mask, gain to electrons;
then for the detector: bias subtraction, flat division, defect mask, a
variance plane (Poisson + read noise), and single-exposure cosmic-ray
detection, masking and interpolation (:func:`find_cosmic_rays`).

A corrupt amplifier (non-finite, flat or out-of-range pixels) is masked
``BAD | NO_DATA``, reported in :attr:`IsrResult.bad_amplifiers` and the
detector goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sep
from numpy.typing import NDArray

from ..butler.formatters import Exposure
from ._exceptions import ApInputError
from ._geometry import Detector, as_box
from ._masks import MaskPlane

__all__ = ["IsrConfig", "IsrResult", "coarse_background", "find_cosmic_rays", "interpolate_masked", "run_isr"]

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class IsrConfig:
    """Settings of :func:`run_isr`.

    Attributes
    ----------
    do_cosmic_rays : bool
        Detect, mask and interpolate cosmic rays.
    cr_nsigma : float
        Significance a cosmic-ray pixel must reach above the local background.
    cr_psf_sigma : float
        Gaussian sigma (pixels) of the sharpest PSF expected: anything sharper is a cosmic ray.
    cr_grow : int
        Pixels the cosmic-ray mask is grown by before interpolation.
    max_bad_fraction : float
        An amplifier with more non-finite or saturated pixels than this is declared corrupt.
    """

    do_cosmic_rays: bool = True
    cr_nsigma: float = 6.0
    cr_psf_sigma: float = 1.0
    cr_grow: int = 1
    max_bad_fraction: float = 0.5


@dataclass
class IsrResult:
    """Output of :func:`run_isr`.

    Attributes
    ----------
    exposure : Exposure
        Assembled image in electrons with mask and variance planes.
    bad_amplifiers : dict of str to str
        Corrupt amplifiers (name → reason); their pixels are masked ``BAD | NO_DATA``.
    overscan_levels : dict of str to float
        Median overscan level (ADU) of each amplifier.
    n_cosmic_ray_pixels : int
        Pixels masked ``CR``.
    """

    exposure: Exposure
    bad_amplifiers: dict[str, str] = field(default_factory=dict)
    overscan_levels: dict[str, float] = field(default_factory=dict)
    n_cosmic_ray_pixels: int = 0


def run_isr(
    raw: NDArray[np.generic],
    detector: Detector,
    *,
    bias: NDArray[np.floating] | None = None,
    flat: NDArray[np.floating] | None = None,
    defects: NDArray[np.bool_] | None = None,
    config: IsrConfig | None = None,
) -> IsrResult:
    """Remove the instrument signature from one raw detector image.

    Parameters
    ----------
    raw : numpy.ndarray
        The raw 2-d array with every amplifier's data and overscan (ADU).
    detector : Detector
        Geometry: where each amplifier's data and overscan sit, gain, read noise, saturation.
    bias : numpy.ndarray, optional
        Assembled bias residual in electrons (after overscan), subtracted.
    flat : numpy.ndarray, optional
        Assembled flat field normalised to ~1, divided out.
    defects : numpy.ndarray of bool, optional
        Assembled defect mask (True = bad pixel), masked ``BAD``.
    config : IsrConfig, optional
        Settings (defaults if omitted).

    Returns
    -------
    IsrResult
        The exposure and per-amplifier diagnostics.

    Raises
    ------
    ApInputError
        If the raw array or a calibration does not fit the geometry.
    """
    cfg = config or IsrConfig()
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ApInputError(f"raw must be a 2-d array, got shape {raw.shape}")
    shape = (int(detector.height), int(detector.width))
    for name, cal in (("bias", bias), ("flat", flat), ("defects", defects)):
        if cal is not None and np.shape(cal) != shape:
            raise ApInputError(f"{name} has shape {np.shape(cal)} but detector {detector.id} assembles to {shape}")
    image = np.zeros(shape, np.float32)
    variance = np.zeros(shape, np.float32)
    mask = np.zeros(shape, np.int32)
    result = IsrResult(Exposure(image=image, mask=mask, variance=variance))
    for amp in detector.amplifiers:
        data_box, os_box, out_box = as_box(amp.raw_data_bbox), as_box(amp.raw_overscan_bbox), as_box(amp.bbox)
        data_box.check_within(raw.shape)
        os_box.check_within(raw.shape)
        if data_box.shape != out_box.shape:
            raise ApInputError(f"amplifier {amp.name}: raw data box {data_box} and assembled box {out_box} differ")
        if os_box.shape[0] != data_box.shape[0]:
            raise ApInputError(f"amplifier {amp.name}: the serial overscan must span the data rows")
        data = raw[data_box.slices].astype(np.float32, copy=False)
        overscan = raw[os_box.slices].astype(np.float32, copy=False)
        sat = data >= amp.saturation
        reason = _corrupt_reason(data, overscan, sat, amp.saturation, cfg.max_bad_fraction)
        sy, sx = out_box.slices
        if reason is not None:
            result.bad_amplifiers[amp.name] = reason
            mask[sy, sx] = int(MaskPlane.BAD | MaskPlane.NO_DATA)
            variance[sy, sx] = np.inf
            continue
        row_level = np.median(overscan, axis=1)
        result.overscan_levels[amp.name] = float(np.median(row_level))
        seg = (data - row_level[:, None]) * np.float32(amp.gain)
        if getattr(amp, "flip_x", False):
            seg, sat = seg[:, ::-1], sat[:, ::-1]
        if getattr(amp, "flip_y", False):
            seg, sat = seg[::-1], sat[::-1]
        image[sy, sx] = seg
        mask[sy, sx] |= sat * np.int32(MaskPlane.SAT)
        variance[sy, sx] = np.float32(amp.read_noise) ** 2
    if bias is not None:
        image -= np.asarray(bias, np.float32)
    # Poisson variance from the signal in electrons, before the flat (inf, for corrupt amplifiers, stays inf)
    variance += np.maximum(image, np.float32(0))
    if flat is not None:
        f = np.asarray(flat, np.float32)
        bad_flat = ~np.isfinite(f) | (f <= 0.05)
        f = np.where(bad_flat, 1.0, f).astype(np.float32, copy=False)
        image /= f
        variance /= f * f
        mask[bad_flat] |= int(MaskPlane.BAD)
    if defects is not None:
        mask[np.asarray(defects, bool)] |= int(MaskPlane.BAD)
    nonfinite = ~np.isfinite(image)
    if nonfinite.any():
        mask[nonfinite] |= int(MaskPlane.NO_DATA)
        image[nonfinite] = 0.0
    if cfg.do_cosmic_rays:
        usable = (mask & int(MaskPlane.NO_DATA)) == 0
        bkg = coarse_background(image, usable)
        cr = find_cosmic_rays(image - bkg, np.where(usable, variance, np.float32(np.inf)),
                              psf_sigma=cfg.cr_psf_sigma, nsigma=cfg.cr_nsigma, grow=cfg.cr_grow)
        cr &= usable
        mask[cr] |= int(MaskPlane.CR | MaskPlane.INTRP)
        interpolate_masked(image, cr)
        result.n_cosmic_ray_pixels = int(cr.sum())
    variance[~np.isfinite(variance)] = np.inf
    return result


def _corrupt_reason(data: F32, overscan: F32, sat: NDArray[np.bool_], saturation: float,
                    max_bad_fraction: float) -> str | None:
    """Why an amplifier segment is unusable, or None."""
    finite = np.isfinite(data)
    if (~finite).mean() > max_bad_fraction:
        return f"{(~finite).mean():.0%} non-finite pixels"
    if not np.isfinite(overscan).all():
        return "non-finite overscan"
    if sat.mean() > max_bad_fraction:
        return f"{sat.mean():.0%} saturated pixels"
    if float(np.nanstd(data)) == 0.0:
        return "constant pixel values (no signal, no noise)"
    level = float(np.median(overscan))
    if not 0.0 <= level < saturation:
        return f"overscan level {level:.1f} ADU outside [0, saturation)"
    return None


def coarse_background(image: F32, usable: NDArray[np.bool_] | None = None, block: int = 128) -> F32:
    """A smooth background: ``sep``'s mesh of clipped block modes (``block`` px), spline-interpolated.

    Parameters
    ----------
    image : numpy.ndarray
        2-d image.
    usable : numpy.ndarray of bool, optional
        Pixels to use (others ignored).
    block : int
        Mesh size in pixels.

    Returns
    -------
    numpy.ndarray
        Background, float32, same shape.
    """
    img = np.ascontiguousarray(image, dtype=np.float32)
    mask = None if usable is None else ~usable
    bkg = sep.Background(img, mask=mask, bw=block, bh=block)
    return np.asarray(bkg.back(dtype=np.float32), np.float32)


def find_cosmic_rays(
    image: F32,
    variance: F32,
    *,
    psf_sigma: float = 1.0,
    nsigma: float = 6.0,
    neighbour_nsigma: float = 2.5,
    grow: int = 1,
) -> NDArray[np.bool_]:
    """Cosmic-ray pixels of a background-subtracted single exposure: significant and sharper than the PSF.

    A pixel is a cosmic-ray candidate when it is ``nsigma`` above zero and,
    for at least one of the four pairs of opposite neighbours (horizontal,
    vertical, two diagonals at distance ``d``), its value less
    ``neighbour_nsigma`` sigma, scaled by the PSF's fall-off
    ``exp(-d^2 / (2 psf_sigma^2))``, still exceeds the pair's mean. A
    Gaussian star of width >= ``psf_sigma`` cannot satisfy that anywhere (the
    mean of two opposite samples of a Gaussian is at least its centre value
    times the fall-off). Candidates' neighbours above ``neighbour_nsigma`` are
    added (the CR's wings), then the mask is grown by ``grow`` pixels.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image.
    variance : numpy.ndarray
        Per-pixel variance (``inf`` excludes a pixel).
    psf_sigma : float
        Gaussian sigma (pixels) of the sharpest PSF.
    nsigma, neighbour_nsigma : float
        Thresholds of the CR core and its wings.
    grow : int
        Dilation in pixels.

    Returns
    -------
    numpy.ndarray of bool
        The cosmic-ray mask.
    """
    img = np.asarray(image, np.float32)
    var = np.asarray(variance, np.float32)
    ny, nx = img.shape
    # candidates in two passes: above nsigma times the smallest sigma (a few per cent of the pixels), then
    # the per-pixel test on those only
    vmin = float(np.min(var)) if var.size else 0.0
    if not np.isfinite(vmin):
        return np.zeros(img.shape, bool)
    cand = img > np.float32(nsigma * np.sqrt(max(vmin, 0.0)))
    cand[0, :] = cand[-1, :] = False
    cand[:, 0] = cand[:, -1] = False
    cy, cx = np.nonzero(cand)
    c = img[cy, cx]
    sig = np.sqrt(var[cy, cx])
    keep = c > np.float32(nsigma) * sig
    cy, cx, c, sig = cy[keep], cx[keep], c[keep], sig[keep]
    if not cy.size:
        return np.zeros(img.shape, bool)
    reduced = c - np.float32(neighbour_nsigma) * sig
    r1 = np.float32(np.exp(-1.0 / (2 * psf_sigma**2)))
    r2 = np.float32(np.exp(-2.0 / (2 * psf_sigma**2)))
    sharp = np.zeros(cy.size, bool)
    for (dy, dx), r in (((0, 1), r1), ((1, 0), r1), ((1, 1), r2), ((1, -1), r2)):
        mean = 0.5 * (img[cy + dy, cx + dx] + img[cy - dy, cx - dx])
        sharp |= reduced * r > mean
    core = np.zeros(img.shape, bool)
    core[cy[sharp], cx[sharp]] = True
    if not sharp.any():
        return core
    # wings: neighbours of a core above neighbour_nsigma
    near = _grow(core, 1)
    wy, wx = np.nonzero(near & ~core)
    wing = img[wy, wx] > np.float32(neighbour_nsigma) * np.sqrt(var[wy, wx])
    crs = core.copy()
    crs[wy[wing], wx[wing]] = True
    if grow > 0:
        crs = _grow(crs, grow)
    return np.asarray(crs, bool)


def _grow(mask: NDArray[np.bool_], by: int) -> NDArray[np.bool_]:
    """Dilate a sparse ``mask`` by a square of half-size ``by`` (only around its set pixels)."""
    ys, xs = np.nonzero(mask)
    out = mask.copy()
    ny, nx = mask.shape
    for dy in range(-by, by + 1):
        for dx in range(-by, by + 1):
            out[np.clip(ys + dy, 0, ny - 1), np.clip(xs + dx, 0, nx - 1)] = True
    return out


def interpolate_masked(image: F32, bad: NDArray[np.bool_], size: int = 5) -> None:
    """Replace ``bad`` pixels in place by the mean of the good pixels in a ``size`` × ``size`` window.

    Only the bad pixels' windows are read (vectorised stamps), so the cost scales with the number of bad
    pixels, not the image. Pixels with no good neighbour are widened once (``3 * size``); any left get 0.

    Parameters
    ----------
    image : numpy.ndarray
        Image, modified in place.
    bad : numpy.ndarray of bool
        Pixels to replace.
    size : int
        Window size (odd).
    """
    ys, xs = np.nonzero(bad)
    if not ys.size:
        return
    ny, nx = image.shape
    todo = np.ones(ys.size, bool)
    fill = np.zeros(ys.size, np.float32)
    for win in (size, 3 * size):
        if not todo.any():
            break
        h = win // 2
        off = np.arange(-h, h + 1)
        yy = np.clip(ys[todo, None, None] + off[None, :, None], 0, ny - 1)
        xx = np.clip(xs[todo, None, None] + off[None, None, :], 0, nx - 1)
        vals = image[yy, xx]
        good = ~bad[yy, xx]
        cnt = good.sum(axis=(1, 2))
        mean = np.where(good, vals, 0).sum(axis=(1, 2)) / np.maximum(cnt, 1)
        idx = np.nonzero(todo)[0]
        ok = cnt > 0
        fill[idx[ok]] = mean[ok]
        todo[idx[ok]] = False
    image[ys, xs] = fill
