"""Deterministic DiaSource / DiaForcedSource ids from (visit, detector, source number).

``id = visit << 31 | detector << 20 | number``: 32 bits of visit, 11 of
detector (< 2048), 20 of per-detector source number (< 1,048,576), so the id is
a positive 63-bit integer and a replayed visit produces the same ids.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["make_source_ids", "split_source_ids"]

VISIT_BITS, DETECTOR_BITS, NUMBER_BITS = 32, 11, 20


def make_source_ids(visit: ArrayLike, detector: ArrayLike, number: ArrayLike) -> NDArray[np.int64]:
    """Pack (visit, detector, source number) into deterministic 63-bit ids.

    Raises
    ------
    ValueError
        If a component is negative or does not fit its bit field.
    """
    v, d, n = (np.asarray(x, dtype=np.int64) for x in (visit, detector, number))
    for name, arr, bits in (("visit", v, VISIT_BITS), ("detector", d, DETECTOR_BITS), ("number", n, NUMBER_BITS)):
        if arr.size and (arr.min() < 0 or arr.max() >= 1 << bits):
            raise ValueError(f"{name} must be in [0, 2**{bits})")
    out: NDArray[np.int64] = (v << (DETECTOR_BITS + NUMBER_BITS)) | (d << NUMBER_BITS) | n
    return out


def split_source_ids(ids: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Inverse of :func:`make_source_ids`: (visit, detector, number)."""
    a = np.asarray(ids, dtype=np.int64)
    return (
        a >> (DETECTOR_BITS + NUMBER_BITS),
        (a >> NUMBER_BITS) & ((1 << DETECTOR_BITS) - 1),
        a & ((1 << NUMBER_BITS) - 1),
    )
