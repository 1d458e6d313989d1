"""Errors of the Alert Production science code.

::

    NightshiftError
    └── ApError                                   (root of this package)
        ├── ApInputError (ValueError)             an input array, table or geometry is unusable
        ├── MissingInputError (LookupError)       a calibration / template / catalog is absent
        ├── PlanningError (ValueError)            the planner's configuration does not match the repository
        ├── FitError                              a model fit failed; carries ``diagnostics``
        │   ├── AstrometryFitError                the WCS fit failed (matches, rms, offsets)
        │   ├── PsfFitError                       too few usable stars for a PSF model
        │   └── PsfMatchError                     the PSF-matching kernel could not be solved
        └── PhotometryError                       no zero point could be measured

None is retriable: the same inputs give the same failure (the planner's unknown instrument, detector
or filter are :mod:`nightshift.obs` errors, also not retriable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._exceptions import NightshiftError

__all__ = [
    "ApError",
    "ApInputError",
    "AstrometryFitError",
    "FitError",
    "MissingInputError",
    "PhotometryError",
    "PlanningError",
    "PsfFitError",
    "PsfMatchError",
]


class ApError(NightshiftError):
    """Base class of the Alert Production science errors."""

    error_type = "ap"


class ApInputError(ApError, ValueError):
    """An input (array, table, geometry) has the wrong shape, type or content."""

    error_type = "ap_input"


class MissingInputError(ApError, LookupError):
    """A required calibration, template or reference catalog is missing (the message names it)."""

    error_type = "ap_missing_input"


class PlanningError(ApError, ValueError):
    """The planner cannot plan any visit: its sky map or a dataset type it was told to use is not in the repository."""

    error_type = "ap_planning"


class FitError(ApError):
    """A model fit failed.

    Parameters
    ----------
    message : str
        What failed and what to check.
    diagnostics : mapping, optional
        Numbers describing the failed fit (match counts, residuals, ...).
    """

    error_type = "ap_fit"

    def __init__(self, message: str, diagnostics: Mapping[str, Any] | None = None) -> None:
        self.diagnostics: dict[str, Any] = dict(diagnostics or {})
        if self.diagnostics:
            detail = ", ".join(f"{k}={v!r}" for k, v in self.diagnostics.items())
            message = f"{message} [diagnostics: {detail}]"
        super().__init__(message)


class AstrometryFitError(FitError):
    """The astrometric (WCS) fit against the reference catalog failed."""

    error_type = "ap_astrometry_fit"


class PsfFitError(FitError):
    """No PSF model could be fitted (too few usable stars)."""

    error_type = "ap_psf_fit"


class PsfMatchError(FitError):
    """The PSF-matching kernel of the difference imaging could not be solved."""

    error_type = "ap_psf_match"


class PhotometryError(FitError):
    """No photometric zero point could be measured."""

    error_type = "ap_photometry"
