"""The camera simulator: raws with known truth for the simulated cameras (``LSSTCam-sim``, ``TestCam``)."""

from __future__ import annotations

from ._pointing import Observation, raw_header
from ._raw_io import raw_filename, write_raw

__all__ = ["Observation", "raw_filename", "raw_header", "write_raw"]
