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
