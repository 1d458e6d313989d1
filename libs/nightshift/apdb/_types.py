"""What APDB calls return, and the one time conversion they share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyarrow as pa
from astropy.time import Time

__all__ = ["Preload", "StoreResult", "to_mjd_tai"]


def to_mjd_tai(when: Time | float) -> float:
    """MJD (TAI) of an astropy ``Time`` or of a float already in MJD TAI."""
    if isinstance(when, Time):
        return float(when.tai.mjd)
    value = float(when)
    if not math.isfinite(value):
        raise ValueError(f"time {when!r} is not finite")
    return value


@dataclass(frozen=True)
class StoreResult:
    """Rows a :meth:`AsyncApdb.store` call added (0 for rows already stored)."""

    dia_objects: int
    dia_sources: int
    dia_forced_sources: int
    seconds: float
    #: Seconds from the start of the call to the end of each step (``prepare``, ``copy:<table>``, ...).
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Preload:
    """A field's DiaObjects with their source and forced-source histories."""

    objects: pa.Table
    sources: pa.Table
    forced_sources: pa.Table
    timings: dict[str, float] = field(default_factory=dict)

