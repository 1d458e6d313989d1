"""Rendering one detector of one exposure: electrons on the sky, then the electronics, then a raw.

Order of effects (each seeded, so a (seed, exposure, detector) renders the same bits every time):

1. sky background, static stars and galaxies, variable stars, transients (flux at the exposure's time),
   all through the visit's PSF (GalSim stamps, :mod:`._stamps`);
2. the flat-field pattern (vignetting over the focal plane, amplifier QE, a pixel-response tile);
3. satellite trail (now and then: 5% of visits), cosmic rays (3 per cm² per minute), bad columns;
4. shot and read noise; electrons to ADU per amplifier gain; saturation; bias level and structure;
   serial overscan columns (bias + read noise); ``uint16``.

Calibration exposures: a bias has no light and no exposure; a dark has cosmic rays and dark current;
a flat is a uniform illumination through the flat pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._camera import Camera
from ._catalog import SkyCatalog, sky_catalog
from ._pointing import Observation
from ._stamps import add_stamps, stamp_bank

__all__ = ["RenderedRaw", "bias_structure", "flat_pattern", "render_detector"]

ZERO_POINTS = {"u": 26.5, "g": 28.3, "r": 28.1, "i": 27.8, "z": 27.4, "y": 26.6, "white": 28.0}  # mag of 1 e-/s
SKY_MAGS = {"u": 22.9, "g": 22.3, "r": 21.2, "i": 20.5, "z": 19.6, "y": 18.6, "white": 21.0}  # mag/arcsec²
CR_RATE = 3.0  # per cm² per minute
TRAIL_PROBABILITY = 0.05
TEMPLATE_DEPTH = 10.0  # template exposure / science exposure, for the expected difference-image S/N


@dataclass
class RenderedRaw:
    """A rendered raw (ADU, raw layout) and the truth of what is in it."""

    adu: np.ndarray
    truth: list[dict[str, Any]] = field(default_factory=list)
    electrons: np.ndarray | None = None  # trimmed, before noise (only when asked for)
    satellite: bool = False
    cosmic_rays: int = 0


def band_of(physical_filter: str) -> str:
    """``r_57`` -> ``r``; ``empty`` -> ``white``."""
    return "white" if physical_filter == "empty" else physical_filter.split("_")[0]


def flat_pattern(camera: Camera, detector: int) -> np.ndarray:
    """The detector's relative response (mean ~1): vignetting, amplifier QE, a fixed pixel-response tile."""
    det = camera[detector]
    ys, xs = np.mgrid[0 : det.height : 64, 0 : det.width : 64]
    fx, fy = det.pixel_to_focal_plane(xs + 32, ys + 32)
    coarse = 1.0 - 0.12 * (fx**2 + fy**2) / 330.0**2
    flat = np.repeat(np.repeat(coarse, 64, axis=0), 64, axis=1)[: det.height, : det.width].astype(np.float32)
    rng = np.random.default_rng([77, detector])
    for amp in det.amplifiers:
        x0, y0, x1, y1 = amp.bbox
        flat[y0:y1, x0:x1] *= np.float32(rng.normal(1.0, 0.02))
    tile = rng.normal(1.0, 0.005, (128, 128)).astype(np.float32)
    reps = (-(-det.height // 128), -(-det.width // 128))
    flat *= np.tile(tile, reps)[: det.height, : det.width]
    return flat


def bias_structure(camera: Camera, detector: int) -> np.ndarray:
    """ADU the bias adds on top of the overscan level: a few-ADU row ramp per amplifier."""
    det = camera[detector]
    out = np.zeros((det.height, det.width), dtype=np.float32)
    rng = np.random.default_rng([78, detector])
    for amp in det.amplifiers:
        x0, y0, x1, y1 = amp.bbox
        out[y0:y1, x0:x1] = np.linspace(0.0, rng.uniform(1.0, 5.0), y1 - y0, dtype=np.float32)[:, None]
    return out


def _trail(image: np.ndarray, camera: Camera, detector: int, rng: np.random.Generator, sigma: float) -> bool:
    """A satellite trail: one straight line across the focal plane (same line on every detector of the visit)."""
    det = camera[detector]
    r, phi, angle = 330.0 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi), rng.uniform(0, math.pi)
    brightness = rng.uniform(200.0, 3000.0)
    # Focal-plane line through (r cos phi, r sin phi) with direction angle, in this detector's pixels.
    t = math.radians(det.rotation)
    px0 = r * math.cos(phi) - det.x_mm
    py0 = r * math.sin(phi) - det.y_mm
    x0 = (math.cos(t) * px0 + math.sin(t) * py0) / det.pixel_size + (det.width - 1) / 2
    y0 = (-math.sin(t) * px0 + math.cos(t) * py0) / det.pixel_size + (det.height - 1) / 2
    a = angle - t
    half = int(math.ceil(3 * sigma)) + 1
    offsets = np.arange(-half, half + 1)
    if abs(math.cos(a)) >= abs(math.sin(a)):  # shallow: one band of rows per column
        cols = np.arange(det.width)
        centre = y0 + (cols - x0) * math.tan(a)
        rows = np.round(centre)[:, None] + offsets[None, :]
        dist = rows - centre[:, None]
        rr, cc = rows.astype(int), np.broadcast_to(cols[:, None], rows.shape)
        norm = abs(math.cos(a))
    else:
        rows_ = np.arange(det.height)
        centre = x0 + (rows_ - y0) / math.tan(a)
        cols_ = np.round(centre)[:, None] + offsets[None, :]
        dist = cols_ - centre[:, None]
        cc, rr = cols_.astype(int), np.broadcast_to(rows_[:, None], cols_.shape)
        norm = abs(math.sin(a))
    ok = (rr >= 0) & (rr < det.height) & (cc >= 0) & (cc < det.width)
    if not ok.any():
        return False
    value = brightness * np.exp(-0.5 * (dist * norm / sigma) ** 2)
    np.add.at(image, (rr[ok], cc[ok]), value[ok].astype(np.float32))
    return True


def _cosmic_rays(image: np.ndarray, area_cm2: float, seconds: float, rng: np.random.Generator) -> int:
    n = int(rng.poisson(CR_RATE * area_cm2 * seconds / 60.0))
    h, w = image.shape
    for _ in range(n):
        x, y, ang = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, math.pi)
        length = rng.uniform(1, 25)
        steps = np.linspace(0, length, max(2, int(length) + 1))
        xs = np.clip((x + steps * math.cos(ang)).astype(int), 0, w - 1)
        ys = np.clip((y + steps * math.sin(ang)).astype(int), 0, h - 1)
        image[ys, xs] += np.float32(rng.uniform(500, 8000))
    return n


def render_detector(obs: Observation, camera: Camera, detector: int, seed: int = 0,
                    catalog: SkyCatalog | None = None, keep_electrons: bool = False) -> RenderedRaw:
    """Render one raw (deterministic in ``seed``, the exposure and the detector).

    Parameters
    ----------
    obs : Observation
        The exposure.
    camera : Camera
        Its camera (``detector_size`` decides the pixel count).
    detector : int
    seed : int
        Seed of the sky (catalog) and of every random effect.
    catalog : SkyCatalog, optional
        Objects to draw (``sky_catalog(seed, ...)`` around the detector by default).
    keep_electrons : bool
        Also return the noiseless electron image (tests, pictures).
    """
    from astropy.wcs import WCS

    det = camera[detector]
    rng = np.random.default_rng([seed, obs.exposure_id, detector])
    band = band_of(obs.physical_filter)
    scale = camera.plate_scale * det.pixel_size  # arcsec / pixel
    light = np.zeros((det.height, det.width), dtype=np.float32)
    truth: list[dict[str, Any]] = []
    satellite = False
    kind = obs.observation_type
    if kind == "science":
        wcs = WCS(camera.wcs_header(detector, obs.ra, obs.dec, obs.sky_angle))
        if catalog is None:
            cra, cdec = wcs.all_pix2world([(det.width - 1) / 2], [(det.height - 1) / 2], 0)
            radius = math.hypot(det.width, det.height) * scale / 3600 / 2 + 0.12
            catalog = sky_catalog(seed, float(cra[0]), float(cdec[0]), radius)
        zp = ZERO_POINTS.get(band, 28.0)
        light += np.float32(10 ** (-0.4 * (SKY_MAGS.get(band, 21.0) - zp)) * scale**2 * obs.exposure_time)
        bank = stamp_bank(round(obs.seeing, 3), round(scale, 4))
        x, y = wcs.all_world2pix(catalog.ra, catalog.dec, 0) if len(catalog.ra) else (np.array([]), np.array([]))
        flux = 10 ** (-0.4 * (catalog.magnitudes(band, obs.mjd) - zp)) * obs.exposure_time
        margin = bank.galaxies.shape[-1]
        inside = (x > -margin) & (x < det.width + margin) & (y > -margin) & (y < det.height + margin)
        stars = inside & (catalog.kind == "star")
        gals = inside & (catalog.kind == "galaxy")
        add_stamps(light, x[stars], y[stars], flux[stars], bank.psf)
        size, shape = bank.galaxy_index(catalog.hlr[gals], catalog.e1[gals], catalog.e2[gals])
        add_stamps(light, np.round(x[gals]), np.round(y[gals]), flux[gals],
                   bank.galaxies.reshape(-1, *bank.galaxies.shape[-2:]), size * len(bank.shapes) + shape)
        tx, ty = wcs.all_world2pix(catalog.t_ra, catalog.t_dec, 0) if len(catalog.t_ra) else ([], [])
        tx, ty = np.asarray(tx), np.asarray(ty)
        frac = catalog.transient_fluxes(obs.mjd)
        tflux = frac * 10 ** (-0.4 * (catalog.t_peak - zp)) * obs.exposure_time
        on = (tx >= 0) & (tx < det.width) & (ty >= 0) & (ty < det.height)
        add_stamps(light, tx[on], ty[on], tflux[on], bank.psf)
        sky_e = float(light.min()) if light.size else 0.0
        rn_e = float(np.mean([a.read_noise for a in det.amplifiers]))
        neff = 4 * math.pi * bank.sigma_pixels**2
        for i in np.flatnonzero(on):
            snr = tflux[i] / math.sqrt(neff * (sky_e + rn_e**2) * (1 + 1 / TEMPLATE_DEPTH)) if tflux[i] > 0 else 0.0
            truth.append({"id": int(catalog.t_id[i]), "kind": str(catalog.t_kind[i]), "ra": float(catalog.t_ra[i]),
                          "dec": float(catalog.t_dec[i]), "x": float(tx[i]), "y": float(ty[i]), "mjd": obs.mjd,
                          "band": band, "flux_e": float(tflux[i]),
                          "mag": float(catalog.t_peak[i] - 2.5 * math.log10(frac[i])) if frac[i] > 0 else None,
                          "snr_diff": float(snr), "exposure": obs.exposure_id, "detector": detector})
        trail_rng = np.random.default_rng([seed, obs.exposure_id, 999])
        if trail_rng.random() < TRAIL_PROBABILITY:
            satellite = _trail(light, camera, detector, trail_rng, bank.sigma_pixels)
    elif kind == "flat":
        light += np.float32(20_000.0)
    flat = flat_pattern(camera, detector)
    electrons = light * flat if kind in ("science", "flat") else light
    if kind == "dark":
        electrons += np.float32(0.002 * obs.exposure_time)
    n_cr = 0
    if kind != "bias":
        side_cm = det.width * det.pixel_size / 10
        n_cr = _cosmic_rays(electrons, side_cm * side_cm * (det.height / det.width), obs.exposure_time, rng)
    bad = np.random.default_rng([79, detector]).integers(0, det.width, 3)
    electrons[:, bad[:2]] += np.float32(1500.0)  # hot columns
    electrons[:, bad[2]] *= np.float32(0.05)  # a dead column
    kept = electrons.copy() if keep_electrons else None
    noisy = electrons + np.sqrt(np.maximum(electrons, 0)) * rng.standard_normal(electrons.shape, dtype=np.float32)
    adu = _electronics(camera, detector, noisy, rng)
    return RenderedRaw(adu, truth, kept, satellite, n_cr)


def _electronics(camera: Camera, detector: int, electrons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    det = camera[detector]
    raw = np.empty(det.raw_shape, dtype=np.uint16)
    structure = bias_structure(camera, detector)
    for amp in det.amplifiers:
        x0, y0, x1, y1 = amp.bbox
        signal = np.minimum(electrons[y0:y1, x0:x1] / np.float32(amp.gain), np.float32(amp.saturation))
        noise = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(amp.read_noise / amp.gain)
        level = signal + noise + structure[y0:y1, x0:x1] + np.float32(amp.bias_level)
        dx0, dy0, dx1, dy1 = amp.raw_data_bbox
        raw[dy0:dy1, dx0:dx1] = np.clip(np.rint(level), 0, 65535).astype(np.uint16)
        ox0, oy0, ox1, oy1 = amp.raw_overscan_bbox
        over = amp.bias_level + rng.standard_normal((oy1 - oy0, ox1 - ox0)) * (amp.read_noise / amp.gain)
        raw[oy0:oy1, ox0:ox1] = np.clip(np.rint(over), 0, 65535).astype(np.uint16)
    return raw
