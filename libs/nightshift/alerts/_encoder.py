"""Column-wise Avro encoding of flat records (DiaSource, DiaForcedSource, DiaObject rows).

The bytes of one row are the concatenation of its fields' encodings
(Avro spec, "binary encoding"): a union branch index, then the value —
zig-zag varints for ``int``/``long``, 4 or 8 little-endian bytes for
``float``/``double``, one byte for ``boolean``, a varint length and the bytes
for ``string``/``bytes``. The encoder builds, per block of rows, a byte matrix
with one column slot of each field's widest encoding in that block and a
boolean matrix of the bytes each row really uses; ``matrix[keep]`` (row-major)
is then exactly the concatenation of every row's encoding. Each step is a
numpy operation over a whole column, never a Python loop over rows.

The result is byte-identical to ``fastavro.schemaless_writer`` on the
``table.to_pylist()`` records (tests/alerts/test_encoder.py proves it with
hypothesis), with one subtlety kept on purpose: a ``float`` NaN is written
quieted (bit 22 set), because that is what a float32 becomes on its way
through a Python float into fastavro.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from ._errors import AlertSchemaError

__all__ = ["EncodedRows", "RecordEncoder", "RowProblems", "as_arrow", "encode_long"]

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_INT32 = (-(2**31), 2**31 - 1)
_F32_MAX = float(np.finfo(np.float32).max)
_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_BLOCK_ROWS = 4096


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # one of _PRIMITIVES except null
    null_byte: int  # encoded union index of the null branch, -1 for a required field
    value_byte: int  # encoded union index of the value branch, -1 for a plain (non-union) field


@dataclass(frozen=True)
class EncodedRows:
    """Avro bodies of many rows in one buffer: row ``i`` is ``data[offsets[i]:offsets[i+1]]``."""

    data: bytes
    offsets: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    def row(self, i: int) -> bytes:
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def rows(self) -> list[bytes]:
        view = memoryview(self.data)
        o = self.offsets.tolist()
        return [bytes(view[o[i] : o[i + 1]]) for i in range(len(o) - 1)]


@dataclass(frozen=True)
class RowProblems:
    """Rows that cannot be encoded: ``bad[i]`` with the first offending ``field[i]`` and ``reason[i]``."""

    bad: NDArray[np.bool_]
    field: NDArray[np.object_]
    reason: NDArray[np.object_]

    @property
    def any(self) -> bool:
        return bool(self.bad.any())


def as_arrow(table: Any) -> pa.Table:
    """A pyarrow Table from a pyarrow or astropy Table (masked astropy columns become nulls)."""
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    try:
        names = list(table.colnames)
    except AttributeError:
        raise TypeError(f"expected a pyarrow or astropy Table, got {type(table).__name__}") from None
    arrays = []
    for name in names:
        col = table[name]
        data = np.asarray(col)
        mask = np.ma.getmaskarray(col) if hasattr(col, "mask") else None
        if data.dtype.kind in "US":
            data = data.astype(object)
        arrays.append(pa.array(data, mask=mask if mask is not None and mask.any() else None))
    return pa.Table.from_arrays(arrays, names=names)


def encode_long(values: NDArray[Any]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Zig-zag varints of int64 ``values``: a (n, width) byte matrix and each row's byte count."""
    v = np.asarray(values, dtype=np.int64)
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)
    nb = np.ones(v.shape, dtype=np.int64)
    top = int(z.max()) if z.size else 0
    for j in range(1, 10):
        if top < 1 << (7 * j):
            break
        nb += z >= np.uint64(1 << (7 * j))
    width = int(nb.max()) if nb.size else 1
    out = ((z[:, None] >> _SHIFTS[:width]) & np.uint64(0x7F)).astype(np.uint8)
    if width > 1:
        out[:, :-1] |= (np.arange(width - 1) < (nb[:, None] - 1)).astype(np.uint8) << 7
    return out, nb


def _union_bytes(branches: list[Any], kind: str) -> tuple[int, int]:
    null_i = branches.index("null")
    value_i = 1 - null_i
    return 2 * null_i, 2 * value_i  # zig-zag of the index, which is < 64: one byte


class RecordEncoder:
    """Encodes the rows of a table as one flat Avro record schema.

    Parameters
    ----------
    record : dict
        An Avro record schema whose fields are primitives or ``["null", primitive]``
        unions (every record of the Rubin alert schemas' sources and objects).
    fill : dict, optional
        Values for fields a table lacks (e.g. ``validityStartMjdTai`` of a new
        DiaObject version: the visit time).

    Raises
    ------
    AlertSchemaError
        The record has a field of another type (nested record, array, map, enum).
    """

    def __init__(self, record: dict[str, Any]) -> None:
        self.name = str(record.get("name", "record"))
        fields = []
        for f in record["fields"]:
            t = f["type"]
            if isinstance(t, dict) and t.get("type") in _PRIMITIVES:  # logical types (timestamp-micros on long)
                t = t["type"]
            if isinstance(t, str) and t in _PRIMITIVES and t != "null":
                fields.append(_Field(f["name"], t, -1, -1))
                continue
            if isinstance(t, list) and len(t) == 2 and "null" in t:
                other = t[1 - t.index("null")]
                if isinstance(other, dict) and other.get("type") in _PRIMITIVES:
                    other = other["type"]
                if isinstance(other, str) and other in _PRIMITIVES and other != "null":
                    nb, vb = _union_bytes(t, other)
                    fields.append(_Field(f["name"], other, nb, vb))
                    continue
            raise AlertSchemaError(f"{self.name}.{f['name']}: type {t!r} is not a primitive or [null, primitive]")
        self.fields: tuple[_Field, ...] = tuple(fields)
        self.field_names = tuple(f.name for f in fields)
        self.required = tuple(f.name for f in fields if f.null_byte < 0)

    def missing_required(self, table: pa.Table) -> list[str]:
        """Required fields ``table`` has no column for."""
        names = set(table.column_names)
        return [n for n in self.required if n not in names]

    def _columns(self, table: pa.Table) -> list[pa.Array[Any] | None]:
        missing = self.missing_required(table)
        if missing:
            raise AlertSchemaError(
                f"{self.name}: the table lacks required columns {missing}; add them (or pass a fill value)"
            )
        names = set(table.column_names)
        return [table.column(f.name).combine_chunks() if f.name in names else None for f in self.fields]

    def problems(self, table: pa.Table) -> RowProblems:
        """Rows that cannot be encoded: a null in a required field, a value outside the Avro type's range."""
        n = table.num_rows
        bad = np.zeros(n, dtype=bool)
        field = np.full(n, None, dtype=object)
        reason = np.full(n, None, dtype=object)

        def flag(mask: NDArray[np.bool_], name: str, why: str) -> None:
            new = mask & ~bad
            if new.any():
                field[new] = name
                reason[new] = why
                bad[new] = True

        for f, col in zip(self.fields, self._columns(table), strict=True):
            if col is None:
                continue
            if f.null_byte < 0 and col.null_count:
                flag(col.is_null().to_numpy(zero_copy_only=False), f.name, "required field is null")
            t = col.type
            if f.kind in ("int", "long") and pa.types.is_integer(t):
                if f.kind == "int" and t.bit_width > 32 or pa.types.is_uint32(t):
                    v = col.fill_null(0).to_numpy(zero_copy_only=False)
                    flag((v < _INT32[0]) | (v > _INT32[1]), f.name, f"value out of range for Avro int {list(_INT32)}")
                elif pa.types.is_uint64(t):
                    v = col.fill_null(0).to_numpy(zero_copy_only=False)
                    flag(v > np.uint64(2**63 - 1), f.name, "value out of range for Avro long")
            elif f.kind == "float" and pa.types.is_float64(t):
                v = col.fill_null(0.0).to_numpy(zero_copy_only=False)
                flag(np.isfinite(v) & (np.abs(v) > _F32_MAX), f.name, "value out of range for Avro float")
        return RowProblems(bad, field, reason)

    def encode(self, table: pa.Table, fill: dict[str, Any] | None = None) -> EncodedRows:
        """Encode every row of ``table`` (fields by column name; missing nullable fields are null).

        Rows flagged by :meth:`problems` are encoded with their bad values replaced
        (nulls by zeros, out-of-range numbers wrapped): never publish them.
        """
        table = as_arrow(table)
        if fill:
            for name, value in fill.items():
                if name not in table.column_names:
                    table = table.append_column(name, pa.array(np.full(table.num_rows, value)))
        cols = [self._prepare(f, c, table.num_rows) for f, c in zip(self.fields, self._columns(table), strict=True)]
        n = table.num_rows
        pieces: list[bytes] = []
        lengths = np.zeros(n, dtype=np.int64)
        for a in range(0, n, _BLOCK_ROWS):
            b = min(n, a + _BLOCK_ROWS)
            data, lens = self._encode_block(cols, a, b)
            pieces.append(data)
            lengths[a:b] = lens
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return EncodedRows(b"".join(pieces), offsets)

    @staticmethod
    def _prepare(f: _Field, col: pa.Array[Any] | None, n: int) -> tuple[Any, NDArray[np.bool_] | None]:
        """(values, null mask) of one column as numpy (strings: (offsets, data) of UTF-8)."""
        if col is None:
            return None, np.ones(n, dtype=bool)
        nulls = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
        k = f.kind
        if k in ("string", "bytes"):
            arr: Any = col.cast(pa.large_binary())
            if arr.null_count:
                arr = arr.fill_null(b"")
            buffers: list[Any] = arr.buffers()
            offsets = np.frombuffer(buffers[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
            data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
            return (offsets, data), nulls
        filled = col.fill_null(False if k == "boolean" else 0) if col.null_count else col
        if k == "boolean":
            return filled.to_numpy(zero_copy_only=False).astype(np.uint8), nulls
        if k in ("int", "long"):
            if not (pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)):
                raise AlertSchemaError(f"column {f.name!r} is {col.type}, the alert schema wants an integer ({k})")
            return filled.to_numpy(zero_copy_only=False).astype(np.int64), nulls
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise AlertSchemaError(f"column {f.name!r} is {col.type}, the alert schema wants a number ({k})")
        v = filled.to_numpy(zero_copy_only=False)
        if k == "double":
            return np.ascontiguousarray(v, dtype="<f8"), nulls
        with np.errstate(over="ignore", invalid="ignore"):
            f32 = np.ascontiguousarray(v, dtype="<f4")
        bits = f32.view(np.uint32)
        nan = np.isnan(f32)
        if nan.any():  # a float32 NaN passes a Python float (quieted) on its way into fastavro
            bits = bits.copy()
            bits[nan] |= np.uint32(0x00400000)
        return bits, nulls

    def _encode_block(self, cols: list[tuple[Any, NDArray[np.bool_] | None]], a: int, b: int) -> tuple[bytes, Any]:
        m = b - a
        # Plan: (field, values slice, null rows or None, value width, varint counts or None, string parts or None)
        plan: list[tuple[_Field, Any, NDArray[np.bool_] | None, int, Any, Any]] = []
        width = 0
        variable = False
        for f, (values, nulls) in zip(self.fields, cols, strict=True):
            null = nulls[a:b] if nulls is not None else None
            if null is not None and not null.any():
                null = None
            prefix = 1 if f.value_byte >= 0 else 0
            if values is None:  # column absent: every row null, the union index only
                plan.append((f, None, null, 0, None, None))
                width += prefix
                continue
            k = f.kind
            extra: Any = None
            if k == "double":
                w = 8
            elif k == "float":
                w = 4
            elif k == "boolean":
                w = 1
            elif k in ("int", "long"):
                extra = encode_long(values[a:b])
                w = extra[0].shape[1]
                variable |= w > 1
            else:
                offsets, data = values
                start = offsets[a:b]
                lens = offsets[a + 1 : b + 1] - start
                head = encode_long(lens)
                extra = (head, start, lens, data)
                w = head[0].shape[1] + (int(lens.max()) if m else 0)
                variable = True
            variable |= null is not None
            plan.append((f, values, null, w, extra, None))
            width += prefix + w
        matrix = np.empty((m, width), dtype=np.uint8)
        keep = np.ones((m, width), dtype=bool) if variable else None
        lengths = np.zeros(m, dtype=np.int64)
        fixed = 0
        o = 0
        for f, values, null, w, extra, _ in plan:
            if f.value_byte >= 0:
                if null is None:
                    matrix[:, o] = f.value_byte
                else:
                    matrix[:, o] = np.where(null, f.null_byte, f.value_byte)
                o += 1
                fixed += 1
            if values is None:
                continue
            k = f.kind
            if k == "double":
                matrix[:, o : o + 8].view("<f8")[:, 0] = values[a:b]
            elif k == "float":
                matrix[:, o : o + 4].view("<u4")[:, 0] = values[a:b]
            elif k == "boolean":
                matrix[:, o] = values[a:b]
            elif k in ("int", "long"):
                body, nb = extra
                for j in range(w):
                    matrix[:, o + j] = body[:, j]
                if w > 1 and keep is not None:
                    for j in range(1, w):
                        keep[:, o + j] = nb > j
                    lengths += nb if null is None else np.where(null, 0, nb)
                    fixed -= w
            else:
                (hbody, hnb), start, lens, data = extra
                hw = hbody.shape[1]
                for j in range(hw):
                    matrix[:, o + j] = hbody[:, j]
                sw = w - hw
                if sw:
                    jj = np.arange(sw)
                    inside = jj < lens[:, None]
                    idx = np.where(inside, start[:, None] + jj, 0)
                    matrix[:, o + hw : o + w] = data[idx] if data.size else 0
                    assert keep is not None
                    keep[:, o + hw : o + w] = inside
                if keep is not None:
                    for j in range(1, hw):
                        keep[:, o + j] = hnb > j
                row_len = hnb + lens
                lengths += row_len if null is None else np.where(null, 0, row_len)
                fixed -= w
            if null is not None and keep is not None:
                keep[null, o : o + w] = False
                if k in ("double", "float", "boolean") or (k in ("int", "long") and w == 1):
                    lengths -= null.astype(np.int64) * w
            fixed += w
            o += w
        lengths += fixed
        if keep is None:
            return matrix.tobytes(), lengths
        bits: Any = np.packbits(keep, bitorder="little")
        mask: Any = pa.Array.from_buffers(pa.bool_(), m * width, [None, pa.py_buffer(bits)])
        kept = pc.filter(pa.array(matrix.reshape(-1)), mask)
        buf: Any = kept.buffers()[1]
        return buf.to_pybytes()[kept.offset : kept.offset + len(kept)], lengths
