"""Instruments: a camera, its filters, its header translator, and how observations become data IDs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._camera import Camera, Detector, PhysicalFilter
from ._exceptions import ObsError, UnknownFilterError

if TYPE_CHECKING:
    from ..butler.registry import Registry

__all__ = ["CALIBRATION_TYPES", "Instrument", "normalize_observation_type"]

#: Observation types (as translators report them) -> the calibration kind they are.
CALIBRATION_TYPES: Mapping[str, str] = {
    "bias": "bias", "zero": "bias", "dark": "dark",
    "flat": "flat", "dome flat": "flat", "domeflat": "flat", "sky flat": "flat", "skyflat": "flat",
}


def normalize_observation_type(value: str) -> str:
    """``science``, ``bias``, ``dark``, ``flat`` or the translator's own value for anything else."""
    v = (value or "").strip().lower()
    if v in ("science", "object"):
        return "science"
    return CALIBRATION_TYPES.get(v, v)


@dataclass(frozen=True)
class Instrument:
    """A camera behind a telescope, with its filters and the translator that reads its headers.

    Parameters
    ----------
    name : str
        Instrument name, the ``instrument`` data ID value (``HSC``).
    camera : Camera
        Its detectors.
    filters : iterable of PhysicalFilter
        Physical filters and their bands.
    translator : str
        Name of the ``astro_metadata_translator`` translator class reading its headers.
    visit_max : int
        Exclusive upper bound of its exposure and visit ids.
    seeing_key : str, optional
        Header keyword holding the seeing (arcsec) recorded on visits.
    layout_regions : bool
        Visit regions from the boresight, sky angle and the camera layout (true when the layout is the
        real one) rather than from the WCS in the raws' headers.
    """

    name: str
    camera: Camera = field(repr=False)
    filters: tuple[PhysicalFilter, ...] = field(repr=False)
    translator: str
    visit_max: int
    seeing_key: str | None = None
    layout_regions: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", tuple(self.filters))

    @property
    def class_name(self) -> str:
        """What the ``instrument`` record stores to identify this definition."""
        return f"nightshift.obs:{self.name}"

    def detector(self, detector: int) -> Detector:
        """A detector by number (:class:`UnknownDetectorError` if it is not in the camera)."""
        return self.camera[detector]

    def physical_filter(self, name: str) -> PhysicalFilter:
        """A physical filter by name.

        Raises
        ------
        UnknownFilterError
            The instrument has no such filter.
        """
        for f in self.filters:
            if f.name == name:
                return f
        raise UnknownFilterError(
            f"instrument {self.name} has no physical filter {name!r}; known: {', '.join(f.name for f in self.filters)}"
        )

    # -- registry ------------------------------------------------------------------------------
    def register(self, registry: Registry) -> bool:
        """Write the instrument, band, physical_filter and detector records (idempotent).

        Returns
        -------
        bool
            False if the instrument was registered already (nothing is written).

        Raises
        ------
        ObsError
            An instrument of that name is registered with another definition.
        """
        existing = registry.get_dimension_record("instrument", {"instrument": self.name})
        if existing is not None:
            if existing.class_name != self.class_name or existing.detector_max != max(self.camera.detectors) + 1:
                raise ObsError(
                    f"instrument {self.name!r} is registered as {existing.class_name} with "
                    f"{existing.detector_max} detector slots; this definition ({self.class_name}, "
                    f"{max(self.camera.detectors) + 1}) differs: use another name"
                )
            return False
        with registry.transaction():
            registry.insert_dimension_records("instrument", [{
                "name": self.name, "class_name": self.class_name, "visit_max": self.visit_max,
                "detector_max": max(self.camera.detectors) + 1,
            }])
            registry.insert_dimension_records("band", [{"name": b} for b in sorted({f.band for f in self.filters})],
                                              skip_existing=True)
            registry.insert_dimension_records(
                "physical_filter", [{"instrument": self.name, "name": f.name, "band": f.band} for f in self.filters])
            registry.insert_dimension_records("detector", [d.to_record(self.name) for d in self.camera])
        return True

    # -- observation -> data ID and records ----------------------------------------------------
    def data_id(self, obs: Any) -> dict[str, int | str]:
        """The raw data ID ``{instrument, exposure, detector}`` of a translated observation."""
        return {"instrument": self.name, "exposure": int(obs.exposure_id), "detector": int(obs.detector_num)}

    def exposure_records(self, obs: Any, header: Mapping[str, Any],
                         region: Iterable[tuple[float, float]] | None) -> dict[str, dict[str, Any]]:
        """Dimension records (``day_obs``, ``group``, ``exposure`` and, for science, ``visit``) of an observation.

        Parameters
        ----------
        obs : astro_metadata_translator.ObservationInfo
            The translated (and corrected) header.
        header : mapping
            The corrected header itself (for instrument-specific keywords such as the seeing).
        region : iterable of (ra, dec), optional
            The visit's sky region (science observations).
        """
        from astropy.time import TimeDelta

        from ..butler.registry import Timespan

        obs_type = normalize_observation_type(obs.observation_type)
        day = int(obs.observing_day)
        begin = obs.datetime_begin
        end = obs.datetime_end if obs.datetime_end is not None else begin
        if end <= begin:  # a zero-second bias: timespans are half-open, give it one millisecond
            end = begin + TimeDelta(1e-3, format="sec")
        offset = obs.observing_day_offset if obs.observing_day_offset is not None else TimeDelta(0, format="sec")
        from astropy.time import Time

        day_begin = Time(f"{day // 10000:04d}-{day // 100 % 100:02d}-{day % 100:02d}", scale="tai") + offset
        group = str(obs.exposure_group) if obs.exposure_group is not None else str(obs.exposure_id)
        zenith = float(90.0 - obs.altaz_begin.alt.deg) if obs.altaz_begin is not None else None
        exposure_time = float(obs.exposure_time.to_value("s"))
        records: dict[str, dict[str, Any]] = {
            "day_obs": {"instrument": self.name, "id": day,
                        "timespan": Timespan(day_begin, day_begin + TimeDelta(1.0, format="jd"))},
            "group": {"instrument": self.name, "name": group[:64]},
            "exposure": {
                "instrument": self.name, "id": int(obs.exposure_id), "physical_filter": obs.physical_filter,
                "day_obs": day, "group": group[:64], "obs_id": str(obs.observation_id),
                "exposure_time": exposure_time, "observation_type": obs_type,
                "science_program": str(obs.science_program or ""), "target_name": str(obs.object or ""),
                "zenith_angle": zenith, "timespan": Timespan(begin, end),
            },
        }
        if obs_type == "science":
            radec = obs.tracking_radec
            seeing = header.get(self.seeing_key) if self.seeing_key else None
            records["visit"] = {
                "instrument": self.name, "id": int(obs.visit_id if obs.visit_id is not None else obs.exposure_id),
                "physical_filter": obs.physical_filter, "day_obs": day, "name": str(obs.observation_id),
                "exposure_time": exposure_time, "seeing": float(seeing) if seeing is not None else None,
                "airmass": float(obs.boresight_airmass) if obs.boresight_airmass is not None else None,
                "boresight_ra": float(radec.icrs.ra.deg) if radec is not None else None,
                "boresight_dec": float(radec.icrs.dec.deg) if radec is not None else None,
                "sky_angle": float(obs.boresight_rotation_angle.deg)
                if obs.boresight_rotation_angle is not None else None,
                "psf_size": None, "science_program": str(obs.science_program or ""),
                "region": list(region) if region is not None else None, "timespan": Timespan(begin, end),
            }
        return records
