"""Errors of :mod:`nightshift.obs`::

    NightshiftError
    └── ObsError
        ├── UnknownInstrumentError  (LookupError)  no instrument/translator for a header or name
        ├── UnknownDetectorError    (LookupError)  detector number outside the camera
        ├── UnknownFilterError      (LookupError)  physical filter the instrument does not define
        ├── RawHeaderError          (ValueError)   unreadable/corrupt file or a required key missing
        ├── MissingPointingError    (ValueError)   no WCS and no boresight: no sky region possible
        ├── IngestConflictError     (ValueError)   same file name, different content; or a clash with the registry
        └── RawIngestError          (ValueError)   an announced raw (raw.arrived) cannot be ingested: the reason

None is retriable: the same file gives the same error until it or the
configuration changes.
"""

from __future__ import annotations

from .._exceptions import NightshiftError

__all__ = [
    "IngestConflictError",
    "MissingPointingError",
    "ObsError",
    "RawHeaderError",
    "RawIngestError",
    "UnknownDetectorError",
    "UnknownFilterError",
    "UnknownInstrumentError",
]


class ObsError(NightshiftError):
    """Root of the instrument and raw-ingest errors."""

    error_type = "obs"


class UnknownInstrumentError(ObsError, LookupError):
    """No instrument (or no header translator) is known for a name or a header."""

    error_type = "obs_unknown_instrument"


class UnknownDetectorError(ObsError, LookupError):
    """A detector number that is not part of the instrument's camera."""

    error_type = "obs_unknown_detector"


class UnknownFilterError(ObsError, LookupError):
    """A physical filter the instrument does not define."""

    error_type = "obs_unknown_filter"


class RawHeaderError(ObsError, ValueError):
    """A raw file is truncated/corrupt, or its header lacks a key the translator needs."""

    error_type = "obs_raw_header"


class MissingPointingError(ObsError, ValueError):
    """A science raw has neither a celestial WCS nor a boresight: its sky region is unknown."""

    error_type = "obs_missing_pointing"


class IngestConflictError(ObsError, ValueError):
    """A file of the same name but different content (or another file for the same data ID) exists."""

    error_type = "obs_ingest_conflict"


class RawIngestError(ObsError, ValueError):
    """An announced raw cannot be ingested (unreadable, bad header, unknown detector, conflict)."""

    error_type = "obs_raw_ingest"
