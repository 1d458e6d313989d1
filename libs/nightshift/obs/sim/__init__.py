"""The camera simulator: raws with known truth for the simulated cameras (``LSSTCam-sim``, ``TestCam``).

- :func:`render_detector` renders one detector of one :class:`Observation` (GalSim light profiles,
  deterministic in the seed); :func:`write_raw` writes it as a raw FITS file the translator reads.
- :func:`plan_night` and :func:`write_night` make a night: raws, the truth table of injected
  transients and the ``nextVisit`` payloads.
- :func:`load_night`, :func:`trigger_schedule` and :func:`run_trigger` play a night as the observatory
  would: ``nextVisit`` ahead of each exposure, the raws dropped at its end.
- :func:`certify_master_calibs` and :func:`make_templates` make the prerequisite inputs of
  Alert Production: master bias and flats in a CALIBRATION collection, deep templates per patch.

See ``docs/simulator.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports as _lazy_exports
from ._pointing import Observation, raw_header
from ._raw_io import raw_filename, write_raw

if TYPE_CHECKING:
    from ._calibs import BIAS, FLAT, TEMPLATE, certify_master_calibs, make_templates
    from ._catalog import SkyCatalog, sky_catalog
    from ._night import next_visit_payload, plan_night, write_night
    from ._render import RenderedRaw, bias_structure, flat_pattern, render_detector
    from ._trigger import (
        NightVisit,
        RawDropper,
        TriggerReport,
        TriggerStep,
        load_night,
        run_trigger,
        trigger_schedule,
    )

_LAZY = {
    **{n: "._calibs" for n in ("BIAS", "FLAT", "TEMPLATE", "certify_master_calibs", "make_templates")},
    **{n: "._catalog" for n in ("SkyCatalog", "sky_catalog")},
    **{n: "._night" for n in ("next_visit_payload", "plan_night", "write_night")},
    **{n: "._render" for n in ("RenderedRaw", "bias_structure", "flat_pattern", "render_detector")},
    **{n: "._trigger" for n in ("NightVisit", "RawDropper", "TriggerReport", "TriggerStep", "load_night",
                                "run_trigger", "trigger_schedule")},
}

__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)

__all__ = [
    "BIAS",
    "FLAT",
    "TEMPLATE",
    "NightVisit",
    "Observation",
    "RawDropper",
    "RenderedRaw",
    "SkyCatalog",
    "TriggerReport",
    "TriggerStep",
    "bias_structure",
    "certify_master_calibs",
    "flat_pattern",
    "load_night",
    "make_templates",
    "next_visit_payload",
    "plan_night",
    "raw_filename",
    "raw_header",
    "render_detector",
    "run_trigger",
    "sky_catalog",
    "trigger_schedule",
    "write_night",
    "write_raw",
]
