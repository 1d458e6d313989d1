"""Deterministic DiaSource / DiaForcedSource ids from (visit, detector, source number).

``id = visit_bits << 31 | detector << 20 | number``: 32 bits of visit, 11 of
detector (< 2048), 20 of per-detector source number (< 1,048,576), so the id is
a positive 63-bit integer and a replayed visit produces the same ids.

The 32 visit bits hold the visit itself when it is below ``2**31``. Larger
visits are the observatory's ``day_obs * 100000 + seq_num`` exposure ids
(``2026120600005``: 41 bits); they are packed, as Rubin's observation
dimension packer does, into ``2**31 + days * 100000 + seq_num`` with ``days``
counted from 2000-01-01 (valid through 2058). :func:`split_source_ids` unpacks
them, so both directions are exact.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["make_source_ids", "split_source_ids"]

VISIT_BITS, DETECTOR_BITS, NUMBER_BITS = 32, 11, 20
_PACKED = np.int64(1 << (VISIT_BITS - 1))  # visit bits at or above this hold a packed day_obs visit
_SEQ = 100_000
_EPOCH = np.datetime64("2000-01-01", "D")


def _pack_visits(v: NDArray[np.int64]) -> NDArray[np.int64]:
    """Visits below 2**31 unchanged; ``day_obs * 100000 + seq`` visits packed into [2**31, 2**32)."""
    big = v >= _PACKED
    if not big.any():
        return v
    out = v.copy()
    for visit in np.unique(v[big]):
        day_obs, seq = divmod(int(visit), _SEQ)
        year, rest = divmod(day_obs, 10_000)
        month, day = divmod(rest, 100)
        try:
            date = np.datetime64(f"{year:04d}-{month:02d}-{day:02d}", "D")
        except ValueError:
            date = None
        days = int((date - _EPOCH).astype(np.int64)) if date is not None and year >= 2000 else -1
        packed = int(_PACKED) + days * _SEQ + seq
        if date is None or days < 0 or packed >= 1 << VISIT_BITS or f"{date}" != f"{year:04d}-{month:02d}-{day:02d}":
            raise ValueError(f"visit {visit} is neither below 2**31 nor a day_obs * 100000 + seq_num exposure id "
                             "with day_obs in 2000-01-01..2058-10-17: it does not fit the 32 visit bits of a "
                             "DiaSource id")
        out[v == visit] = packed
    return out


def _unpack_visits(v: NDArray[np.int64]) -> NDArray[np.int64]:
    big = v >= _PACKED
    if not big.any():
        return v
    out = v.copy()
    for packed in np.unique(v[big]):
        days, seq = divmod(int(packed - _PACKED), _SEQ)
        date = str(_EPOCH + np.timedelta64(days, "D"))
        out[v == packed] = int(date.replace("-", "")) * _SEQ + seq
    return out


def make_source_ids(visit: ArrayLike, detector: ArrayLike, number: ArrayLike) -> NDArray[np.int64]:
    """Pack (visit, detector, source number) into deterministic 63-bit ids.

    Raises
    ------
    ValueError
        If a component is negative or does not fit its bit field (a visit fits when it is below
        ``2**31`` or is a ``day_obs * 100000 + seq_num`` exposure id, see the module docstring).
    """
    v, d, n = (np.asarray(x, dtype=np.int64) for x in (visit, detector, number))
    if v.size and v.min() < 0:
        raise ValueError("visit must be >= 0")
    v = _pack_visits(v)
    for name, arr, bits in (("detector", d, DETECTOR_BITS), ("number", n, NUMBER_BITS)):
        if arr.size and (arr.min() < 0 or arr.max() >= 1 << bits):
            raise ValueError(f"{name} must be in [0, 2**{bits})")
    out: NDArray[np.int64] = (v << (DETECTOR_BITS + NUMBER_BITS)) | (d << NUMBER_BITS) | n
    return out


def split_source_ids(ids: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Inverse of :func:`make_source_ids`: (visit, detector, number)."""
    a = np.asarray(ids, dtype=np.int64)
    return (
        _unpack_visits(a >> (DETECTOR_BITS + NUMBER_BITS)),
        (a >> NUMBER_BITS) & ((1 << DETECTOR_BITS) - 1),
        a & ((1 << NUMBER_BITS) - 1),
    )
