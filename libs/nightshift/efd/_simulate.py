"""Plausible base EFD streams for the visits in a registry (tests, benchmarks, the demo).

The streams are consistent with each visit's record: the dome and DIMM seeing
add in quadrature to the visit's ``seeing`` (``dimm**2 + dome**2 = seeing**2``
up to 2 % noise), the mount points at the visit's boresight (alt/az at
Cerro Pachón) and the rotator holds its ``sky_angle``; temperatures drift
slowly through the night and the wind wanders. Deterministic given the seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ._errors import EfdInputError
from ._store import Efd, iter_visit_windows
from ._topics import TOPICS

if TYPE_CHECKING:
    from ..butler.registry import Registry

__all__ = ["simulate_efd"]

_SECOND = 10**9
#: Rubin Observatory, Cerro Pachón (deg, deg, m).
SITE = (-30.2446, -70.7494, 2663.0)


def _grid(begin_ns: int, end_ns: int, rate_hz: float) -> NDArray[np.int64]:
    step = int(round(_SECOND / rate_hz))
    first = -(-begin_ns // step) * step  # samples on a fixed grid, so re-runs write the same times
    return np.arange(first, end_ns, step, dtype=np.int64)


def _altaz(ra: NDArray[np.float64], dec: NDArray[np.float64], times_ns: NDArray[np.int64]) -> tuple[
        NDArray[np.float64], NDArray[np.float64]]:
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    site = EarthLocation(lat=SITE[0] * u.deg, lon=SITE[1] * u.deg, height=SITE[2] * u.m)
    when = Time(times_ns / 1e9, format="unix_tai", scale="tai")
    frame = AltAz(obstime=when, location=site)
    # Simulated telemetry needs arcminutes, not UT1 to the millisecond: never reach for the network
    # (IERS-A download) and accept the bundled tables' degraded accuracy past their end.
    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None), \
            iers.conf.set_temp("iers_degraded_accuracy", "ignore"):
        altaz = SkyCoord(ra * u.deg, dec * u.deg).transform_to(frame)
    return np.asarray(altaz.az.deg, dtype=np.float64), np.asarray(altaz.alt.deg, dtype=np.float64)


def simulate_efd(
    efd: Efd, registry: Registry, *, instrument: str, seed: int = 0, margin_s: float = 300.0, where: str = ""
) -> dict[str, int]:
    """Write base streams of every topic around the instrument's visits.

    Parameters
    ----------
    efd : Efd
        The EFD; its tables are created if missing.
    registry : Registry
        Where the visits are (timespan, ``seeing``, ``boresight_ra``/``_dec``, ``sky_angle``).
    instrument : str
        Instrument of the visits.
    seed : int
        Random seed; the same seed writes the same samples.
    margin_s : float
        Seconds of stream before the first and after the last visit.
    where : str
        Restrict the visits (registry ``where``).

    Returns
    -------
    dict of str to int
        Samples written per topic.

    Raises
    ------
    EfdInputError
        No visit with a timespan.
    """
    visits = list(iter_visit_windows(registry, instrument, where))
    if not visits:
        raise EfdInputError(f"no visits of {instrument!r} with a timespan in the registry to simulate the EFD around")
    rng = np.random.default_rng(seed)
    efd.create()
    start = min(b for _, b, _, _ in visits) - int(margin_s * _SECOND)
    stop = max(e for _, _, e, _ in visits) + int(margin_s * _SECOND)

    def hours(t: NDArray[np.int64]) -> NDArray[np.float64]:
        return np.asarray((t - start) / 3600e9, dtype=np.float64)

    mids = np.array([(b + e) // 2 for _, b, e, _ in visits], dtype=np.int64)
    seeing = np.array([r["seeing"] if r.get("seeing") is not None else 0.8 for *_, r in visits], dtype=np.float64)

    def temperatures(t: NDArray[np.int64]) -> dict[str, NDArray[np.float64]]:
        h = hours(t)
        air = 12.0 - 0.6 * h + 0.15 * np.sin(2 * np.pi * h / 1.3)
        dome = air + 0.9 - 0.2 * h / (1.0 + h) + 0.1 * np.sin(2 * np.pi * h / 0.7)
        mirror = air + 1.4 * np.exp(-h / 3.0)
        return {"air": air, "dome": dome, "mirror": mirror}

    def dome_seeing(t: NDArray[np.int64], noise: NDArray[np.float64]) -> NDArray[np.float64]:
        temp = temperatures(t)
        return np.clip(0.08 + 0.25 * np.abs(temp["dome"] - temp["air"]) + noise, 0.05, None)

    written: dict[str, int] = {}
    # dome seeing: from the dome-air temperature difference
    t = _grid(start, stop, TOPICS["dome_seeing"].rate_hz)
    dome = dome_seeing(t, rng.normal(0.0, 0.01, len(t)))
    written["dome_seeing"] = efd.write("dome_seeing", t, fwhm=dome)
    # DIMM: the rest of each visit's seeing, in quadrature
    t = _grid(start, stop, TOPICS["dimm_seeing"].rate_hz)
    total = np.interp(t, mids, seeing)
    dome_here = dome_seeing(t, np.zeros(len(t)))
    dimm = np.sqrt(np.clip(total**2 - dome_here**2, 0.2**2, None)) * (1.0 + rng.normal(0.0, 0.02, len(t)))
    written["dimm_seeing"] = efd.write("dimm_seeing", t, fwhm=dimm)
    t = _grid(start, stop, TOPICS["temperature"].rate_hz)
    temp = temperatures(t)
    written["temperature"] = efd.write("temperature", t, **{k: v + rng.normal(0.0, 0.02, len(t))
                                                             for k, v in temp.items()})
    t = _grid(start, stop, TOPICS["wind"].rate_hz)
    speed = np.clip(6.0 + np.cumsum(rng.normal(0.0, 0.05, len(t))), 0.0, 25.0)
    direction = (300.0 + np.cumsum(rng.normal(0.0, 0.3, len(t)))) % 360.0
    written["wind"] = efd.write("wind", t, speed=speed, direction=direction)
    # the mount and the rotator: tracking during visits, slewing between them
    knots_t = np.array([x for _, b, e, _ in visits for x in (b, e)], dtype=np.int64)
    ra = np.array([r.get("boresight_ra") for *_, r in visits for _ in (0, 1)], dtype=object)
    dec = np.array([r.get("boresight_dec") for *_, r in visits for _ in (0, 1)], dtype=object)
    have = np.array([a is not None and d is not None for a, d in zip(ra, dec, strict=True)])
    az = np.full(len(knots_t), 180.0)
    el = np.full(len(knots_t), 60.0)
    if have.any():
        az[have], el[have] = _altaz(ra[have].astype(float), dec[have].astype(float), knots_t[have])
    t = _grid(start, stop, TOPICS["telescope_position"].rate_hz)
    az_t = np.interp(t, knots_t, np.degrees(np.unwrap(np.radians(az)))) % 360.0
    el_t = np.interp(t, knots_t, el)
    written["telescope_position"] = efd.write("telescope_position", t, azimuth=az_t, elevation=el_t)
    angle = np.array([r.get("sky_angle") or 0.0 for *_, r in visits for _ in (0, 1)], dtype=np.float64)
    t = _grid(start, stop, TOPICS["rotator"].rate_hz)
    written["rotator"] = efd.write("rotator", t, angle=np.interp(t, knots_t, angle) + rng.normal(0.0, 0.001, len(t)))
    return written
