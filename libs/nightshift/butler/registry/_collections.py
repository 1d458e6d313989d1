"""Collection types and records."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["CollectionRecord", "CollectionType"]


class CollectionType(enum.IntEnum):
    """The four kinds of collection (same names as daf_butler)."""

    RUN = 1
    """Where datasets are written; each dataset belongs to exactly one RUN."""
    TAGGED = 2
    """A hand-picked set of datasets (at most one per dataset type and data ID)."""
    CHAINED = 3
    """An ordered search path over other collections."""
    CALIBRATION = 4
    """Datasets certified over validity time ranges."""


@dataclass(frozen=True)
class CollectionRecord:
    """A collection's row: id, name, type and documentation."""

    id: int
    name: str
    type: CollectionType
    doc: str | None = None
