"""The instruments nightshift knows by name, and how to add more."""

from __future__ import annotations

import functools
from collections.abc import Callable

from ._camera import PhysicalFilter
from ._cameras import decam_camera, hsc_camera, lsstcam_like, small_test_camera
from ._exceptions import UnknownInstrumentError
from ._instrument import Instrument

__all__ = ["get_instrument", "known_instruments", "register_instrument"]

_RUBIN_FILTERS = (("u_24", "u"), ("g_6", "g"), ("r_57", "r"), ("i_39", "i"), ("z_20", "z"), ("y_10", "y"),
                  ("empty", "white"))
_HSC_FILTERS = (("HSC-G", "g"), ("HSC-R", "r"), ("HSC-R2", "r"), ("HSC-I", "i"), ("HSC-I2", "i"), ("HSC-Z", "z"),
                ("HSC-Y", "y"), ("NB0387", "N387"), ("NB0816", "N816"), ("NB0921", "N921"), ("NB1010", "N1010"))
_DECAM_FILTERS = (("u DECam c0006 3500.0 1000.0", "u"), ("g DECam SDSS c0001 4720.0 1520.0", "g"),
                  ("r DECam SDSS c0002 6415.0 1480.0", "r"), ("i DECam SDSS c0003 7835.0 1470.0", "i"),
                  ("z DECam SDSS c0004 9260.0 1520.0", "z"), ("Y DECam c0005 10095.0 1130.0", "y"),
                  ("VR DECam c0007 6300.0 2600.0", "VR"), ("solid plate 0.0 0.0", "opaque"))


def _filters(pairs: tuple[tuple[str, str], ...]) -> tuple[PhysicalFilter, ...]:
    return tuple(PhysicalFilter(n, b) for n, b in pairs)


def _lsstcam_sim(detector_size: int = 4096) -> Instrument:
    return Instrument("LSSTCam-sim", lsstcam_like(detector_size), _filters(_RUBIN_FILTERS), "LSSTCam-sim",
                      visit_max=2**62, seeing_key="SEEING", layout_regions=True)


def _testcam(detector_size: int = 256) -> Instrument:
    return Instrument("TestCam", small_test_camera(detector_size), _filters(_RUBIN_FILTERS[1:4] + _RUBIN_FILTERS[6:]),
                      "TestCam", visit_max=2**62, seeing_key="SEEING", layout_regions=True)


def _hsc() -> Instrument:
    return Instrument("HSC", hsc_camera(), _filters(_HSC_FILTERS), "HSC", visit_max=21_474_800)


def _decam() -> Instrument:
    return Instrument("DECam", decam_camera(), _filters(_DECAM_FILTERS), "DECam", visit_max=33_554_432)


_FACTORIES: dict[str, Callable[..., Instrument]] = {
    "LSSTCam-sim": _lsstcam_sim, "TestCam": _testcam, "HSC": _hsc, "DECam": _decam,
}
_CUSTOM: dict[str, Instrument] = {}


def register_instrument(instrument: Instrument) -> None:
    """Make an instrument known by name (e.g. a simulated camera of another detector size)."""
    _CUSTOM[instrument.name] = instrument


def known_instruments() -> list[str]:
    """Names :func:`get_instrument` resolves."""
    return sorted({*_FACTORIES, *_CUSTOM})


def get_instrument(name: str, **kwargs: int) -> Instrument:
    """The instrument called ``name``.

    Parameters
    ----------
    name : str
        ``LSSTCam-sim``, ``TestCam``, ``HSC``, ``DECam`` or one added by :func:`register_instrument`.
    **kwargs
        Options of the simulated cameras (``detector_size``).

    Raises
    ------
    UnknownInstrumentError
        No instrument of that name.
    """
    if name in _CUSTOM and not kwargs:
        return _CUSTOM[name]
    if name not in _FACTORIES:
        raise UnknownInstrumentError(f"unknown instrument {name!r}; known: {', '.join(known_instruments())}")
    return _build(name, tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=32)
def _build(name: str, kwargs: tuple[tuple[str, int], ...]) -> Instrument:
    return _FACTORIES[name](**dict(kwargs))
