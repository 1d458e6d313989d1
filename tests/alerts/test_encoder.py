"""The column-wise encoder writes exactly fastavro.schemaless_writer's bytes (property-based)."""

from __future__ import annotations

import io
import math
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightshift.alerts import AlertSchema, AlertSchemaError, RecordEncoder

KINDS = ["boolean", "int", "long", "float", "double", "string", "bytes"]
ARROW = {
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "bytes": pa.binary(),
}
#: Every primitive kind, required and nullable (null first and null last).
RECORD: dict[str, Any] = {
    "type": "record",
    "name": "allKinds",
    "fields": [{"name": f"req_{k}", "type": k} for k in KINDS]
    + [{"name": f"opt_{k}", "type": ["null", k]} for k in KINDS]
    + [{"name": f"last_{k}", "type": [k, "null"]} for k in KINDS],
}

_I64 = (-(2**63), 2**63 - 1)
_I32 = (-(2**31), 2**31 - 1)
_EXTREME64 = st.sampled_from([_I64[0], _I64[1], 0, -1, 63, 64, -64, -65, 2**31, -(2**31) - 1, 2**56, -(2**56)])
_EXTREME32 = st.sampled_from([_I32[0], _I32[1], 0, -1, 63, 64, -64, -65, 8191, 8192])


def values(kind: str) -> st.SearchStrategy[Any]:
    if kind == "boolean":
        return st.booleans()
    if kind == "int":
        return st.one_of(st.integers(*_I32), _EXTREME32)
    if kind == "long":
        return st.one_of(st.integers(*_I64), _EXTREME64)
    if kind == "float":
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
    if kind == "double":
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == "string":
        return st.text(max_size=40)
    return st.binary(max_size=40)


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 12))
    cols = {}
    for f in RECORD["fields"]:
        kind = f["type"] if isinstance(f["type"], str) else next(t for t in f["type"] if t != "null")
        strat = values(kind) if isinstance(f["type"], str) else st.one_of(st.none(), values(kind))
        cols[f["name"]] = pa.array(draw(st.lists(strat, min_size=n, max_size=n)), type=ARROW[kind])
    return pa.table(cols)


def fastavro_bytes(schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tables())
def test_every_kind_matches_fastavro(table: pa.Table) -> None:
    enc = RecordEncoder(RECORD)
    parsed = fastavro.parse_schema(RECORD)
    rows = enc.encode(table)
    assert len(rows) == table.num_rows
    assert rows.rows() == [fastavro_bytes(parsed, r) for r in table.to_pylist()]


def _float32_nan(bits: int) -> float:
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def test_float_nan_payloads_match_fastavro() -> None:
    # A signalling float32 NaN becomes quiet on its way through a Python float; the encoder does the same.
    bits = np.array([0x7F800001, 0xFFC00000, 0x7FC00000, 0x7F812345], dtype=np.uint32)
    col = pa.array(bits.view(np.float32))
    record = {"type": "record", "name": "r", "fields": [{"name": "x", "type": "float"}]}
    rows = RecordEncoder(record).encode(pa.table({"x": col}))
    expected = [fastavro_bytes(fastavro.parse_schema(record), {"x": _float32_nan(int(b))}) for b in bits]
    assert rows.rows() == expected
    assert all(math.isnan(_float32_nan(int(b))) for b in bits)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_rubin_dia_source_rows_match_fastavro(data: st.DataObject) -> None:
    """The real v11.1 diaSource record, with nulls and extreme values in every column."""
    schema = AlertSchema.load()
    record = schema.record("diaSource")
    n = data.draw(st.integers(1, 6))
    cols = {}
    for f in record["fields"]:
        t = f["type"]
        kind = t if isinstance(t, str) else next(x for x in t if x != "null")
        strat = values(kind) if isinstance(t, str) else st.one_of(st.none(), values(kind))
        cols[f["name"]] = pa.array(data.draw(st.lists(strat, min_size=n, max_size=n)), type=ARROW[kind])
    table = pa.table(cols)
    rows = RecordEncoder(record).encode(table)
    parsed = fastavro.parse_schema(record)
    assert rows.rows() == [fastavro_bytes(parsed, r) for r in table.to_pylist()]


def test_apdb_column_types_are_converted_like_fastavro() -> None:
    # APDB 'short' detector (int16) into Avro int, float64 into Avro float, extra columns ignored.
    record = {
        "type": "record",
        "name": "r",
        "fields": [{"name": "detector", "type": "int"}, {"name": "flux", "type": ["null", "float"]}],
    }
    table = pa.table({
        "detector": pa.array([0, 188, -5], pa.int16()),
        "flux": pa.array([1.1, None, 3e-39], pa.float64()),
        "pixelId": pa.array([1, 2, 3], pa.int64()),
    })
    rows = RecordEncoder(record).encode(table)
    parsed = fastavro.parse_schema(record)
    assert rows.rows() == [fastavro_bytes(parsed, r) for r in table.to_pylist()]


def test_problems_name_the_field_and_reason() -> None:
    record = {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "n", "type": "int"},
            {"name": "f", "type": ["null", "float"]},
        ],
    }
    table = pa.table({
        "id": pa.array([1, None, 3, 4], pa.int64()),
        "n": pa.array([1, 2, 2**40, 4], pa.int64()),
        "f": pa.array([1.0, 2.0, 3.0, 1e300], pa.float64()),
    })
    p = RecordEncoder(record).problems(table)
    assert p.bad.tolist() == [False, True, True, True]
    assert p.field.tolist() == [None, "id", "n", "f"]
    assert p.reason[1] == "required field is null"
    assert "out of range for Avro int" in p.reason[2]
    assert "out of range for Avro float" in p.reason[3]


def test_missing_required_column_is_a_schema_error() -> None:
    record = {"type": "record", "name": "r", "fields": [{"name": "id", "type": "long"}]}
    with pytest.raises(AlertSchemaError, match=r"lacks required columns \['id'\]"):
        RecordEncoder(record).encode(pa.table({"other": [1]}))


def test_nested_types_are_refused() -> None:
    record = {"type": "record", "name": "r", "fields": [{"name": "a", "type": {"type": "array", "items": "int"}}]}
    with pytest.raises(AlertSchemaError, match="not a primitive"):
        RecordEncoder(record)
