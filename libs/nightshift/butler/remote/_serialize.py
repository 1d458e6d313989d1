"""JSON forms of refs and dimension records exchanged by the read API and its client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._dataset_ref import DatasetRef
from ..dimensions import DimensionRecord
from ..registry import Timespan

__all__ = ["record_from_json", "record_to_json", "ref_from_json", "ref_to_json"]


def ref_to_json(ref: DatasetRef) -> dict[str, Any]:
    """A ref as JSON (its type, data ID, run and id)."""
    return ref.to_dict()


def ref_from_json(data: Mapping[str, Any]) -> DatasetRef:
    """The inverse of :func:`ref_to_json`."""
    return DatasetRef.from_dict(data)


def record_to_json(record: DimensionRecord) -> dict[str, Any]:
    """A dimension record as JSON: a timespan as ``{"begin_ns", "end_ns"}`` (TAI), a region as vertex pairs."""
    fields: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Timespan):
            value = {"begin_ns": value.begin_ns, "end_ns": value.end_ns}
        elif key == "region" and value is not None:
            value = [list(v) for v in value]
        fields[key] = value
    return {"element": record.element, "fields": fields}


def record_from_json(data: Mapping[str, Any]) -> DimensionRecord:
    """The inverse of :func:`record_to_json`."""
    fields = dict(data["fields"])
    span = fields.get("timespan")
    if isinstance(span, Mapping):
        fields["timespan"] = Timespan.from_ns(span["begin_ns"], span["end_ns"])
    if fields.get("region") is not None:
        fields["region"] = [tuple(v) for v in fields["region"]]
    return DimensionRecord(str(data["element"]), fields)
