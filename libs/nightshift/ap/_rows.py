"""APDB rows: build pyarrow tables with the Rubin ``apdb.yaml`` columns (names, types, nullability)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from ..apdb import apdb_tables
from ._exceptions import ApInputError

__all__ = ["apdb_rows"]


def apdb_rows(table: str, n: int, values: Mapping[str, Any]) -> pa.Table:
    """An ``n``-row table of APDB ``table`` (``DiaSource``, ``DiaObject``, ``DiaForcedSource``).

    Columns in ``values`` take those values (NaN floats stay NaN); other nullable columns are NULL; other
    non-nullable count columns (``*Ndata``, ``nDiaSources``) are 0.

    Raises
    ------
    ApInputError
        If a value names an unknown column or a required column is missing.
    """
    spec = apdb_tables()[table]
    unknown = set(values) - set(spec.names)
    if unknown:
        raise ApInputError(f"{table} has no column(s) {sorted(unknown)}")
    arrays: list[pa.Array[Any]] = []
    fields = []
    for col in spec.columns:
        if col.name in values:
            v = values[col.name]
            arr: pa.Array[Any]
            if col.is_string:
                arr = pa.array(list(np.broadcast_to(np.asarray(v, object), (n,))), pa.string())
            else:
                arr = pa.array(np.broadcast_to(np.asarray(v).astype(col.np_dtype), (n,)), col.arrow_type)
        elif col.nullable:
            arr = pa.array([None] * n, type=col.arrow_type)
        elif col.name.endswith("Ndata") or col.name == "nDiaSources":
            arr = pa.array(np.zeros(n, col.np_dtype), col.arrow_type)
        else:
            raise ApInputError(f"{table}.{col.name} is required (not nullable) and was not given")
        arrays.append(arr)
        fields.append(pa.field(col.name, col.arrow_type, nullable=col.nullable))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
