"""Half-open time ranges ``[begin, end)`` stored as TAI nanoseconds since 1970-01-01 TAI."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

__all__ = ["Timespan", "to_tai_ns"]

#: Stored stand-ins for an unbounded begin/end (fit in a signed 64-bit column).
_MIN_NS = -(2**62)
_MAX_NS = 2**62


def to_tai_ns(value: Any) -> int:
    """Convert a time to integer TAI nanoseconds since 1970-01-01T00:00:00 TAI.

    Parameters
    ----------
    value : astropy.time.Time, datetime.datetime, str or int
        ``int`` is taken as nanoseconds already; a naive ``datetime`` and an
        ISO string are read as UTC (``Time(value, scale="utc")``).

    Raises
    ------
    TypeError
        If the value is not a time.
    """
    if isinstance(value, bool):
        raise TypeError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    from astropy.time import Time  # lazy: astropy costs ~0.4 s to import

    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        value = Time(value, scale="utc")
    elif isinstance(value, str):
        try:
            value = Time(value, scale="utc")
        except ValueError as exc:
            raise TypeError(f"not a time: {value!r} ({exc})") from exc
    if not isinstance(value, Time):
        raise TypeError(f"not a time: {value!r} (use astropy.time.Time, datetime or TAI ns)")
    tai = value.tai
    epoch = Time("1970-01-01T00:00:00", scale="tai")
    # jd1 holds whole/half days (exact in float), jd2 the fraction: keep them apart for ns precision
    whole = (float(tai.jd1) - float(epoch.jd1)) * 86_400
    frac = (float(tai.jd2) - float(epoch.jd2)) * 86_400_000_000_000
    return int(round(whole)) * 1_000_000_000 + int(round(frac))


@dataclass(frozen=True)
class Timespan:
    """A half-open time range ``[begin, end)``; ``None`` means unbounded.

    Parameters
    ----------
    begin, end : astropy.time.Time, datetime, ISO str, int (TAI ns) or None
    """

    begin_ns: int
    end_ns: int

    def __init__(self, begin: Any = None, end: Any = None) -> None:
        b = _MIN_NS if begin is None else to_tai_ns(begin)
        e = _MAX_NS if end is None else to_tai_ns(end)
        if e <= b:
            raise ValueError(f"timespan end must be after begin (begin={begin!r}, end={end!r})")
        object.__setattr__(self, "begin_ns", b)
        object.__setattr__(self, "end_ns", e)

    @classmethod
    def from_ns(cls, begin_ns: int, end_ns: int) -> Timespan:
        """Build from stored integers (sentinels mean unbounded)."""
        return cls(None if begin_ns <= _MIN_NS else begin_ns, None if end_ns >= _MAX_NS else end_ns)

    def overlaps(self, other: Timespan) -> bool:
        """Whether the two ranges share any instant."""
        return self.begin_ns < other.end_ns and other.begin_ns < self.end_ns

    def contains(self, t: Any) -> bool:
        """Whether the instant ``t`` is inside ``[begin, end)``."""
        ns = to_tai_ns(t)
        return self.begin_ns <= ns < self.end_ns

    @property
    def begin(self) -> Any:
        """Begin as ``astropy.time.Time`` (TAI), or None if unbounded."""
        return None if self.begin_ns <= _MIN_NS else _ns_to_time(self.begin_ns)

    @property
    def end(self) -> Any:
        """End as ``astropy.time.Time`` (TAI), or None if unbounded."""
        return None if self.end_ns >= _MAX_NS else _ns_to_time(self.end_ns)

    def __repr__(self) -> str:
        b = "-inf" if self.begin_ns <= _MIN_NS else str(self.begin_ns)
        e = "+inf" if self.end_ns >= _MAX_NS else str(self.end_ns)
        return f"Timespan(begin_ns={b}, end_ns={e})"


def _ns_to_time(ns: int) -> Any:
    from astropy.time import Time, TimeDelta

    epoch = Time("1970-01-01T00:00:00", scale="tai")
    days, rem = divmod(ns, 86_400_000_000_000)
    return epoch + TimeDelta(days, rem / 86_400_000_000_000, format="jd", scale="tai")
