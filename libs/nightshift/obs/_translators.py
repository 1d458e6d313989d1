"""Header translators of the simulated cameras, registered with ``astro_metadata_translator``.

Subclassing :class:`~astro_metadata_translator.MetadataTranslator` registers a
translator under its ``name``; ``ObservationInfo(header)`` then finds it from
``INSTRUME`` like the translators of real instruments (HSC, DECam, ...).
Importing :mod:`nightshift.obs` imports this module.

Headers the simulator writes (primary HDU)::

    INSTRUME  LSSTCam-sim | TestCam        TELESCOP  Simonyi Survey Telescope (simulated)
    OBSID     LSSTCam-sim_20261206_000012  EXPID     2026120600012 (DAYOBS * 100000 + SEQNUM)
    DAYOBS    20261206                     SEQNUM    12           GROUPID  free text
    DATE-BEG  / DATE-END (TAI, ISO)        EXPTIME / DARKTIME (s)
    IMGTYPE   OBJECT | BIAS | DARK | FLAT  FILTER    r_57
    DETECTOR  detector number              DETNAME   R22_S11
    RA, DEC   boresight (deg, ICRS)        ROTPA     sky angle (deg)
    AIRMASS, ELSTART, AZSTART (deg)        OBJECT, PROGRAM, SEEING (arcsec)
"""

from __future__ import annotations

from typing import Any

import astropy.units as u
from astro_metadata_translator import cache_translation
from astro_metadata_translator.translators.fits import FitsTranslator
from astropy.coordinates import AltAz, Angle, EarthLocation, SkyCoord
from astropy.time import Time, TimeDelta

__all__ = ["SimCamTranslator", "SimTestCamTranslator"]

#: Cerro Pachón (the simulated cameras' site).
_SITE = EarthLocation.from_geodetic(lon=-70.749417 * u.deg, lat=-30.244639 * u.deg, height=2663.0 * u.m)


class SimCamTranslator(FitsTranslator):
    """Translator of the simulated LSSTCam-like camera's headers."""

    name = "LSSTCam-sim"
    supported_instrument = "LSSTCam-sim"

    _const_map = {"boresight_rotation_coord": "sky", "detector_group": None, "relative_humidity": 40.0,
                  "temperature": 283.0 * u.K, "pressure": 744.0 * u.hPa, "has_simulated_content": True}
    _trivial_map: dict[str, str | list[str] | tuple[Any, ...]] = {
        "instrument": "INSTRUME",
        "telescope": "TELESCOP",
        "observation_id": "OBSID",
        "exposure_id": "EXPID",
        "visit_id": "EXPID",
        "detector_num": "DETECTOR",
        "detector_name": "DETNAME",
        "detector_serial": "DETNAME",
        "physical_filter": "FILTER",
        "exposure_time": ("EXPTIME", {"unit": u.s}),
        "dark_time": ("DARKTIME", {"unit": u.s}),
        "object": ("OBJECT", {"default": ""}),
        "science_program": ("PROGRAM", {"default": ""}),
        "observing_day": "DAYOBS",
        "observation_counter": "SEQNUM",
    }

    @cache_translation
    def to_exposure_group(self) -> str:
        return str(self._header.get("GROUPID", self._header["OBSID"]))

    @cache_translation
    def to_boresight_airmass(self) -> float | None:
        value = self._header.get("AIRMASS")
        return float(value) if value is not None else None

    @cache_translation
    def to_datetime_begin(self) -> Time:
        self._used_these_cards("DATE-BEG")
        return Time(self._header["DATE-BEG"], format="isot", scale="tai")

    @cache_translation
    def to_datetime_end(self) -> Time:
        self._used_these_cards("DATE-END")
        return Time(self._header["DATE-END"], format="isot", scale="tai")

    @cache_translation
    def to_observing_day_offset(self) -> TimeDelta:
        return TimeDelta(12 * 3600, format="sec", scale="tai")

    @cache_translation
    def to_location(self) -> EarthLocation:
        return _SITE

    @cache_translation
    def to_observation_type(self) -> str:
        self._used_these_cards("IMGTYPE")
        kind = str(self._header["IMGTYPE"]).strip().lower()
        return "science" if kind == "object" else kind

    @cache_translation
    def to_observation_reason(self) -> str:
        return "science" if self.to_observation_type() == "science" else "calibration"

    @cache_translation
    def to_detector_unique_name(self) -> str:
        return str(self._header["DETNAME"])

    @cache_translation
    def to_detector_exposure_id(self) -> int:
        return int(self._header["EXPID"]) * 1000 + int(self._header["DETECTOR"])

    @cache_translation
    def to_tracking_radec(self) -> SkyCoord | None:
        if "RA" not in self._header or "DEC" not in self._header:
            return None
        self._used_these_cards("RA", "DEC")
        return SkyCoord(float(self._header["RA"]) * u.deg, float(self._header["DEC"]) * u.deg, frame="icrs")

    @cache_translation
    def to_altaz_begin(self) -> AltAz | None:
        if "ELSTART" not in self._header:
            return None
        self._used_these_cards("ELSTART", "AZSTART")
        return AltAz(alt=float(self._header["ELSTART"]) * u.deg, az=float(self._header.get("AZSTART", 0.0)) * u.deg,
                     obstime=self.to_datetime_begin(), location=_SITE)

    @cache_translation
    def to_boresight_rotation_angle(self) -> Angle:
        return Angle(float(self._header.get("ROTPA", 0.0)) * u.deg)


class SimTestCamTranslator(SimCamTranslator):
    """Translator of the small test camera's headers (same keywords as the LSSTCam-like camera)."""

    name = "TestCam"
    supported_instrument = "TestCam"
