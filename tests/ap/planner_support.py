"""A repository and nextVisit events for the planner's tests, and the expected plan computed independently.

The expectation does not use the planner's geometry: each detector's footprint
comes from the simulator's own per-detector WCS (``Camera.wcs_header``, the WCS
written into every simulated raw) through astropy, and the patches it overlaps
from a brute-force test against every patch of the sky map.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from nightshift.butler import Butler, DatasetRef, Exposure
from nightshift.events import NextVisit
from nightshift.obs import lsstcam_like
from nightshift.obs.sim import TEMPLATE, Observation, certify_master_calibs, next_visit_payload
from nightshift.sky import ConvexPolygon, HealpixSkyMap, point_pixel

INSTRUMENT = "LSSTCam-sim"
RA, DEC, ROTATION = 150.0, 2.0, 30.0
SKYMAP = "planner_sky"
#: One tract of the sky map: the field straddles its edge, so some detectors see it and some do not.
SKY = HealpixSkyMap(SKYMAP, tract_order=3, patch_levels=4, tracts=(point_pixel(RA, DEC, 3),))
#: Detectors with master calibrations: a block around the centre but for 94 and 95 (kept small: each costs puts).
CALIBRATED = frozenset(range(84, 105)) - {94, 95}
CALIB_BEGIN, CALIB_END = "2026-11-01", "2027-01-01"
TEMPLATE_RUN = "templates/planner"


@dataclass
class Repo:
    path: Path
    bias: dict[int, DatasetRef]
    flat: dict[int, DatasetRef]  # r_57 only
    templates: dict[tuple[int, int], DatasetRef]  # band r, by (tract, patch)


@dataclass(frozen=True)
class Truth:
    """What the simulator's WCS says about one detector."""

    footprint: ConvexPolygon
    corner_pixels: np.ndarray  # (4, 2) ra, dec of the four corner pixels' centres
    patches: frozenset[tuple[int, int]]


def truth(detectors: list[int] | range = range(189), ra: float = RA, dec: float = DEC,
          rotation: float = ROTATION) -> dict[int, Truth]:
    camera = lsstcam_like(4096)
    polygons = [(t.id, p.id, ConvexPolygon(tuple(p.vertices))) for t in SKY for p in t.patches]
    out = {}
    for d in detectors:
        det = camera[d]
        wcs = WCS(camera.wcs_header(d, ra, dec, rotation))
        w, h = det.width, det.height
        edges = np.array(wcs.all_pix2world([-0.5, w - 0.5, w - 0.5, -0.5], [-0.5, -0.5, h - 0.5, h - 0.5], 0)).T
        centres = np.array(wcs.all_pix2world([0, w - 1, w - 1, 0], [0, 0, h - 1, h - 1], 0)).T
        footprint = ConvexPolygon(tuple((float(a) % 360.0, float(b)) for a, b in edges))
        patches = frozenset((t, p) for t, p, poly in polygons if poly.overlaps(footprint))
        out[d] = Truth(footprint, centres, patches)
    return out


def make_repo(path: Path, template_patches: list[tuple[int, int]]) -> Repo:
    """A SQLite repository with the sky map, the simulator's master calibrations (r_57 flats) of
    :data:`CALIBRATED`, certified from :data:`CALIB_BEGIN` to :data:`CALIB_END`, and r-band templates of
    ``template_patches`` (tiny images: the planner reads the registry only)."""
    with Butler.create(path) as butler:
        butler.registry.register_skymap(SKY)
        refs = certify_master_calibs(butler, INSTRUMENT, sorted(CALIBRATED), ["r_57"], begin=CALIB_BEGIN,
                                     end=CALIB_END, detector_size=16, seed=1)
        butler.register_dataset_type(TEMPLATE)
        butler.registry.insert_dimension_records("band", [{"name": "r"}], skip_existing=True)
        templates = [butler.put(Exposure(image=np.zeros((4, 4), np.float32)), TEMPLATE,
                                {"skymap": SKYMAP, "tract": t, "patch": p, "band": "r"}, run=TEMPLATE_RUN)
                     for t, p in template_patches]
    return Repo(
        path,
        {int(r.data_id["detector"]): r for r in refs if r.dataset_type.name == "bias"},
        {int(r.data_id["detector"]): r for r in refs if r.dataset_type.name == "flat"},
        {(int(r.data_id["tract"]), int(r.data_id["patch"])): r for r in templates},
    )


def next_visit(seq: int = 1, detectors: list[int] | None = None, *, instrument: str = INSTRUMENT,
               physical_filter: str = "r_57", begin: str = "2026-12-07T03:00:00") -> NextVisit:
    """The simulator's nextVisit payload for one exposure at the test field."""
    obs = Observation(instrument, 20261206, seq, begin, physical_filter=physical_filter, ra=RA, dec=DEC,
                      sky_angle=ROTATION)
    payload = next_visit_payload(obs, list(range(189)) if detectors is None else detectors)
    payload["issued_at"] = datetime.datetime.fromtimestamp(payload["issued_at"] / 1e6, datetime.UTC)
    return NextVisit(**payload)
