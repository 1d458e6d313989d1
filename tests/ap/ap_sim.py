"""Test-only synthetic images: Gaussian stars with a known TAN WCS, noise, cosmic rays, raws.

Not part of the library: the tests (and ``loadtests/ap_bench.py``) use it to
make images whose truth is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from nightshift.ap import Detector
from nightshift.butler.formatters import Exposure

PIXEL_SCALE = 0.2  # arcsec / pixel


def make_wcs(shape: tuple[int, int], ra0: float = 150.0, dec0: float = 2.0, *, scale: float = PIXEL_SCALE,
             rotation_deg: float = 0.0, shift: tuple[float, float] = (0.0, 0.0)) -> WCS:
    """A TAN WCS centred on (ra0, dec0) at the image centre (+ ``shift`` pixels), north up, rotated."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [shape[1] / 2 + 0.5 + shift[0], shape[0] / 2 + 0.5 + shift[1]]
    t = np.radians(rotation_deg)
    s = scale / 3600.0
    w.wcs.cd = np.array([[-s * np.cos(t), s * np.sin(t)], [s * np.sin(t), s * np.cos(t)]])
    return w


def gaussian_stamp_add(image: NDArray[np.float32], x: NDArray[np.float64], y: NDArray[np.float64],
                       flux: NDArray[np.float64], sigma: float, radius: int | None = None) -> None:
    """Add pixel-integrated-ish (centre-sampled) circular Gaussians of total ``flux`` at (x, y) in place."""
    r = radius or int(np.ceil(5 * sigma))
    ny, nx = image.shape
    off = np.arange(-r, r + 1)
    for xi, yi, fi in zip(x, y, flux, strict=True):
        cx, cy = int(np.round(xi)), int(np.round(yi))
        ys, xs = cy + off, cx + off
        gy = np.exp(-0.5 * ((ys - yi) / sigma) ** 2)
        gx = np.exp(-0.5 * ((xs - xi) / sigma) ** 2)
        stamp = np.outer(gy, gx) * (fi / (2 * np.pi * sigma**2))
        oky, okx = (ys >= 0) & (ys < ny), (xs >= 0) & (xs < nx)
        if oky.any() and okx.any():
            image[np.ix_(ys[oky], xs[okx])] += stamp[np.ix_(oky, okx)].astype(np.float32)


@dataclass
class Sky:
    """A field of stars with (ra, dec, mag) truth; fluxes in nJy (AB: f = 10**(-0.4 (m - 31.4)))."""

    ra: NDArray[np.float64]
    dec: NDArray[np.float64]
    mag: NDArray[np.float64]

    @classmethod
    def random(cls, n: int, ra0: float = 150.0, dec0: float = 2.0, half_width_deg: float = 0.06,
               seed: int = 1, mag_range: tuple[float, float] = (17.0, 23.5)) -> Sky:
        rng = np.random.default_rng(seed)
        ra = ra0 + (rng.random(n) - 0.5) * 2 * half_width_deg / np.cos(np.radians(dec0))
        dec = dec0 + (rng.random(n) - 0.5) * 2 * half_width_deg
        # a power-law-ish magnitude distribution: more faint stars
        u = rng.random(n)
        lo, hi = mag_range
        mag = lo + (hi - lo) * u ** 0.5
        return cls(ra, dec, mag)

    @property
    def flux_njy(self) -> NDArray[np.float64]:
        return np.asarray(10 ** (-0.4 * (self.mag - 31.4)))

    def refcat(self) -> Table:
        return Table({"ra": self.ra, "dec": self.dec, "mag": self.mag})


def render(sky: Sky, wcs: WCS, shape: tuple[int, int], *, psf_sigma: float, njy_per_e: float, sky_level: float,
           read_noise: float = 5.0, seed: int = 2, extra: tuple[NDArray[np.float64], NDArray[np.float64],
                                                                NDArray[np.float64]] | None = None,
           noise: bool = True) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(image in electrons incl. sky, noiseless model) of ``sky`` seen through ``wcs``; ``extra`` = (x, y, e-)."""
    x, y = wcs.all_world2pix(sky.ra, sky.dec, 0)
    keep = (x > -20) & (x < shape[1] + 20) & (y > -20) & (y < shape[0] + 20)
    model = np.full(shape, sky_level, np.float32)
    gaussian_stamp_add(model, x[keep], y[keep], sky.flux_njy[keep] / njy_per_e, psf_sigma)
    if extra is not None:
        gaussian_stamp_add(model, extra[0], extra[1], extra[2], psf_sigma)
    if not noise:
        return model.copy(), model
    rng = np.random.default_rng(seed)
    img = (rng.poisson(np.clip(model, 0, None)).astype(np.float32)
           + rng.normal(0, read_noise, shape).astype(np.float32))
    return img, model


def add_cosmic_rays(image: NDArray[np.float32], n: int, seed: int = 3, amplitude: float = 3000.0
                    ) -> NDArray[np.bool_]:
    """Add ``n`` sharp cosmic rays (single pixels and short tracks); return their true pixel mask."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(image.shape, bool)
    ny, nx = image.shape
    for _ in range(n):
        y, x = rng.integers(5, ny - 5), rng.integers(5, nx - 5)
        length = rng.integers(1, 6)
        dy, dx = rng.choice([-1, 0, 1]), rng.choice([0, 1])
        for k in range(length):
            yy, xx = y + k * dy, x + k * dx
            if 0 <= yy < ny and 0 <= xx < nx:
                image[yy, xx] += amplitude * (0.5 + rng.random())
                truth[yy, xx] = True
    return truth


def to_raw(image_e: NDArray[np.float32], detector: Detector, *, overscan_level: float = 1000.0,
           read_noise_adu: float = 3.0, seed: int = 4, saturation_clip: bool = True) -> NDArray[np.float32]:
    """Disassemble an image in electrons into a raw array in ADU with overscan columns (the inverse of ISR)."""
    rng = np.random.default_rng(seed)
    boxes = [a.raw_overscan_bbox for a in detector.amplifiers]
    height = max(b[3] for b in boxes)
    width = max(b[2] for b in boxes)
    raw = np.zeros((height, width), np.float32)
    for amp in detector.amplifiers:
        dx0, dy0, dx1, dy1 = amp.raw_data_bbox
        ox0, oy0, ox1, oy1 = amp.raw_overscan_bbox
        ax0, ay0, ax1, ay1 = amp.bbox
        rowlevel = overscan_level + 5 * np.sin(np.arange(dy1 - dy0) / 50.0)  # a row-dependent bias drift
        raw[dy0:dy1, dx0:dx1] = image_e[ay0:ay1, ax0:ax1] / amp.gain + rowlevel[:, None]
        raw[oy0:oy1, ox0:ox1] = rowlevel[:, None] + rng.normal(0, read_noise_adu, (oy1 - oy0, ox1 - ox0))
    if saturation_clip:
        sat = min(a.saturation for a in detector.amplifiers)
        np.minimum(raw, sat, out=raw)
    return raw


def exposure_from(image: NDArray[np.float32], variance: NDArray[np.float32], wcs: WCS) -> Exposure:
    return Exposure(image=image, variance=variance, wcs=wcs)


def make_pair(shape: tuple[int, int] = (512, 512), *, seed: int = 11, sci_sigma: float = 2.0,
              tmpl_sigma: float = 1.3, extra=None, template_extra=None, template_shift=(7.3, -4.6),
              rotation: float = 0.3, n_stars: int = 500, half_width_deg: float = 0.02, sky_level: float = 600.0,
              template_var: float = 60.0):
    """(sky, science exposure in e- with NJYPERCT=2, template on its own grid in nJy) sharing one sky.

    ``extra`` / ``template_extra``: (x, y, flux) point sources added only to the science (e-) / template
    (nJy, template pixel coordinates).
    """
    sky = Sky.random(n_stars, half_width_deg=half_width_deg, seed=seed, mag_range=(16.5, 23.0))
    wcs_s = make_wcs(shape)
    sci, sci_model = render(sky, wcs_s, shape, psf_sigma=sci_sigma, njy_per_e=2.0, sky_level=sky_level, seed=seed,
                            extra=extra)
    sci -= sky_level
    sci_exp = Exposure(image=sci, variance=np.clip(sci_model, 1, None) + 25.0, wcs=wcs_s)
    sci_exp.metadata["NJYPERCT"] = 2.0
    tshape = (shape[0] + 48, shape[1] + 48)
    wcs_t = make_wcs(tshape, rotation_deg=rotation, shift=template_shift)
    t_img, _ = render(sky, wcs_t, tshape, psf_sigma=tmpl_sigma, njy_per_e=1.0, sky_level=0.0, noise=False,
                      extra=template_extra)
    rng = np.random.default_rng(seed + 2)
    t_img = t_img + rng.normal(0, np.sqrt(template_var), tshape).astype(np.float32)
    tmpl = Exposure(image=t_img, variance=np.full(tshape, template_var, np.float32), wcs=wcs_t)
    return sky, sci_exp, tmpl
