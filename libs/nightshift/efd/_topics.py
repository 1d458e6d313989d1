"""The EFD topics: what each records, in which units, at which native rate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._errors import UnknownTopicError

__all__ = ["TOPICS", "Topic", "get_topic"]


@dataclass(frozen=True)
class Topic:
    """One engineering time series.

    Attributes
    ----------
    name : str
        Topic name (also the suffix of its tables).
    fields : mapping of str to str
        Field name -> unit; every field is a float.
    rate_hz : float
        Native sampling rate of the base stream.
    description : str
        What it measures.
    """

    name: str
    fields: Mapping[str, str]
    rate_hz: float
    description: str


TOPICS: Mapping[str, Topic] = MappingProxyType({t.name: t for t in (
    Topic("dome_seeing", {"fwhm": "arcsec"}, 1 / 10,
          "seeing added by air inside the dome (FWHM at 500 nm), from the dome seeing monitor"),
    Topic("dimm_seeing", {"fwhm": "arcsec"}, 1 / 30,
          "free-atmosphere seeing at zenith (FWHM at 500 nm) from the DIMM"),
    Topic("temperature", {"air": "degC", "dome": "degC", "mirror": "degC"}, 1 / 10,
          "outside air, dome air and primary mirror temperatures"),
    Topic("wind", {"speed": "m/s", "direction": "deg"}, 1.0, "wind speed and direction (from, east of north)"),
    Topic("telescope_position", {"azimuth": "deg", "elevation": "deg"}, 1.0, "mount azimuth and elevation"),
    Topic("rotator", {"angle": "deg"}, 1.0, "camera rotator angle"),
)})


def get_topic(name: str) -> Topic:
    """The topic called ``name``.

    Raises
    ------
    UnknownTopicError
        If there is none; the message lists the existing topics.
    """
    try:
        return TOPICS[name]
    except KeyError:
        raise UnknownTopicError(name, TOPICS) from None
