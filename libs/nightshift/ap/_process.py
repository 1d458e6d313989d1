"""The whole Alert Production chain for one (visit, detector), in memory, with per-step timings.

``raw → ISR → characterize → warp + subtract → DIA detect/measure →
associate → forced photometry → cutouts``. The PipelineTasks in
:mod:`nightshift.ap` wrap the steps one by one; this function runs them in
sequence for notebooks, the benchmark and the fidelity measurement.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from ..butler.formatters import Exposure
from ._associate import AssociationResult, associate
from ._characterize import CharacterizeConfig, CharacterizeResult, characterize
from ._cutouts import AlertCutouts, make_cutouts
from ._dia import DiaDetectConfig, DiaSources, detect_and_measure
from ._forced import forced_photometry
from ._geometry import Detector
from ._isr import IsrConfig, IsrResult, run_isr
from ._psf import PsfModel
from ._subtract import SubtractConfig, SubtractResult, prepare_template, subtract_images

__all__ = ["ApConfig", "ApResult", "process_detector"]


@dataclass(frozen=True)
class ApConfig:
    """Settings of every step of :func:`process_detector`."""

    isr: IsrConfig = field(default_factory=IsrConfig)
    characterize: CharacterizeConfig = field(default_factory=CharacterizeConfig)
    subtract: SubtractConfig = field(default_factory=SubtractConfig)
    detect: DiaDetectConfig = field(default_factory=DiaDetectConfig)
    association_radius_arcsec: float = 1.0
    warp_order: int = 3


@dataclass
class ApResult:
    """Everything one (visit, detector) produces, plus ``timings`` (wall seconds per step) and ``cpu_timings``
    (CPU seconds of the process per step: the fair figure on a shared machine)."""

    isr: IsrResult
    calib: CharacterizeResult
    subtraction: SubtractResult
    dia_sources: DiaSources
    association: AssociationResult
    forced: pa.Table
    cutouts: list[AlertCutouts]
    timings: dict[str, float] = field(default_factory=dict)
    cpu_timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def _timed(timings: dict[str, float], name: str, cpu: dict[str, float]) -> Iterator[None]:
    t0, c0 = time.perf_counter(), time.process_time()
    yield
    timings[name] = time.perf_counter() - t0
    cpu[name] = time.process_time() - c0


def process_detector(
    raw: NDArray[np.generic],
    detector: Detector,
    *,
    visit: int,
    midpoint_mjd: float,
    band: str,
    pointing_wcs: WCS,
    refcat: Table,
    template: Exposure,
    template_psf: PsfModel,
    preloaded_objects: pa.Table | None = None,
    preloaded_sources: pa.Table | None = None,
    bias: NDArray[np.floating] | None = None,
    flat: NDArray[np.floating] | None = None,
    defects: NDArray[np.bool_] | None = None,
    config: ApConfig | None = None,
) -> ApResult:
    """Run Alert Production on one raw detector image.

    Parameters
    ----------
    raw : numpy.ndarray
        Raw array (ADU, with overscan).
    detector : Detector
        Amplifier geometry.
    visit : int
        Visit id.
    midpoint_mjd : float
        Exposure midpoint (MJD TAI).
    band : str
        Filter band.
    pointing_wcs : astropy.wcs.WCS
        Initial WCS from the telescope pointing.
    refcat : astropy.table.Table
        Reference catalog (``ra``, ``dec``, ``mag``).
    template : Exposure
        Template (coadd) covering the detector, with WCS; ``NJYPERCT`` in its metadata (default 1: nJy).
    template_psf : PsfModel
        The template's PSF.
    preloaded_objects, preloaded_sources : pyarrow.Table, optional
        The field's DIA objects and their source history (APDB preload).
    bias, flat, defects : numpy.ndarray, optional
        Calibrations.
    config : ApConfig, optional
        Settings.

    Returns
    -------
    ApResult
        The outputs of every step and their timings.
    """
    cfg = config or ApConfig()
    tm: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with _timed(tm, "isr", cpu):
        isr = run_isr(raw, detector, bias=bias, flat=flat, defects=defects, config=cfg.isr)
    with _timed(tm, "characterize", cpu):
        calib = characterize(isr.exposure, refcat, pointing_wcs, cfg.characterize)
    calexp = calib.calexp
    with _timed(tm, "warp", cpu):
        warped = prepare_template(template, calexp, order=cfg.warp_order)
    with _timed(tm, "subtract", cpu):
        stars = calib.sources
        sub = subtract_images(calexp, warped, calib.psf, template_psf, np.asarray(stars["x"]),
                              np.asarray(stars["y"]), np.nan_to_num(np.asarray(stars["psfFlux"])), cfg.subtract)
    with _timed(tm, "detect_measure", cpu):
        dia = detect_and_measure(sub.difference, calib.psf, visit=visit, detector=detector.id,
                                 midpoint_mjd=midpoint_mjd, band=band, science=calexp,
                                 template=sub.matched_template, config=cfg.detect)
    with _timed(tm, "associate", cpu):
        assoc = associate(dia.table, preloaded_objects, preloaded_sources,
                          radius_arcsec=cfg.association_radius_arcsec)
    with _timed(tm, "forced", cpu):
        known = preloaded_objects if preloaded_objects is not None else assoc.objects.slice(0, 0)
        forced = forced_photometry(known, sub.difference, calexp, calib.psf, visit=visit, detector=detector.id,
                                   midpoint_mjd=midpoint_mjd, band=band)
    with _timed(tm, "cutouts", cpu):
        cutouts = make_cutouts(assoc.sources, sub.difference, calexp, sub.matched_template)
    tm["total"] = sum(tm.values())
    cpu["total"] = sum(cpu.values())
    return ApResult(isr, calib, sub, dia, assoc, forced, cutouts, tm, cpu)
