"""Master calibrations (bias, flat) certified into a CALIBRATION collection, and templates per sky-map patch.

Both come from the same models the raws are rendered with (``bias_structure``,
``flat_pattern``, the static catalog), so processing a simulated raw with them
removes exactly what the simulator put in, up to noise.

- ``bias`` (instrument, detector): the bias left after overscan subtraction, ADU, as the mean of 20 frames.
- ``flat`` (instrument, detector, physical_filter): the relative response, mean 1, as from 20 dome flats.
- ``template_coadd`` (skymap, tract, patch, band): a deep coadd (``depth`` x 30 s, seeing 0.6" by default)
  of the static sky, pixel values in electrons per 30 s (zero point ``ZERO_POINTS[band] + 2.5 log10 30``),
  with variance, WCS (TAN, north up) and its PSF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...butler import Butler, DatasetRef, DatasetType
from .._instruments import get_instrument
from ._catalog import BAND_OFFSETS, sky_catalog
from ._render import SKY_MAGS, ZERO_POINTS, bias_structure, flat_pattern
from ._stamps import add_stamps, stamp_bank

__all__ = ["BIAS", "FLAT", "TEMPLATE", "certify_master_calibs", "make_templates"]

BIAS = DatasetType("bias", ("instrument", "detector"), "Exposure", is_calibration=True)
FLAT = DatasetType("flat", ("instrument", "detector", "physical_filter"), "Exposure", is_calibration=True)
TEMPLATE = DatasetType("template_coadd", ("skymap", "tract", "patch", "band"), "Exposure")
_FRAMES = 20
_MAX_SIDE = 8192


def certify_master_calibs(butler: Butler, instrument: str, detectors: Sequence[int], physical_filters: Sequence[str],
                          *, begin: Any, end: Any, detector_size: int = 4096, seed: int = 0) -> list[DatasetRef]:
    """Write master bias and flats into ``<instrument>/calib/sim/<seed>`` and certify them in ``<instrument>/calib``.

    Parameters
    ----------
    begin, end : astropy.time.Time, datetime or ISO string
        Validity range of the certification.
    """
    from ...butler import CollectionType, Exposure, Timespan

    inst = get_instrument(instrument, detector_size=detector_size)
    inst.register(butler.registry)
    for dt in (BIAS, FLAT):
        butler.register_dataset_type(dt)
    run = f"{instrument}/calib/sim/{seed}"
    refs = []
    for det in detectors:
        detector = inst.camera[det]
        rng = np.random.default_rng([seed, 4242, det])
        rn = np.zeros((detector.height, detector.width), dtype=np.float32)
        for amp in detector.amplifiers:
            x0, y0, x1, y1 = amp.bbox
            rn[y0:y1, x0:x1] = amp.read_noise / amp.gain
        bias = bias_structure(inst.camera, det) + rn / math.sqrt(_FRAMES) * rng.standard_normal(rn.shape, np.float32)
        meta = {"OBSTYPE": "bias", "NFRAMES": _FRAMES, "CALIBSRC": "nightshift.obs.sim", "NSSEED": seed}
        refs.append(butler.put(Exposure(image=bias, variance=rn**2 / _FRAMES, metadata=meta), BIAS,
                               {"instrument": instrument, "detector": det}, run=run))
        base = flat_pattern(inst.camera, det)
        dead = np.random.default_rng([79, det]).integers(0, detector.width, 3)[2]
        base[:, dead] *= np.float32(0.05)  # the dead column responds to light as little as in the raws
        for pf in physical_filters:
            inst.physical_filter(pf)
            noise = rng.standard_normal(base.shape, np.float32) / math.sqrt(_FRAMES * 20_000.0)
            flat = (base * (1 + noise)).astype(np.float32)
            flat /= np.float32(np.median(flat))
            refs.append(butler.put(Exposure(image=flat, variance=(flat**2 / (_FRAMES * 20_000.0)).astype(np.float32),
                                            metadata={**meta, "OBSTYPE": "flat", "FILTER": pf}), FLAT,
                                   {"instrument": instrument, "detector": det, "physical_filter": pf}, run=run))
    collection = f"{instrument}/calib"
    butler.registry.register_collection(collection, CollectionType.CALIBRATION)
    butler.registry.certify(collection, refs, Timespan(begin, end))
    return refs


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def _centre_and_radius(vertices: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Centre (ra, dec) of a polygon and the largest angular distance (degrees) from it to a vertex."""
    v = _unit(*np.array(vertices, dtype=float).T)
    c = v.mean(axis=0)
    c /= np.linalg.norm(c)
    radius = float(np.degrees(np.arccos(np.clip(v @ c, -1.0, 1.0))).max())
    return float(np.degrees(np.arctan2(c[1], c[0])) % 360.0), float(np.degrees(np.arcsin(c[2]))), radius


def make_templates(butler: Butler, skymap: Any, patches: Sequence[tuple[int, int]], bands: Sequence[str], *,
                   seed: int = 0, pixel_scale: float = 0.2, seeing: float = 0.6, depth: float = 10.0,
                   run: str = "templates/sim") -> list[DatasetRef]:
    """Render deep coadds of the static sky for (tract, patch) pairs of a registered HEALPix sky map.

    Raises
    ------
    ValueError
        A patch would exceed 8192 pixels a side at ``pixel_scale`` (use a finer sky map or coarser pixels).
    """
    from astropy.wcs import WCS

    from ...butler import Exposure

    butler.registry.register_skymap(skymap)
    butler.register_dataset_type(TEMPLATE)
    butler.registry.insert_dimension_records("band", [{"name": b} for b in bands], skip_existing=True)
    bank = stamp_bank(round(seeing, 3), round(pixel_scale, 4))
    refs = []
    for tract_id, patch_id in patches:
        patch = next(p for p in skymap.tract(tract_id).patches if p.id == patch_id)
        ra0, dec0, extent = _centre_and_radius(patch.vertices)
        side = int(math.ceil(2 * extent * 3600 / pixel_scale)) + 2
        if side > _MAX_SIDE:
            raise ValueError(f"patch {tract_id}/{patch_id} is {side} pixels across at {pixel_scale}\"/pixel (max "
                             f"{_MAX_SIDE}): use a sky map with more patch levels or a coarser pixel_scale")
        k = pixel_scale / 3600
        wcs = WCS({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra0, "CRVAL2": dec0,
                   "CRPIX1": (side + 1) / 2, "CRPIX2": (side + 1) / 2, "CD1_1": -k, "CD1_2": 0.0, "CD2_1": 0.0,
                   "CD2_2": k, "CUNIT1": "deg", "CUNIT2": "deg"})
        catalog = sky_catalog(seed, ra0, dec0, extent * 1.5 + 0.05)
        for band in bands:
            zp = ZERO_POINTS[band]
            light = np.zeros((side, side), dtype=np.float32)
            sky = 10 ** (-0.4 * (SKY_MAGS[band] - zp)) * pixel_scale**2 * 30.0
            x, y = wcs.all_world2pix(catalog.ra, catalog.dec, 0)
            flux = 10 ** (-0.4 * (catalog.mag_r + BAND_OFFSETS[band] * catalog.colour - zp)) * 30.0
            stars, gals = catalog.kind == "star", catalog.kind == "galaxy"
            add_stamps(light, x[stars], y[stars], flux[stars], bank.psf)
            size, shape = bank.galaxy_index(catalog.hlr[gals], catalog.e1[gals], catalog.e2[gals])
            add_stamps(light, np.round(x[gals]), np.round(y[gals]), flux[gals],
                       bank.galaxies.reshape(-1, *bank.galaxies.shape[-2:]), size * len(bank.shapes) + shape)
            rng = np.random.default_rng([seed, tract_id, patch_id, ord(band[0])])
            variance = ((light + sky) / depth).astype(np.float32)
            image = light + np.sqrt(variance) * rng.standard_normal(light.shape, np.float32)
            psf = bank.psf[2, 2]
            meta = {"DEPTH": depth, "SEEING": seeing, "BAND": band, "ZP30": zp + 2.5 * math.log10(30.0),
                    "NSSEED": seed}
            refs.append(butler.put(Exposure(image=image.astype(np.float32), variance=variance, wcs=wcs, psf=psf,
                                            metadata=meta), TEMPLATE,
                                   {"skymap": skymap.name, "tract": tract_id, "patch": patch_id, "band": band},
                                   run=run))
    return refs
