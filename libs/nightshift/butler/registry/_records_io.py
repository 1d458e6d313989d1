"""Conversion between dimension records and table rows (validation, regions, timespans)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._registry_exceptions import DimensionRecordError
from ..dimensions import FIELD_TYPES, Dimension, DimensionRecord, DimensionUniverse
from ._timespan import Timespan

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["record_to_row", "row_to_record", "skypix_rows"]


def record_to_row(universe: DimensionUniverse, dim: Dimension, record: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a record mapping and turn it into a row of the element's table.

    Raises
    ------
    DimensionRecordError
        On a missing key, an unknown field or a value of the wrong type.
    """
    allowed = set(dim.record_fields)
    unknown = set(record) - allowed
    if unknown:
        raise DimensionRecordError(
            f"{dim.name} record has unknown field(s) {sorted(unknown)}; allowed: {', '.join(dim.record_fields)}"
        )
    row: dict[str, Any] = {}
    for key in (*dim.requires, dim.key_name):
        if record.get(key) is None:
            raise DimensionRecordError(f"{dim.name} record {dict(record)} lacks key field {key!r}")
        target = key if key != dim.key_name else dim.name
        try:
            row[key] = universe.check_value(target, record[key])
        except ValueError as exc:
            raise DimensionRecordError(f"{dim.name} record: {exc}") from exc
    for imp in dim.implies:
        value = record.get(imp)
        if value is not None:
            try:
                value = universe.check_value(imp, value)
            except ValueError as exc:
                raise DimensionRecordError(f"{dim.name} record: {exc}") from exc
        row[imp] = value
    for fname, ftype in dim.fields.items():
        value = record.get(fname)
        if value is not None:
            ok_types = FIELD_TYPES[ftype]
            if isinstance(value, bool) and ftype != "bool":
                ok = False
            else:
                ok = isinstance(value, ok_types) or (ftype in ("int", "float") and hasattr(value, "__index__"))
                if not ok and ftype == "float":
                    try:
                        value = float(value)
                        ok = True
                    except (TypeError, ValueError):
                        ok = False
            if not ok:
                raise DimensionRecordError(
                    f"{dim.name} record field {fname!r} must be {ftype}, got {value!r} ({type(value).__name__})"
                )
            if ftype == "float":
                value = float(value)
            elif ftype == "int":
                value = int(value)
        row[fname] = value
    if dim.has_timespan:
        ts = record.get("timespan")
        if ts is not None and not isinstance(ts, Timespan):
            raise DimensionRecordError(f"{dim.name} record field 'timespan' must be a Timespan, got {ts!r}")
        row["timespan_begin"] = ts.begin_ns if ts is not None else None
        row["timespan_end"] = ts.end_ns if ts is not None else None
    if dim.has_region:
        region = record.get("region")
        if region is not None:
            try:
                verts = [(float(ra), float(dec)) for ra, dec in region]
            except (TypeError, ValueError) as exc:
                raise DimensionRecordError(
                    f"{dim.name} record field 'region' must be a list of (ra, dec) degree pairs: {exc}"
                ) from exc
            if len(verts) < 3:
                raise DimensionRecordError(f"{dim.name} record region needs at least 3 vertices")
            row["region"] = json.dumps(verts)
        else:
            row["region"] = None
    return row


def row_to_record(dim: Dimension, row: Mapping[str, Any] | sa.RowMapping) -> DimensionRecord:
    """The :class:`DimensionRecord` of a table row."""
    fields: dict[str, Any] = {}
    for key in (*dim.requires, dim.key_name, *dim.implies, *dim.fields):
        fields[key] = row[key]
    if dim.has_timespan:
        b, e = row["timespan_begin"], row["timespan_end"]
        fields["timespan"] = Timespan.from_ns(b, e) if b is not None and e is not None else None
    if dim.has_region:
        fields["region"] = [tuple(v) for v in json.loads(row["region"])] if row["region"] else None
    return DimensionRecord(dim.name, fields)


def skypix_rows(
    dim: Dimension, row: Mapping[str, Any], ranges: list[tuple[int, int]] | None = None
) -> list[dict[str, Any]]:
    """Rows of ``<element>_skypix``: HEALPix ranges covering the record's region."""
    if not dim.has_region or row.get("region") is None:
        return []
    if ranges is None:
        from ...sky import COMMON_ORDER, ConvexPolygon, RegionError

        try:
            polygon = ConvexPolygon(json.loads(row["region"]))
        except RegionError as exc:
            raise DimensionRecordError(f"{dim.name} record region is invalid: {exc}") from exc
        ranges = [(lo, hi) for lo, hi in polygon.pixel_ranges(COMMON_ORDER).tolist()]
    keys = {k: row[k] for k in dim.requires}
    keys[dim.name] = row[dim.key_name]
    return [{**keys, "pix_begin": b, "pix_end": e} for b, e in ranges]
