"""Helpers for the obs tests: FITS files made from the instrument header fixtures in ``data/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from astropy.io import fits

DATA = Path(__file__).parent / "data"


def fixture_header(name: str, **overrides: Any) -> fits.Header:
    """A header from ``data/<name>.yaml`` with some keywords changed."""
    values = yaml.safe_load((DATA / f"{name}.yaml").read_text())
    values.update(overrides)
    header = fits.Header()
    for key, value in values.items():
        header[key] = value
    return header


def write_hsc(path: Path, **overrides: Any) -> Path:
    """A single-HDU HSC raw (one CCD) with the documented header and tiny pixels."""
    fits.PrimaryHDU(np.arange(64, dtype=np.int16).reshape(8, 8), header=fixture_header(
        "hsc-HSCA90402512", **overrides)).writeto(path)
    return path


def write_decam(path: Path, exposure: str = "229388", **ext_overrides: Any) -> Path:
    """A DECam raw: a primary HDU without pixels and one CCD extension (S1, CCDNUM 25)."""
    primary = fits.PrimaryHDU(header=fixture_header(f"decam-{exposure}-primary"))
    ext = fits.ImageHDU(np.ones((8, 8), dtype=np.int16), header=fixture_header(f"decam-{exposure}-S1",
                                                                                   **ext_overrides))
    fits.HDUList([primary, ext]).writeto(path)
    return path


def sim_raws(directory: Path, n_exposures: int = 1, detectors: tuple[int, ...] = (0, 1, 2, 3),
             instrument: str = "TestCam", first_seq: int = 1, **obs_fields: Any) -> list[Path]:
    """Bias-level simulated raws (real headers, trivial pixels) for ingest tests."""
    from nightshift.obs import get_instrument
    from nightshift.obs.sim import Observation, write_raw

    camera = get_instrument(instrument, detector_size=16 if instrument == "LSSTCam-sim" else 8).camera
    fields: dict[str, Any] = {"ra": 150.0, "dec": 2.0, "sky_angle": 10.0}
    fields.update(obs_fields)
    out = []
    for i in range(n_exposures):
        seq = first_seq + i
        obs = Observation(instrument, 20261206, seq, f"2026-12-07T02:{seq % 60:02d}:00", **fields)
        out.extend(write_raw(directory, obs, camera, d) for d in detectors)
    return out
