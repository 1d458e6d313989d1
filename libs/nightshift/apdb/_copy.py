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

__all__ = [
    "COPY_HEADER",
    "COPY_TRAILER",
    "ascii_bytes",
    "decode_fixed",
    "encode_fixed",
    "encode_rows",
    "trimmed_lengths",
]

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)


def ascii_bytes(values: NDArray[Any], width: int, *, pad: int = 0) -> NDArray[np.bytes_]:
    """Validated ASCII strings as ``S<width>``, padded with byte ``pad`` (numpy's char codec is slow)."""
    text = np.ascontiguousarray(values.astype("U", copy=False))
    n = text.size
    wu = text.dtype.itemsize // 4
    out = np.full((n, width), pad, dtype=np.uint8)
    k = min(wu, width)
    if n and k:
        codes = text.view(np.uint32).reshape(n, wu)[:, :k]
        out[:, :k] = np.where(codes == 0, pad, codes)
    return out.view(f"S{width}").reshape(n)


def trimmed_lengths(wire: NDArray[np.bytes_]) -> NDArray[np.int32]:
    """Length of each ``S<n>`` value without trailing spaces and NULs."""
    n, width = wire.size, wire.dtype.itemsize
    if not n or not width:
        return np.zeros(n, dtype=np.int32)
    b = wire.view(np.uint8).reshape(n, width)
    used = (b != 0) & (b != 32)
    last = width - np.argmax(used[:, ::-1], axis=1)
    return np.where(used.any(axis=1), last, 0).astype(np.int32)


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


def encode_rows(fields: list[tuple[NDArray[Any], NDArray[np.int32] | None]]) -> bytes:
    """Encode columns with NULLs and variable-length strings as a complete binary COPY stream.

    Every row is first laid out at its widest (as :func:`encode_fixed`), with each
    field's length word set to its real length (``-1`` for NULL); the payload bytes a
    row does not use (of NULL fields, and of strings shorter than their column
    width) are then dropped with one boolean-mask compaction.

    Parameters
    ----------
    fields : list of (values, lengths)
        ``values`` in wire dtype (big-endian numbers, ``S<n>`` bytes, bool);
        ``lengths`` per row: payload bytes to send, ``-1`` for NULL; ``None`` means
        every row sends the whole item.
    """
    nrows = len(fields[0][0]) if fields else 0
    names: list[str] = ["n"]
    formats: list[Any] = [">i2"]
    for j, (values, _) in enumerate(fields):
        names += [f"l{j}", f"v{j}"]
        formats += [">i4", values.dtype]
    dtype = np.dtype({"names": names, "formats": formats})
    arr = np.empty(nrows, dtype=dtype)
    arr["n"] = len(fields)
    keep: NDArray[np.bool_] | None = None
    for j, (values, lengths) in enumerate(fields):
        arr[f"v{j}"] = values
        width = values.dtype.itemsize
        if lengths is None:
            arr[f"l{j}"] = width
            continue
        arr[f"l{j}"] = lengths
        if keep is None:
            keep = np.ones((nrows, dtype.itemsize), dtype=np.bool_)
        start = dtype.fields[f"v{j}"][1]  # type: ignore[index]  # a structured dtype: fields is not None
        keep[:, start : start + width] = np.arange(width) < np.maximum(lengths, 0)[:, None]
    body = arr.view(np.uint8).reshape(nrows, dtype.itemsize)
    data = body.tobytes() if keep is None else body[keep].tobytes()
    return COPY_HEADER + data + COPY_TRAILER


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
