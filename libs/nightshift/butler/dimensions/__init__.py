"""Dimensions: the named axes (instrument, visit, detector, tract, ...) that identify datasets.

The universe is defined by ``universe.yaml`` in this package (versioned);
:meth:`DimensionUniverse.default` loads it.
"""

from ._records import DimensionRecord
from ._universe import FIELD_TYPES, Dimension, DimensionJoin, DimensionUniverse

__all__ = ["FIELD_TYPES", "Dimension", "DimensionJoin", "DimensionRecord", "DimensionUniverse"]
