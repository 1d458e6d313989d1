"""Column codecs between APDB tables and binary COPY (write) / fixed-width COPY (read).

Writing goes through a staging table with a fixed row layout: numbers are
never NULL there (NULL floats travel as NaN, other NULLs as bits of
``_nullN`` bigint columns), strings are space-padded to their declared
length. The set-based INSERT turns them back into NULLs and trimmed text.
Reads use fixed-width records (``_chunks.RecordCodec``): NULL floats come
back as NaN, other NULLs via a flag. So: a missing float is NULL in
PostgreSQL and NaN in NumPy/Arrow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._chunks import RecordCodec
from ._copy import ascii_bytes, encode_fixed, encode_rows, trimmed_lengths
from ._ddl import RECORD_COLUMN, q
from ._schema import PIXEL_COLUMN, ColumnSpec, TableSpec
from ._validate import Columns

__all__ = ["StagePlan"]


def _flagged(col: ColumnSpec) -> bool:
    return col.nullable and not col.is_float


@dataclass(frozen=True)
class StagePlan:
    """Staging-table definition, binary encoder and INSERT expressions of one table."""

    spec: TableSpec
    record: bool = False
    #: Table whose fixed-width record the ``apdbRecord`` column carries (default: ``spec``).
    record_spec: TableSpec | None = None

    @property
    def flagged(self) -> list[ColumnSpec]:
        return [c for c in self.spec.columns if _flagged(c)]

    @property
    def n_words(self) -> int:
        return (len(self.flagged) + 62) // 63

    def stage_ddl(self, name: str) -> str:
        cols = []
        for c in self.spec.columns:
            pg = "text" if c.is_string else c.pg_type
            cols.append(f"{q(c.name)} {pg} NOT NULL")
        cols.append(f"{q(PIXEL_COLUMN)} bigint NOT NULL")
        cols += [f'"_null{w}" bigint NOT NULL' for w in range(self.n_words)]
        if self.record:
            cols.append(f"{q(RECORD_COLUMN)} bytea NOT NULL")
        return f"CREATE TEMP TABLE IF NOT EXISTS {q(name)} ({', '.join(cols)}) ON COMMIT DELETE ROWS"

    def stage_columns(self) -> list[str]:
        extra = [RECORD_COLUMN] if self.record else []
        return [*self.spec.names, PIXEL_COLUMN, *(f"_null{w}" for w in range(self.n_words)), *extra]

    def target_columns(self) -> list[str]:
        return [*self.spec.names, PIXEL_COLUMN]

    def select_exprs(self, alias: str = "s") -> list[str]:
        """Expressions, in :meth:`target_columns` order, restoring NULLs from the staging row."""
        bit = {c.name: i for i, c in enumerate(self.flagged)}
        out = []
        for c in self.spec.columns:
            ref = f"{alias}.{q(c.name)}"
            if c.is_string:
                ref = f"rtrim({ref})"
            if c.nullable and c.is_float:
                out.append(f"NULLIF({ref}, 'NaN')")
            elif c.name in bit:
                w, b = divmod(bit[c.name], 63)
                out.append(f'CASE WHEN {alias}."_null{w}" & {1 << b}::int8 <> 0 THEN NULL ELSE {ref} END')
            else:
                out.append(ref)
        out.append(f"{alias}.{q(PIXEL_COLUMN)}")
        return out

    def encode_direct(self, cols: Columns, pixels: NDArray[np.int64], order: NDArray[np.intp]) -> bytes:
        """The binary COPY stream of ``cols`` (rows in ``order``) for the target table itself.

        Columns in :meth:`target_columns` order, with the NULLs the staging INSERT
        would make: masked values and NaN floats as NULL, strings without trailing spaces.
        """
        fields: list[tuple[NDArray[Any], NDArray[np.int32] | None]] = []
        for c in self.spec.columns:
            values, mask = cols.data[c.name]
            values = values[order]
            mask = None if mask is None else mask[order]
            if c.is_string:
                width = c.length or max(int(np.char.str_len(values).max(initial=1)), 1)
                wire = ascii_bytes(values, width)
                lengths = trimmed_lengths(wire)
                if mask is not None:
                    lengths[mask] = -1
                fields.append((wire, lengths))
                continue
            wire = values.astype(c.np_dtype.newbyteorder(">"))
            null = mask if (mask is not None and mask.any()) else None
            if c.is_float and c.nullable:
                nan = np.isnan(values)
                if nan.any():
                    null = nan if null is None else (null | nan)
            if null is not None and not c.nullable:  # pragma: no cover - validation rejects these
                raise ValueError(f"NULL in required column {c.name}")
            null_lengths = None if null is None else np.where(null, -1, wire.dtype.itemsize).astype(np.int32)
            fields.append((wire, null_lengths))
        fields.append((pixels[order].astype(">i8"), None))
        return encode_rows(fields)

    def encode(self, cols: Columns, pixels: NDArray[np.int64]) -> bytes:
        """The binary COPY stream of ``cols`` for the staging table."""
        fields: list[tuple[str, NDArray[Any]]] = []
        words = [np.zeros(cols.nrows, dtype=np.int64) for _ in range(self.n_words)]
        bit = {c.name: i for i, c in enumerate(self.flagged)}
        for c in self.spec.columns:
            values, mask = cols.data[c.name]
            if c.is_string:
                width = c.length or max(int(np.char.str_len(values).max(initial=1)), 1)
                wire = ascii_bytes(values, width, pad=32)  # space padded: PostgreSQL text must not hold NUL
            elif c.is_float:
                wire = values.astype(c.np_dtype.newbyteorder(">"))
                if mask is not None and mask.any():
                    wire = wire.copy()
                    wire[mask] = np.nan
            else:
                wire = values.astype(c.np_dtype.newbyteorder(">"))
            if c.name in bit and mask is not None and mask.any():
                w, b = divmod(bit[c.name], 63)
                words[w] |= mask.astype(np.int64) << b
            fields.append((c.name, wire))
        fields.append((PIXEL_COLUMN, pixels.astype(">i8")))
        fields += [(f"_null{w}", words[w].astype(">i8")) for w in range(self.n_words)]
        if self.record:
            rec = RecordCodec(self.record_spec or self.spec).encode(cols)
            fields.append((RECORD_COLUMN, rec.view(np.dtype(f"V{rec.dtype.itemsize}"))))
        return encode_fixed(fields)
