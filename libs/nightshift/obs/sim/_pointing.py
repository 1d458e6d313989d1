"""What the simulator observes: one exposure's pointing, filter, time and conditions, and its header."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

__all__ = ["Observation", "raw_header"]


@dataclass(frozen=True)
class Observation:
    """One simulated exposure (all detectors).

    Parameters
    ----------
    instrument : str
        ``LSSTCam-sim`` or ``TestCam``.
    day_obs : int
        ``YYYYMMDD`` of the night (the observing day rolls over at noon, UTC-12h).
    seq_num : int
        Sequence number within the night (``exposure = day_obs * 100000 + seq_num``).
    begin : str
        ISO TAI start of the exposure.
    observation_type : str
        ``science``, ``bias``, ``dark`` or ``flat``.
    physical_filter : str
        ``r_57``, ... (``empty`` for bias and dark).
    ra, dec, sky_angle : float
        Boresight and rotation (degrees); ignored for bias/dark/flat.
    exposure_time : float
        Seconds.
    seeing : float
        FWHM of the PSF (arcsec) at this exposure.
    airmass : float
    target : str
        Field name (``OBJECT``).
    """

    instrument: str
    day_obs: int
    seq_num: int
    begin: str
    observation_type: str = "science"
    physical_filter: str = "r_57"
    ra: float = 0.0
    dec: float = 0.0
    sky_angle: float = 0.0
    exposure_time: float = 30.0
    seeing: float = 0.8
    airmass: float = 1.2
    target: str = ""

    @property
    def exposure_id(self) -> int:
        """``day_obs * 100000 + seq_num`` (the visit id of a science exposure too)."""
        return self.day_obs * 100_000 + self.seq_num

    @property
    def obs_id(self) -> str:
        """``<instrument>_<day_obs>_<seq_num:06d>``."""
        return f"{self.instrument}_{self.day_obs}_{self.seq_num:06d}"

    @functools.cached_property
    def mjd(self) -> float:
        """TAI MJD of the middle of the exposure."""
        from astropy.time import Time

        return float(Time(self.begin, scale="tai").mjd) + self.exposure_time / 2 / 86400.0


def raw_header(obs: Observation, detector: int, detector_name: str, wcs: dict[str, Any] | None) -> dict[str, Any]:
    """The primary header of one simulated raw (see :mod:`nightshift.obs._translators` for the keywords)."""
    from astropy.time import Time, TimeDelta

    begin = Time(obs.begin, scale="tai")
    end = begin + TimeDelta(obs.exposure_time, format="sec")
    science = obs.observation_type == "science"
    header: dict[str, Any] = {
        "INSTRUME": obs.instrument, "TELESCOP": "Simonyi Survey Telescope (simulated)",
        "OBSID": obs.obs_id, "EXPID": obs.exposure_id, "DAYOBS": obs.day_obs, "SEQNUM": obs.seq_num,
        "GROUPID": obs.obs_id, "DATE-BEG": begin.isot, "DATE-END": end.isot, "TIMESYS": "TAI",
        "MJD-BEG": float(begin.mjd), "EXPTIME": obs.exposure_time, "DARKTIME": obs.exposure_time + 1.0,
        "IMGTYPE": "OBJECT" if science else obs.observation_type.upper(),
        "FILTER": obs.physical_filter, "DETECTOR": detector, "DETNAME": detector_name,
        "OBJECT": obs.target, "PROGRAM": "nightshift-sim", "BUNIT": "adu",
    }
    if science:
        from math import acos, degrees

        header.update({"RA": obs.ra, "DEC": obs.dec, "ROTPA": obs.sky_angle, "AIRMASS": obs.airmass,
                       "ELSTART": 90.0 - degrees(acos(min(1.0, 1.0 / obs.airmass))), "AZSTART": 180.0,
                       "SEEING": obs.seeing})
        if wcs is not None:
            header.update(wcs)
    return header
