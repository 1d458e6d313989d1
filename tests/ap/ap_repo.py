"""Test-only: a butler repository with simulated AP inputs (raws, bias, flat, refcat, template, visit regions).

Used by ``tests/ap/test_ap_pipeline.py`` and ``loadtests/ap_pipeline_bench.py``. Detectors are
placed side by side on the sky (``SPACING`` pixels apart along x); the template covers the
detectors in ``template_detectors``; a transient at a fixed sky position on the first
detector is on in every visit (so later visits associate with the object the first made).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ap_sim import Sky, add_cosmic_rays, make_wcs, render, to_raw
from astropy.time import Time
from astropy.wcs import WCS

from nightshift.ap import DetectorGeometry, PsfModel
from nightshift.butler import DatasetType, Timespan
from nightshift.butler._butler import Butler
from nightshift.butler.formatters import Exposure

INSTRUMENT = "Cam"
SPACING = 420  # pixels between detector centres along x
MJD0 = 61000.0


@dataclass
class ApRepoSpec:
    """What to put in the repository."""

    visits: Sequence[int] = (1, 2)
    detectors: Sequence[int] = (1, 2)
    size: int = 384
    amps: tuple[int, int] = (2, 2)  # amplifiers per row, per column
    overscan: int = 16
    template_detectors: Sequence[int] | None = None  # default: all
    no_bias: Sequence[int] = ()  # detectors without a bias
    corrupt_amp: dict[int, int] = field(default_factory=dict)  # detector -> amplifier index filled with NaN
    lost_pointing: Sequence[int] = ()  # detectors whose pointing WCS is a degree off (astrometry must fail)
    transient_e: float = 40000.0
    n_cosmic_rays: int = 10
    seed: int = 8

    @property
    def amp_shape(self) -> tuple[int, int]:
        return self.size // self.amps[1], self.size // self.amps[0]

    def isr_config(self) -> dict[str, object]:
        return {"amp_grid": list(self.amps), "amp_shape": list(self.amp_shape), "overscan": self.overscan,
                "saturation": 1e9, "cr_psf_sigma": 1.2}


def detector_wcs(spec: ApRepoSpec, det: int, *, shift: tuple[float, float] = (0.0, 0.0),
                 rotation_deg: float = 0.0) -> WCS:
    """The true WCS of a detector: centred ``(det - 1) * SPACING`` pixels east of the field centre."""
    off = (det - 1) * SPACING
    return make_wcs((spec.size, spec.size), shift=(-off + shift[0], shift[1]), rotation_deg=rotation_deg)


def transient_xy(spec: ApRepoSpec) -> tuple[float, float]:
    """The transient's pixel position on the first detector."""
    return 0.52 * spec.size + 0.4, 0.47 * spec.size + 0.6


def make_ap_repo(root: Path, spec: ApRepoSpec) -> Butler:
    """Create the repository at ``root`` and fill it (raws in ``raw/all``, the rest in ``ap/inputs``)."""
    butler = Butler.create(root, datastore={"cls": "posix", "name": "posix", "root": "datastore", "fsync": False})
    reg = butler.registry
    reg.insert_dimension_records("instrument", [{"name": INSTRUMENT, "visit_max": 10**6, "detector_max": 1000}])
    reg.insert_dimension_records("band", [{"name": "r"}], skip_existing=True)
    reg.insert_dimension_records("physical_filter", [{"instrument": INSTRUMENT, "name": "r_01", "band": "r"}])
    reg.insert_dimension_records("day_obs", [{"instrument": INSTRUMENT, "id": 20260101}])
    reg.insert_dimension_records("detector", [{"instrument": INSTRUMENT, "id": d, "full_name": f"D{d}",
                                               "purpose": "SCIENCE"} for d in spec.detectors])
    # the visit footprint: the corners of the detector row (a little generous)
    dets = sorted(spec.detectors)
    lo, hi = detector_wcs(spec, dets[0]), detector_wcs(spec, dets[-1])
    n = spec.size
    corners = [lo.all_pix2world([[-20, -20]], 0)[0], hi.all_pix2world([[n + 20, -20]], 0)[0],
               hi.all_pix2world([[n + 20, n + 20]], 0)[0], lo.all_pix2world([[-20, n + 20]], 0)[0]]
    region = [(float(ra), float(dec)) for ra, dec in corners]
    mjd = {v: MJD0 + 0.01 * i for i, v in enumerate(spec.visits)}
    reg.insert_dimension_records("visit", [
        {"instrument": INSTRUMENT, "id": v, "physical_filter": "r_01", "day_obs": 20260101, "seeing": 0.8,
         "region": region,
         "timespan": Timespan(Time(mjd[v] - 15 / 86400, format="mjd", scale="tai"),
                              Time(mjd[v] + 15 / 86400, format="mjd", scale="tai"))}
        for v in spec.visits])
    for dt in (DatasetType("raw", ["instrument", "visit", "detector"], "Exposure"),
               DatasetType("bias", ["instrument", "detector"], "NumpyArray"),
               DatasetType("flat", ["instrument", "detector"], "NumpyArray"),
               DatasetType("ap_refcat", ["instrument"], "AstropyTable"),
               DatasetType("ap_template", ["instrument"], "Exposure")):
        butler.register_dataset_type(dt)
    half = 0.5 * (SPACING * (dets[-1] - dets[0]) + n + 100) * 0.2 / 3600
    xg = 0.5 * (SPACING * (dets[0] - 1) + SPACING * (dets[-1] - 1) + n)  # row centre, detector 1's pixels
    centre = detector_wcs(spec, 1).all_pix2world([[xg, n / 2]], 0)[0]
    sky = Sky.random(int(2400 * (half / 0.04) ** 2), ra0=float(centre[0]), dec0=float(centre[1]),
                     half_width_deg=half, seed=spec.seed, mag_range=(16.5, 23.0))
    geom = {d: DetectorGeometry.grid(d, *spec.amps, spec.amp_shape, overscan=spec.overscan, saturation=1e9)
            for d in spec.detectors}
    tx, ty = transient_xy(spec)
    raws = []
    for v in spec.visits:
        for d in spec.detectors:
            wcs = detector_wcs(spec, d)
            extra = None
            if d == dets[0]:
                extra = (np.array([tx]), np.array([ty]), np.array([spec.transient_e]))
            seed = 1000 * v + d
            img, _ = render(sky, wcs, (n, n), psf_sigma=1.9, njy_per_e=2.0, sky_level=700.0, seed=seed, extra=extra)
            add_cosmic_rays(img, spec.n_cosmic_rays, seed=seed)
            raw = to_raw(img, geom[d], seed=seed)
            if d in spec.corrupt_amp:
                x0, y0, x1, y1 = geom[d].amplifiers[spec.corrupt_amp[d]].raw_data_bbox
                raw[y0:y1, x0:x1] = np.nan
            pointing = detector_wcs(spec, d, shift=(6.0, -4.0), rotation_deg=0.02)
            if d in spec.lost_pointing:
                pointing.wcs.crval = [pointing.wcs.crval[0] + 1.0, pointing.wcs.crval[1]]
            exp = Exposure(image=raw, wcs=pointing)
            exp.metadata["MJD-MID"] = mjd[v]
            exp.metadata["BAND"] = "r"
            raws.append((exp, {"instrument": INSTRUMENT, "visit": v, "detector": d}))
    butler.put_many(raws, "raw", run="raw/all")
    for d in spec.detectors:
        if d not in spec.no_bias:
            butler.put(np.zeros((n, n), np.float32), "bias", {"instrument": INSTRUMENT, "detector": d},
                       run="ap/inputs")
        butler.put(np.ones((n, n), np.float32), "flat", {"instrument": INSTRUMENT, "detector": d}, run="ap/inputs")
    tdets = sorted(spec.template_detectors if spec.template_detectors is not None else spec.detectors)
    tw = SPACING * (tdets[-1] - tdets[0]) + n + 80
    twcs = make_wcs((n + 80, tw), rotation_deg=0.2,
                    shift=(44.2 - SPACING * (tdets[0] - 1) - 0.5 * (tw - n), 3.1))
    timg, _ = render(sky, twcs, (n + 80, tw), psf_sigma=1.3, njy_per_e=1.0, sky_level=0.0, noise=False)
    timg += np.random.default_rng(0).normal(0, 6.0, timg.shape).astype(np.float32)
    template = Exposure(image=timg, variance=np.full(timg.shape, 36.0, np.float32), wcs=twcs,
                        psf=PsfModel.gaussian(1.3, half=12).kernel)
    template.metadata["NJYPERCT"] = 1.0
    butler.put(template, "ap_template", {"instrument": INSTRUMENT}, run="ap/inputs")
    butler.put(sky.refcat(), "ap_refcat", {"instrument": INSTRUMENT}, run="ap/inputs")
    return butler
