"""Instruments and raw data: cameras, header translation, raw ingest (and, in ``nightshift.obs.sim``, a simulator).

An :class:`Instrument` is a :class:`Camera` (detectors with amplifiers, on a
focal plane), its physical filters and bands, and the
``astro_metadata_translator`` translator that reads its headers. Built in:
``LSSTCam-sim`` (189 4k x 4k detectors in LSSTCam's layout), ``TestCam``,
``HSC`` and ``DECam``. :func:`ingest_raws` turns raw FITS files into dimension
records and ``raw`` datasets, reading headers only.

Importing this package is cheap; astropy and the translator load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports as _lazy_exports
from ._exceptions import (
    IngestConflictError,
    MissingPointingError,
    ObsError,
    RawHeaderError,
    RawIngestError,
    UnknownDetectorError,
    UnknownFilterError,
    UnknownInstrumentError,
)

if TYPE_CHECKING:
    from ._camera import Amplifier, Camera, Detector, PhysicalFilter
    from ._cameras import decam_camera, hsc_camera, lsstcam_like, small_test_camera
    from ._headers import RawHeader, read_raw_headers
    from ._ingest import RAW_DATASET_TYPE, IngestReport, ingest_raws
    from ._instrument import Instrument, normalize_observation_type
    from ._instruments import get_instrument, known_instruments, register_instrument
    from ._raw_events import IngestedRaws, describe_raw, ingest_arrived, raw_event_key, raw_ingested_events
    from ._raw_formatter import RawFormatter
    from ._sky import celestial_wcs, convex_hull_region
    from ._translate import apply_corrections, find_translator, translate
    from ._translators import SimCamTranslator, SimTestCamTranslator
    from ._watch import RawWatcher, RawWatchLoop

_LAZY = {
    **{n: "._camera" for n in ("Amplifier", "Camera", "Detector", "PhysicalFilter")},
    **{n: "._cameras" for n in ("decam_camera", "hsc_camera", "lsstcam_like", "small_test_camera")},
    **{n: "._headers" for n in ("RawHeader", "read_raw_headers")},
    **{n: "._ingest" for n in ("RAW_DATASET_TYPE", "IngestReport", "ingest_raws")},
    **{n: "._instrument" for n in ("Instrument", "normalize_observation_type")},
    **{n: "._instruments" for n in ("get_instrument", "known_instruments", "register_instrument")},
    **{n: "._raw_events" for n in ("IngestedRaws", "describe_raw", "ingest_arrived", "raw_event_key",
                                    "raw_ingested_events")},
    "RawFormatter": "._raw_formatter",
    "RawWatchLoop": "._watch",
    "RawWatcher": "._watch",
    "celestial_wcs": "._sky",
    "convex_hull_region": "._sky",
    **{n: "._translate" for n in ("apply_corrections", "find_translator", "translate")},
    **{n: "._translators" for n in ("SimCamTranslator", "SimTestCamTranslator")},
}

__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)

__all__ = [
    "RAW_DATASET_TYPE",
    "Amplifier",
    "Camera",
    "Detector",
    "IngestConflictError",
    "IngestReport",
    "IngestedRaws",
    "Instrument",
    "MissingPointingError",
    "ObsError",
    "PhysicalFilter",
    "RawFormatter",
    "RawHeader",
    "RawHeaderError",
    "RawIngestError",
    "RawWatchLoop",
    "RawWatcher",
    "SimCamTranslator",
    "SimTestCamTranslator",
    "UnknownDetectorError",
    "UnknownFilterError",
    "UnknownInstrumentError",
    "apply_corrections",
    "celestial_wcs",
    "convex_hull_region",
    "decam_camera",
    "describe_raw",
    "find_translator",
    "get_instrument",
    "hsc_camera",
    "ingest_arrived",
    "ingest_raws",
    "known_instruments",
    "lsstcam_like",
    "normalize_observation_type",
    "raw_event_key",
    "raw_ingested_events",
    "read_raw_headers",
    "register_instrument",
    "small_test_camera",
    "translate",
]
