"""Alert Production science algorithms: pure, in-memory functions and their PipelineTasks.

ISR (:func:`run_isr`), characterization and calibration (:func:`characterize`),
difference imaging (:func:`subtract_images`), DIA detection and measurement
(:func:`detect_and_measure`), association (:func:`associate`), forced
photometry (:func:`forced_photometry`) and alert cutouts
(:func:`make_cutouts`). See ``docs/science.md``. The prompt-processing planner
(:class:`VisitPlanner`: a ``nextVisit`` to one quantum per detector that sees the field) is here too.
"""

from ._associate import AssociationResult, associate, dia_object_summary
from ._astrometry import AstrometryConfig, AstrometryResult, fit_astrometry
from ._characterize import CharacterizeConfig, CharacterizeResult, characterize, njy_per_count, zero_point
from ._cutouts import MAX_CUTOUT, MIN_CUTOUT, AlertCutouts, Cutout, cutout_size, make_cutouts
from ._dia import RELIABILITY_VERSION, DiaDetectConfig, DiaSources, detect_and_measure, reliability_score
from ._exceptions import (
    ApError,
    ApInputError,
    AstrometryFitError,
    FitError,
    MissingInputError,
    PhotometryError,
    PlanningError,
    PsfFitError,
    PsfMatchError,
)
from ._forced import forced_photometry
from ._geometry import Amplifier, AmplifierGeometry, Detector, DetectorGeometry, as_box
from ._isr import IsrConfig, IsrResult, coarse_background, find_cosmic_rays, interpolate_masked, run_isr
from ._masks import MaskPlane
from ._measure import PsfPhotometry, gaussian_centroid, psf_photometry, stamps, weighted_moments
from ._planning import (
    AP_OUTPUT_DATASET_TYPES,
    AP_TASK_LABEL,
    MISSING_INPUTS_KEY,
    DetectorPlan,
    PlannerConfig,
    VisitPlan,
    VisitPlanner,
    ap_output_ids,
    ap_quantum_id,
    ap_run,
)
from ._process import ApConfig, ApResult, process_detector
from ._psf import PsfModel, fit_psf, gaussian_kernel
from ._rows import apdb_rows
from ._subtract import SubtractConfig, SubtractResult, prepare_template, psf_matching_basis, subtract_images
from ._tasks import (
    AssociateDiaTask,
    AssociateDiaTaskConfig,
    CharacterizeTask,
    CharacterizeTaskConfig,
    DetectAndMeasureTask,
    DetectAndMeasureTaskConfig,
    IsrTask,
    IsrTaskConfig,
    SubtractTask,
    SubtractTaskConfig,
)
from ._warp import PixelMapping, pixel_mapping, warp_exposure

__all__ = [
    "AP_OUTPUT_DATASET_TYPES",
    "AP_TASK_LABEL",
    "AlertCutouts",
    "Amplifier",
    "AmplifierGeometry",
    "ApConfig",
    "ApError",
    "ApInputError",
    "ApResult",
    "AssociateDiaTask",
    "AssociateDiaTaskConfig",
    "AssociationResult",
    "AstrometryConfig",
    "AstrometryFitError",
    "AstrometryResult",
    "CharacterizeConfig",
    "CharacterizeResult",
    "CharacterizeTask",
    "CharacterizeTaskConfig",
    "Cutout",
    "DetectAndMeasureTask",
    "DetectAndMeasureTaskConfig",
    "DetectorPlan",
    "Detector",
    "DetectorGeometry",
    "DiaDetectConfig",
    "DiaSources",
    "FitError",
    "IsrConfig",
    "IsrResult",
    "IsrTask",
    "IsrTaskConfig",
    "MAX_CUTOUT",
    "MIN_CUTOUT",
    "MISSING_INPUTS_KEY",
    "MaskPlane",
    "MissingInputError",
    "PhotometryError",
    "PlannerConfig",
    "PlanningError",
    "PixelMapping",
    "PsfFitError",
    "PsfMatchError",
    "PsfModel",
    "PsfPhotometry",
    "RELIABILITY_VERSION",
    "SubtractConfig",
    "SubtractResult",
    "SubtractTask",
    "SubtractTaskConfig",
    "VisitPlan",
    "VisitPlanner",
    "ap_output_ids",
    "ap_quantum_id",
    "ap_run",
    "apdb_rows",
    "as_box",
    "associate",
    "characterize",
    "coarse_background",
    "cutout_size",
    "detect_and_measure",
    "dia_object_summary",
    "find_cosmic_rays",
    "fit_astrometry",
    "fit_psf",
    "forced_photometry",
    "gaussian_centroid",
    "gaussian_kernel",
    "interpolate_masked",
    "make_cutouts",
    "njy_per_count",
    "pixel_mapping",
    "prepare_template",
    "process_detector",
    "psf_matching_basis",
    "psf_photometry",
    "reliability_score",
    "run_isr",
    "stamps",
    "subtract_images",
    "warp_exposure",
    "weighted_moments",
    "zero_point",
]
