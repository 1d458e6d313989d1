"""PostgreSQL binary COPY built from, and parsed into, NumPy arrays.

Writing: the staging tables have no NULLs and fixed-width strings (NULLs
travel in bit-mask columns, see ``_codec``), so every row has the same layout
and the stream is one NumPy structured array filled column by column.

Reading: the SELECT is written so every output field has a fixed width and is
never NULL (NULL becomes a separate boolean field), so the COPY stream is one
NumPy structured array read in place with :func:`numpy.frombuffer`.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._exceptions import ApdbError

__all__ = ["COPY_HEADER", "COPY_TRAILER", "decode_fixed", "encode_fixed"]

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)


def encode_fixed(fields: list[tuple[str, NDArray[Any]]]) -> bytes:
    """Encode columns of one fixed row layout (no NULLs) as a complete binary COPY stream.

    Parameters
    ----------
    fields : list of (name, array)
        Arrays already in wire dtype: big-endian numbers, ``S<n>`` bytes, bool.
    """
    nrows = len(fields[0][1]) if fields else 0
    names: list[str] = ["n"]
    formats: list[Any] = [">i2"]
    for j, (_, values) in enumerate(fields):
        names += [f"l{j}", f"v{j}"]
        formats += [">i4", values.dtype]
    arr = np.empty(nrows, dtype=np.dtype({"names": names, "formats": formats}))
    arr["n"] = len(fields)
    for j, (_, values) in enumerate(fields):
        arr[f"l{j}"] = values.dtype.itemsize
        arr[f"v{j}"] = values
    return COPY_HEADER + arr.tobytes() + COPY_TRAILER


def decode_fixed(buffer: bytes, wire: list[tuple[str, str]]) -> np.ndarray:
    """Read a binary COPY stream whose rows all have the fixed layout ``wire``.

    Parameters
    ----------
    buffer : bytes
        The whole COPY output, header and trailer included.
    wire : list of (name, numpy dtype string)
        Every output field in order, e.g. ``("ra", ">f8")``, ``("band", "S1")``.

    Returns
    -------
    numpy.ndarray
        Structured array (big-endian fields) viewing ``buffer``.
    """
    names: list[str] = ["n"]
    formats: list[str] = [">i2"]
    for name, fmt in wire:
        names += [f"l:{name}", name]
        formats += [">i4", fmt]
    dtype = np.dtype({"names": names, "formats": formats})
    if not buffer.startswith(COPY_HEADER[:11]):
        raise ApdbError("the server sent a COPY stream without the binary header")
    body = len(buffer) - len(COPY_HEADER) - len(COPY_TRAILER)
    if body < 0 or body % dtype.itemsize:
        raise ApdbError(
            f"binary COPY body of {body} bytes is not a whole number of {dtype.itemsize}-byte rows "
            "(a string longer than its declared length, or non-ASCII text?)"
        )
    return np.frombuffer(buffer, dtype=dtype, count=body // dtype.itemsize, offset=len(COPY_HEADER))
