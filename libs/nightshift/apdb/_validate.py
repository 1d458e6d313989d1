"""Turning caller tables into typed NumPy columns, and rejecting bad rows before any write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ._exceptions import ApdbValidationError
from ._schema import ColumnSpec, TableSpec

__all__ = ["Columns", "TableLike", "normalize"]

#: What ``store`` accepts for a table: pyarrow, astropy or a NumPy structured array.
TableLike = Any

_MAX_REPORTED_ROWS = 5


@dataclass
class Columns:
    """A validated table: column name → (values, NULL mask or None), all of one length."""

    table: str
    nrows: int
    data: dict[str, tuple[NDArray[Any], NDArray[np.bool_] | None]]

    def values(self, name: str) -> NDArray[Any]:
        return self.data[name][0]

    def take(self, idx: NDArray[np.intp]) -> Columns:
        return Columns(
            self.table,
            int(idx.size),
            {k: (v[idx], None if m is None else m[idx]) for k, (v, m) in self.data.items()},
        )

    def to_arrow(self, spec: TableSpec) -> pa.Table:
        arrays: list[pa.Array[Any]] = []
        for col in spec.columns:
            values, mask = self.data[col.name]
            if col.is_string:
                arrays.append(pa.array(values, type=pa.string(), mask=mask))
            elif col.is_float:  # a missing float is NaN on this side of the wire
                if mask is not None and mask.any():
                    values = np.where(mask, np.nan, values).astype(col.np_dtype)
                arrays.append(pa.array(values, type=col.arrow_type))
            else:
                arrays.append(pa.array(values, type=col.arrow_type, mask=mask))
        return pa.Table.from_arrays(arrays, schema=spec.arrow_schema())


def _raw_columns(data: TableLike) -> tuple[dict[str, tuple[NDArray[Any], NDArray[np.bool_] | None]], int]:
    """Extract (values, mask) per column from a pyarrow / astropy / NumPy table."""
    out: dict[str, tuple[NDArray[Any], NDArray[np.bool_] | None]] = {}
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        for name, column in zip(data.column_names, data.columns, strict=True):
            col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            mask = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                values = col.to_numpy(zero_copy_only=False)
            elif mask is not None:
                values = col.fill_null(pa.scalar(0 if not pa.types.is_boolean(col.type) else False, col.type)).to_numpy(
                    zero_copy_only=False
                )
            else:
                values = col.to_numpy(zero_copy_only=False)
            out[name] = (np.asarray(values), mask)
        return out, data.num_rows
    if isinstance(data, np.ndarray) and data.dtype.names:
        for name in data.dtype.names:
            out[name] = (np.asarray(data[name]), None)
        return out, len(data)
    columns = getattr(data, "columns", None)
    if columns is not None and hasattr(data, "colnames"):  # astropy Table
        for name in data.colnames:
            col = data[name]
            mask = np.asarray(col.mask, dtype=bool) if hasattr(col, "mask") and np.any(col.mask) else None
            values = np.asarray(col.filled() if hasattr(col, "filled") else col)
            if hasattr(col, "unit") and col.unit is not None:
                values = np.asarray(getattr(col, "value", values))
            out[name] = (values, mask)
        return out, len(data)
    raise TypeError(
        f"expected a pyarrow.Table, astropy.table.Table or NumPy structured array, got {type(data).__name__}"
    )


def _rows(bad: NDArray[np.bool_]) -> list[int]:
    return [int(i) for i in np.flatnonzero(bad)[:_MAX_REPORTED_ROWS]]


def _fail(table: str, column: str, bad: NDArray[np.bool_], what: str) -> ApdbValidationError:
    rows = _rows(bad)
    more = int(bad.sum()) - len(rows)
    suffix = f" (and {more} more)" if more > 0 else ""
    return ApdbValidationError(
        f"{table}: column {column!r} {what} in row(s) {rows}{suffix}", table=table, column=column, rows=rows
    )


def _coerce(table: str, col: ColumnSpec, values: NDArray[Any], mask: NDArray[np.bool_] | None) -> NDArray[Any]:
    if col.is_string:
        return _coerce_strings(table, col, values, mask)
    target = col.np_dtype
    if values.dtype.kind in "US O".replace(" ", ""):
        raise ApdbValidationError(
            f"{table}: column {col.name!r} holds {values.dtype} values, expected {col.datatype}",
            table=table,
            column=col.name,
        )
    if target.kind in "iu":
        if values.dtype.kind == "f":
            bad = ~np.isfinite(values) | (values != np.round(values))
            if mask is not None:
                bad &= ~mask
            if bad.any():
                raise _fail(table, col.name, bad, "is not an integer")
            values = np.where(np.isfinite(values), values, 0)
        info = np.iinfo(target)
        if values.dtype.kind in "iuf" and values.size:
            bad = (values < info.min) | (values > info.max)
            if mask is not None:
                bad &= ~mask
            if bad.any():
                raise _fail(table, col.name, bad, f"is outside the {col.datatype} range")
    return np.ascontiguousarray(values.astype(target, copy=False))


def _coerce_strings(
    table: str, col: ColumnSpec, values: NDArray[Any], mask: NDArray[np.bool_] | None
) -> NDArray[np.str_]:
    """Strings as a NumPy unicode array; rejects non-ASCII and over-long values."""
    if values.dtype.kind == "S":
        values = values.astype(object)
    if values.dtype.kind == "O":
        values = np.array(
            ["" if v is None else (v.decode(errors="replace") if isinstance(v, bytes) else str(v)) for v in values],
            dtype=object,
        )
    text = values.astype("U") if values.size else np.empty(0, dtype="U1")
    if mask is not None:
        text = np.where(mask, "", text)
    bad = np.char.str_len(text) > (col.length or np.iinfo(np.int64).max) if text.size else np.zeros(0, bool)
    if text.size and text.dtype.itemsize:
        codes = np.ascontiguousarray(text).view(np.uint32).reshape(text.size, -1)
        bad |= codes.max(axis=1) >= 128  # not ASCII
    if bad.any():
        raise _fail(table, col.name, bad, f"is longer than {col.length} characters or not ASCII")
    return text


def normalize(
    data: TableLike | None,
    spec: TableSpec,
    *,
    fill: dict[str, Any] | None = None,
    optional: frozenset[str] = frozenset(),
) -> Columns:
    """Validate a caller table against ``spec`` and return typed columns in schema order.

    Parameters
    ----------
    data : table-like or None
        pyarrow ``Table``/``RecordBatch``, astropy ``Table`` or NumPy structured
        array; ``None`` means no rows.
    spec : TableSpec
        The APDB table the rows are for.
    fill : dict, optional
        Values for columns the caller may omit (e.g. ``validityStartMjdTai``).
    optional : frozenset of str
        Non-nullable columns that ``fill`` provides when absent.

    Raises
    ------
    ApdbValidationError
        On an unknown or missing required column, NULL/NaN in a required
        column, a coordinate out of range, or a duplicate primary key; the
        message names the column and the (first) rows.
    """
    fill = fill or {}
    if data is None:
        return Columns(spec.name, 0, {c.name: (np.empty(0, dtype=c.np_dtype), None) for c in spec.columns})
    raw, nrows = _raw_columns(data)
    unknown = sorted(set(raw) - set(spec.names))
    if unknown:
        raise ApdbValidationError(
            f"{spec.name}: unknown column(s) {unknown} (not in apdb.yaml)", table=spec.name, column=unknown[0]
        )
    out: dict[str, tuple[NDArray[Any], NDArray[np.bool_] | None]] = {}
    for col in spec.columns:
        if col.name in raw:
            values, mask = raw[col.name]
            if values.ndim != 1:
                raise ApdbValidationError(
                    f"{spec.name}: column {col.name!r} is not one-dimensional", table=spec.name, column=col.name
                )
            values = _coerce(spec.name, col, values, mask)
        elif col.name in fill:
            values = np.full(nrows, fill[col.name], dtype=col.np_dtype)
            mask = None
        elif col.default is not None:
            values = np.full(nrows, col.default, dtype=col.np_dtype)
            mask = None
        elif not col.nullable and col.name not in optional:
            raise ApdbValidationError(
                f"{spec.name}: required column {col.name!r} is missing", table=spec.name, column=col.name
            )
        else:
            if col.is_float:
                values, mask = np.full(nrows, np.nan, dtype=col.np_dtype), None
            else:
                values, mask = np.zeros(nrows, dtype=col.np_dtype), np.ones(nrows, dtype=bool)
                if col.is_string:
                    values = np.full(nrows, "", dtype="U1")
        if not col.nullable:
            if mask is not None and mask.any():
                raise _fail(spec.name, col.name, mask, "is NULL but the column is required")
            if col.is_float:
                bad = ~np.isfinite(values)
                if bad.any():
                    raise _fail(spec.name, col.name, bad, "is NaN or infinite but the column is required")
            mask = None
        out[col.name] = (values, mask)
    _check_coordinates(spec.name, out)
    _check_unique(spec, out, nrows)
    return Columns(spec.name, nrows, out)


def _check_coordinates(table: str, cols: dict[str, tuple[NDArray[Any], NDArray[np.bool_] | None]]) -> None:
    if "ra" in cols:
        ra = cols["ra"][0]
        bad = ~np.isfinite(ra) | (ra < 0.0) | (ra >= 360.0)
        if bad.any():
            raise _fail(table, "ra", bad, "is NaN or outside [0, 360) degrees")
    if "dec" in cols:
        dec = cols["dec"][0]
        bad = ~np.isfinite(dec) | (dec < -90.0) | (dec > 90.0)
        if bad.any():
            raise _fail(table, "dec", bad, "is NaN or outside [-90, 90] degrees")


def _check_unique(spec: TableSpec, cols: dict[str, tuple[NDArray[Any], NDArray[np.bool_] | None]], nrows: int) -> None:
    key = [k for k in spec.primary_key if k != "validityStartMjdTai"]
    if nrows < 2 or not key:
        return
    columns = [cols[k][0] for k in key]
    order = np.lexsort(columns[::-1])
    same = np.ones(nrows - 1, dtype=bool)
    for c in columns:
        sc = c[order]
        same &= sc[1:] == sc[:-1]
    dup = np.zeros(nrows, dtype=bool)
    dup[order[1:][same]] = True
    if dup.any():
        raise _fail(spec.name, "+".join(key), dup, "repeats a primary key of an earlier row")
