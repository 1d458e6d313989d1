"""PipelineTasks of Alert Production: thin wrappers of the pure functions, I/O by the framework.

Per (instrument, visit, detector), dataset types in quotes::

    "raw" (Exposure: raw array incl. overscan, pointing WCS, MJD-MID/BAND in metadata)
      + "bias", "flat" (optional prerequisites)          -> IsrTask           -> "post_isr"
    "post_isr" + "ap_refcat" (prerequisite)               -> CharacterizeTask  -> "calexp", "calexp_src",
                                                                                "calexp_summary"
    "calexp" + "calexp_src" + "ap_template" (prereq.)     -> SubtractTask      -> "difference", "matched_template"
    "difference" + "calexp" + "matched_template"          -> DetectAndMeasureTask -> "dia_source_unassociated"
    "dia_source_unassociated" + "difference" + "calexp"
      + "preloaded_dia_objects" (deferred, per visit)     -> AssociateDiaTask  -> "dia_source", "dia_object",
                                                                                "dia_forced_source"

``preloaded_dia_objects`` (and, optionally, ``preloaded_dia_sources``, the
objects' source history) are ``ArrowTable`` per (instrument, visit), written
by :class:`~nightshift.ap.PreloadDiaObjectsTask` from the APDB;
AssociateDiaTask reads them ``deferred``, so the preload runs in parallel
with the image processing (REQ-0030). :class:`~nightshift.ap.StoreApdbTask`
stores the outputs in the APDB (``_apdb_tasks.py``); ``AP_PIPELINE`` is the
YAML chaining all of them. The ``bias``/``flat``/``ap_template``
prerequisites are declared ``min_count=0``: a quantum whose calibration or
template is missing is planned and fails naming the dataset type and data
ID (``require_bias``/``require_flat``; the template is always required),
while the visit's other detectors go on. The amplifier geometry comes from
the IsrTask config (a grid) until the instrument package provides it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from astropy.table import Table

from ..butler.formatters import Exposure
from ..pipe import (
    Input,
    Output,
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    PrerequisiteInput,
    QuantumContext,
    Struct,
)
from ._associate import associate
from ._characterize import CharacterizeConfig, characterize
from ._dia import DiaDetectConfig, detect_and_measure
from ._exceptions import ApInputError, MissingInputError
from ._forced import forced_photometry
from ._geometry import DetectorGeometry
from ._isr import IsrConfig, run_isr
from ._psf import PsfModel
from ._subtract import SubtractConfig, prepare_template, subtract_images

__all__ = [
    "AssociateDiaTask",
    "AssociateDiaTaskConfig",
    "CharacterizeTask",
    "CharacterizeTaskConfig",
    "DetectAndMeasureTask",
    "DetectAndMeasureTaskConfig",
    "IsrTask",
    "IsrTaskConfig",
    "SubtractTask",
    "SubtractTaskConfig",
]

DET = ("instrument", "visit", "detector")


def _required(context: QuantumContext, name: str) -> Any:
    """Read a prerequisite declared ``min_count=0`` that this quantum needs: if pre-flight found none, fail
    the quantum naming the dataset type and the data ID (the other quanta of the visit go on)."""
    obj = context.get(name)
    if obj is None:
        conn = context.node.connections[name]
        dims = conn.dataset_type.dimensions
        wanted = {d: context.data_id[d] for d in dims if d in context.data_id}
        raise MissingInputError(
            f"task {context.node.label!r} {dict(context.data_id)}: no {conn.dataset_type.name!r} dataset "
            f"(prerequisite {name!r}) for data ID {wanted} in the input collections; ingest or certify it, "
            "or run without this detector")
    return obj


def _midpoint_and_band(exp: Exposure) -> tuple[float, str | None]:
    md = exp.metadata
    if "MJD-MID" not in md:
        raise ApInputError("the exposure metadata has no MJD-MID (exposure midpoint, MJD TAI): the raw must carry it")
    band = md.get("BAND")
    return float(md["MJD-MID"]), (str(band) if band is not None else None)


# ---------------------------------------------------------------------------------------------- ISR
class IsrConnections(PipelineTaskConnections, dimensions=DET):
    raw = Input("raw", "Exposure", DET, doc="Raw detector image with overscan; pointing WCS; MJD-MID, BAND")
    bias = PrerequisiteInput("bias", "NumpyArray", ("instrument", "detector"), min_count=0,
                             doc="Assembled bias residual (electrons)")
    flat = PrerequisiteInput("flat", "NumpyArray", ("instrument", "detector"), min_count=0,
                             doc="Assembled flat field (normalised)")
    post_isr = Output("post_isr", "Exposure", DET, doc="Assembled image in electrons with mask and variance")


class IsrTaskConfig(PipelineTaskConfig):
    """Config of :class:`IsrTask`: the amplifier grid and the ISR switches."""

    amp_grid: tuple[int, int] = (8, 2)  # amplifiers per row, per column
    amp_shape: tuple[int, int] = (2048, 512)  # rows, cols of one amplifier
    overscan: int = 32
    gain: float = 1.0
    read_noise: float = 5.0
    saturation: float = 65535.0
    do_cosmic_rays: bool = True
    cr_nsigma: float = 6.0
    cr_psf_sigma: float = 1.0
    # a missing bias/flat fails the quantum (MissingInputError naming it) instead of skipping the correction
    require_bias: bool = False
    require_flat: bool = False


class IsrTask(PipelineTask):
    """Overscan, bias, flat, masks, variance and cosmic rays (:func:`~nightshift.ap.run_isr`)."""

    ConfigClass = IsrTaskConfig
    ConnectionsClass = IsrConnections
    config: IsrTaskConfig

    def run_quantum(self, context: QuantumContext) -> None:
        raw = context.get("raw")
        det = DetectorGeometry.grid(int(context.data_id["detector"]), *self.config.amp_grid, self.config.amp_shape,
                                    overscan=self.config.overscan, gain=self.config.gain,
                                    read_noise=self.config.read_noise, saturation=self.config.saturation)
        bias = _required(context, "bias") if self.config.require_bias else context.get("bias")
        flat = _required(context, "flat") if self.config.require_flat else context.get("flat")
        context.put_all(self.run(raw, det, bias, flat))

    def run(self, raw: Exposure, detector: DetectorGeometry, bias: Any = None,
            flat: Any = None) -> Struct:
        cfg = IsrConfig(do_cosmic_rays=self.config.do_cosmic_rays, cr_nsigma=self.config.cr_nsigma,
                        cr_psf_sigma=self.config.cr_psf_sigma)
        res = run_isr(raw.image, detector, bias=bias, flat=flat, config=cfg)
        exp = res.exposure
        exp.wcs = raw.wcs
        exp.metadata = raw.metadata.copy()
        exp.metadata["NCRPIX"] = (res.n_cosmic_ray_pixels, "pixels masked as cosmic rays")
        exp.metadata["BADAMPS"] = (",".join(sorted(res.bad_amplifiers)), "amplifiers masked as corrupt")
        if res.bad_amplifiers:
            self.log.warning("corrupt amplifier(s) masked: %s", res.bad_amplifiers)
        return Struct(post_isr=exp)


# ------------------------------------------------------------------------------------- characterize
class CharacterizeConnections(PipelineTaskConnections, dimensions=DET):
    post_isr = Input("post_isr", "Exposure", DET)
    refcat = PrerequisiteInput("ap_refcat", "AstropyTable", ("instrument",),
                               doc="Reference catalog (ra, dec, mag) covering the detector")
    calexp = Output("calexp", "Exposure", DET, doc="Background-subtracted, WCS, PSF, NJYPERCT")
    sources = Output("calexp_src", "AstropyTable", DET, doc="Sources measured on the calexp")
    summary = Output("calexp_summary", "StructuredDataDict", DET, doc="Fit diagnostics")


class CharacterizeTaskConfig(PipelineTaskConfig):
    """Config of :class:`CharacterizeTask`."""

    detection_nsigma: float = 5.0
    max_astrometry_rms_arcsec: float = 0.3


class CharacterizeTask(PipelineTask):
    """Background, detection, PSF, WCS and zero point (:func:`~nightshift.ap.characterize`)."""

    ConfigClass = CharacterizeTaskConfig
    ConnectionsClass = CharacterizeConnections
    config: CharacterizeTaskConfig

    def run(self, post_isr: Exposure, refcat: Table) -> Struct:
        from ._astrometry import AstrometryConfig

        cfg = CharacterizeConfig(detection_nsigma=self.config.detection_nsigma,
                                 astrometry=AstrometryConfig(max_rms_arcsec=self.config.max_astrometry_rms_arcsec))
        res = characterize(post_isr, refcat, config=cfg)
        summary = {k: (list(v) if isinstance(v, tuple) else v) for k, v in res.diagnostics.items()}
        return Struct(calexp=res.calexp, sources=res.sources, summary=summary)


# ----------------------------------------------------------------------------------------- subtract
class SubtractConnections(PipelineTaskConnections, dimensions=DET):
    calexp = Input("calexp", "Exposure", DET)
    sources = Input("calexp_src", "AstropyTable", DET)
    # min_count=0: a quantum without a template is planned and fails naming it (MissingInputError)
    template = PrerequisiteInput("ap_template", "Exposure", ("instrument",), min_count=0,
                                 doc="Template coadd covering the detector (WCS, PSF kernel, NJYPERCT)")
    difference = Output("difference", "Exposure", DET)
    matched_template = Output("matched_template", "Exposure", DET)


class SubtractTaskConfig(PipelineTaskConfig):
    """Config of :class:`SubtractTask`."""

    spatial_degree: int = 1
    n_patches: int = 4
    warp_order: int = 3


class SubtractTask(PipelineTask):
    """Warp the template, PSF-match (Alard–Lupton) and subtract (:func:`~nightshift.ap.subtract_images`)."""

    ConfigClass = SubtractTaskConfig
    ConnectionsClass = SubtractConnections
    config: SubtractTaskConfig

    def run_quantum(self, context: QuantumContext) -> None:
        template = _required(context, "template")
        context.put_all(self.run(context.get("calexp"), context.get("sources"), template))

    def run(self, calexp: Exposure, sources: Table, template: Exposure) -> Struct:
        if template.psf is None or calexp.psf is None:
            raise ApInputError("the template and the calexp both need a PSF kernel")
        warped = prepare_template(template, calexp, order=self.config.warp_order)
        res = subtract_images(calexp, warped, PsfModel(calexp.psf), PsfModel(template.psf),
                              np.asarray(sources["x"]), np.asarray(sources["y"]),
                              np.nan_to_num(np.asarray(sources["psfFlux"])),
                              SubtractConfig(spatial_degree=self.config.spatial_degree,
                                             n_patches=self.config.n_patches))
        self.log.info("subtraction: %s", res.diagnostics)
        return Struct(difference=res.difference, matched_template=res.matched_template)


# --------------------------------------------------------------------------------- detect + measure
class DetectAndMeasureConnections(PipelineTaskConnections, dimensions=DET):
    difference = Input("difference", "Exposure", DET)
    calexp = Input("calexp", "Exposure", DET)
    matched_template = Input("matched_template", "Exposure", DET)
    dia_sources = Output("dia_source_unassociated", "ArrowTable", DET, doc="DiaSource rows, diaObjectId unset")


class DetectAndMeasureTaskConfig(PipelineTaskConfig):
    """Config of :class:`DetectAndMeasureTask`."""

    nsigma: float = 5.0
    cut_artefacts: bool = True


class DetectAndMeasureTask(PipelineTask):
    """DIA detection and measurement (:func:`~nightshift.ap.detect_and_measure`)."""

    ConfigClass = DetectAndMeasureTaskConfig
    ConnectionsClass = DetectAndMeasureConnections
    config: DetectAndMeasureTaskConfig

    def run_quantum(self, context: QuantumContext) -> None:
        inputs = context.get_all()
        context.put_all(self.run(**inputs, visit=int(context.data_id["visit"]),
                                 detector=int(context.data_id["detector"])))

    def run(self, difference: Exposure, calexp: Exposure, matched_template: Exposure,
            visit: int = 0, detector: int = 0) -> Struct:
        if calexp.psf is None:
            raise ApInputError("the calexp has no PSF kernel")
        mjd, band = _midpoint_and_band(calexp)
        res = detect_and_measure(difference, PsfModel(calexp.psf), visit=visit, detector=detector,
                                 midpoint_mjd=mjd, band=band, science=calexp, template=matched_template,
                                 config=DiaDetectConfig(nsigma=self.config.nsigma,
                                                        cut_artefacts=self.config.cut_artefacts))
        self.log.info("DIA sources: %d kept, cuts %s", res.table.num_rows, res.cut_counts)
        return Struct(dia_sources=res.table)


# ------------------------------------------------------------------------------ associate + forced
class AssociateDiaConnections(PipelineTaskConnections, dimensions=DET):
    dia_sources = Input("dia_source_unassociated", "ArrowTable", DET)
    difference = Input("difference", "Exposure", DET)
    calexp = Input("calexp", "Exposure", DET)
    preloaded = Input("preloaded_dia_objects", "ArrowTable", ("instrument", "visit"), deferred=True,
                      doc="The field's DiaObjects from the APDB preload (produced in parallel)")
    preloaded_sources = Input("preloaded_dia_sources", "ArrowTable", ("instrument", "visit"), deferred=True,
                              min_count=0, doc="Their DiaSource history (summary statistics), from the same preload")
    associated = Output("dia_source", "ArrowTable", DET, doc="DiaSource rows with diaObjectId")
    objects = Output("dia_object", "ArrowTable", DET, doc="New versions of the touched DiaObjects")
    forced = Output("dia_forced_source", "ArrowTable", DET, doc="Forced photometry of the known DiaObjects")


class AssociateDiaTaskConfig(PipelineTaskConfig):
    """Config of :class:`AssociateDiaTask`."""

    radius_arcsec: float = 1.0


class AssociateDiaTask(PipelineTask):
    """Associate (Hungarian, one-to-one), update DiaObjects, force-photometer known objects."""

    ConfigClass = AssociateDiaTaskConfig
    ConnectionsClass = AssociateDiaConnections
    config: AssociateDiaTaskConfig

    def run_quantum(self, context: QuantumContext) -> None:
        # the image inputs first; the preloaded objects last (waiting for the parallel preload if needed)
        dia, diff, calexp = context.get("dia_sources"), context.get("difference"), context.get("calexp")
        objects = context.get("preloaded")
        history = context.get("preloaded_sources")
        context.put_all(self.run(dia, diff, calexp, objects, visit=int(context.data_id["visit"]),
                                 detector=int(context.data_id["detector"]), preloaded_sources=history))

    def run(self, dia_sources: pa.Table, difference: Exposure, calexp: Exposure,
            preloaded: pa.Table | None, visit: int = 0, detector: int = 0,
            preloaded_sources: pa.Table | None = None) -> Struct:
        if calexp.psf is None:
            raise ApInputError("the calexp has no PSF kernel")
        res = associate(dia_sources, preloaded, preloaded_sources, radius_arcsec=self.config.radius_arcsec)
        mjd, band = _midpoint_and_band(calexp)
        known = preloaded if preloaded is not None else res.objects.slice(0, 0)
        forced = forced_photometry(known, difference, calexp, PsfModel(calexp.psf), visit=visit, detector=detector,
                                   midpoint_mjd=mjd, band=band)
        self.log.info("association: %s", res.diagnostics)
        return Struct(associated=res.sources, objects=res.objects, forced=forced)
