"""History chunks: each store's new rows, cut by (sky cell, time window), as fixed-width records.

A chunk is the bytes of a NumPy structured array whose row layout is fixed by
``apdb.yaml`` (:class:`RecordCodec`: native numbers, a ``<name>:null`` flag
before each nullable non-float column, ASCII strings padded to their declared
length). A field preload fetches a few thousand of these blobs, joins them
into one buffer and views it with :func:`numpy.frombuffer`: no per-row and no
per-blob decoding, whatever the number of blobs (see ``docs/apdb.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from ._copy import ascii_bytes
from ._exceptions import ApdbError
from ._schema import TableSpec
from ._validate import Columns

__all__ = ["Chunk", "RecordCodec", "cut_chunks"]


@dataclass(frozen=True)
class Chunk:
    """One blob of rows of one sky cell and one time window."""

    pixel: int
    mjd_min: float
    mjd_max: float
    nrows: int
    data: bytes


@dataclass(frozen=True)
class RecordCodec:
    """Fixed-width row records of one APDB table, and their conversion to Arrow."""

    spec: TableSpec

    @cached_property
    def dtype(self) -> np.dtype[Any]:
        fields: list[tuple[str, Any]] = []
        for c in self.spec.columns:
            if c.nullable and not c.is_float:
                fields.append((f"{c.name}:null", "?"))
            fields.append((c.name, f"S{c.length or 1}" if c.is_string else c.np_dtype.newbyteorder("<").str))
        return np.dtype(fields)

    def encode(self, cols: Columns) -> NDArray[np.void]:
        rec = np.zeros(cols.nrows, dtype=self.dtype)
        for c in self.spec.columns:
            values, mask = cols.data[c.name]
            if c.is_string:
                rec[c.name] = ascii_bytes(values, c.length or 1) if cols.nrows else values
            elif c.is_float and mask is not None and mask.any():
                rec[c.name] = np.where(mask, np.nan, values)
            else:
                rec[c.name] = values
            if c.nullable and not c.is_float and mask is not None:
                rec[f"{c.name}:null"] = mask
        return rec

    def frombuffer(self, buffer: bytes) -> NDArray[np.void]:
        if len(buffer) % self.dtype.itemsize:
            raise ApdbError(
                f"{self.spec.name} history chunks are not {self.dtype.itemsize}-byte records: "
                "the schema was written by another layout; recreate it"
            )
        return np.frombuffer(buffer, dtype=self.dtype)

    def to_arrow(self, rec: NDArray[np.void], rows: NDArray[np.intp] | None = None) -> pa.Table:
        """Arrow table of ``rec`` (or of its ``rows``), transposed block by block in cache."""
        cols = _transpose(rec, rows)
        arrays: list[pa.Array[Any]] = []
        for c in self.spec.columns:
            mask = None
            if c.nullable and not c.is_float:
                mask = cols[f"{c.name}:null"]
                if not mask.any():
                    mask = None
            values = cols[c.name]
            if c.is_string:
                arrays.append(_strings(values, mask))
            else:
                arrays.append(pa.array(values.astype(c.np_dtype, copy=False), c.arrow_type, mask=mask))
        return pa.Table.from_arrays(arrays, schema=self.spec.arrow_schema())


_BLOCK_BYTES = 1 << 19


def _transpose(rec: NDArray[np.void], rows: NDArray[np.intp] | None) -> dict[str, NDArray[Any]]:
    """Row records to contiguous columns; rows are gathered ~1 MiB at a time so the copies stay in cache."""
    n = rec.size if rows is None else rows.size
    names = rec.dtype.names or ()
    out = {name: np.empty(n, dtype=rec.dtype[name]) for name in names}
    step = max(1, _BLOCK_BYTES // max(rec.dtype.itemsize, 1))
    raw = rec.view(np.dtype(f"V{rec.dtype.itemsize}"))  # gathers as memcpy, not field by field
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        block = rec[lo:hi] if rows is None else raw[rows[lo:hi]].view(rec.dtype)
        for name in names:
            out[name][lo:hi] = block[name]
    return out


def _strings(values: NDArray[np.bytes_], mask: NDArray[np.bool_] | None) -> pa.Array[Any]:
    """NUL-padded fixed-width ASCII to an Arrow string array, without a per-row Python step."""
    width = values.dtype.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(values), [None, pa.py_buffer(values.view(np.uint8))]  # type: ignore[arg-type]  # ndarray.__buffer__ is typed for 3.12+
    )
    text = pc.utf8_rtrim(fixed.cast(pa.binary()).cast(pa.string()), characters="\x00")
    if mask is not None:
        text = pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), text)
    return text


def cut_chunks(
    rec: NDArray[np.void], pixels: NDArray[np.int64], shift: int, mjd: NDArray[np.float64], partition_days: int
) -> list[Chunk]:
    """Split records into chunks by sky cell ``pixels >> shift`` and time window."""
    if rec.size == 0:
        return []
    cell = pixels >> shift
    window = np.floor(mjd / partition_days).astype(np.int64)
    order = np.lexsort((window, cell))
    cell, window, mjd_sorted, ordered = cell[order], window[order], mjd[order], rec[order]
    starts = np.flatnonzero(np.r_[True, (cell[1:] != cell[:-1]) | (window[1:] != window[:-1])])
    ends = np.r_[starts[1:], cell.size]
    return [
        Chunk(
            pixel=int(cell[lo]),
            mjd_min=float(mjd_sorted[lo:hi].min()),
            mjd_max=float(mjd_sorted[lo:hi].max()),
            nrows=int(hi - lo),
            data=ordered[lo:hi].tobytes(),
        )
        for lo, hi in zip(starts, ends, strict=True)
    ]


def select_rows(rec: NDArray[np.void], object_ids: NDArray[np.int64] | None, since: float) -> NDArray[np.intp]:
    """Indices of records with ``midpointMjdTai >= since`` and (if given) ``diaObjectId`` in ``object_ids``."""
    if rec.size == 0:
        return np.empty(0, dtype=np.intp)
    keep = rec["midpointMjdTai"] >= since
    if object_ids is not None:
        wanted = np.unique(np.asarray(object_ids, dtype=np.int64))
        if wanted.size == 0:
            return np.empty(0, dtype=np.intp)
        ids = rec["diaObjectId"]
        pos = np.minimum(np.searchsorted(wanted, ids), wanted.size - 1)
        keep &= wanted[pos] == ids
    return np.flatnonzero(keep)
