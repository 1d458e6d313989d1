"""Alert Production science algorithms: pure, in-memory functions and their PipelineTasks.

ISR (:func:`run_isr`), characterization and calibration (:func:`characterize`),
difference imaging (:func:`subtract_images`), DIA detection and measurement
(:func:`detect_and_measure`), association (:func:`associate`), forced
photometry (:func:`forced_photometry`) and alert cutouts
(:func:`make_cutouts`). See ``docs/science.md``.
"""

from ._exceptions import (
    ApError,
    ApInputError,
    AstrometryFitError,
    FitError,
    MissingInputError,
    PhotometryError,
    PsfFitError,
    PsfMatchError,
)
from ._geometry import Amplifier, AmplifierGeometry, Detector, DetectorGeometry, as_box
from ._isr import IsrConfig, IsrResult, coarse_background, find_cosmic_rays, interpolate_masked, run_isr
from ._masks import MaskPlane

__all__ = [
    "Amplifier",
    "AmplifierGeometry",
    "ApError",
    "ApInputError",
    "AstrometryFitError",
    "Detector",
    "DetectorGeometry",
    "FitError",
    "IsrConfig",
    "IsrResult",
    "MaskPlane",
    "MissingInputError",
    "PhotometryError",
    "PsfFitError",
    "PsfMatchError",
    "as_box",
    "coarse_background",
    "find_cosmic_rays",
    "interpolate_masked",
    "run_isr",
]
