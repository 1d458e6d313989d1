"""The sky: regions, their HEALPix pixel ranges, and sky maps (tracts and patches).

* :class:`Circle`, :class:`ConvexPolygon`, :class:`Box`, :class:`UnionRegion`
  -- regions in ICRS degrees with exact containment (:meth:`Region.contains`)
  and overlap (:meth:`Region.overlaps`) from ``lsst-sphgeom``, and
  conservative covers as nested HEALPix index ranges at any depth
  (:func:`pixel_ranges`, from ``cdshealpix``);
* :data:`COMMON_ORDER`, :func:`point_pixel`, :func:`cell_range` -- the
  registry's spatial index;
* :class:`HealpixSkyMap` -- tracts and patches as HEALPix cells.

This is the only region module: the APDB, the registry and reference-catalog
reads all use it. See ``docs/dependencies.md`` for why both libraries, and
``loadtests/sky_bench.py`` for the measurement. The geometry libraries are
imported on first use of a region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports as _lazy_exports
from ._pixelization import COMMON_ORDER, cell_range, point_pixel
from ._skymap import HealpixSkyMap, PatchInfo, TractInfo

if TYPE_CHECKING:
    from ._region import (
        MAX_DEPTH,
        MAX_QUERY_DEPTH,
        Box,
        Circle,
        ConvexPolygon,
        Region,
        RegionError,
        UnionRegion,
        as_region,
        pixel_ranges,
        pixels_of,
    )

_LAZY = {
    name: "._region"
    for name in (
        "MAX_DEPTH", "MAX_QUERY_DEPTH", "Box", "Circle", "ConvexPolygon", "Region", "RegionError", "UnionRegion",
        "as_region", "pixel_ranges", "pixels_of",
    )
}

__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)

__all__ = [
    "COMMON_ORDER",
    "MAX_DEPTH",
    "MAX_QUERY_DEPTH",
    "Box",
    "Circle",
    "ConvexPolygon",
    "HealpixSkyMap",
    "PatchInfo",
    "Region",
    "RegionError",
    "TractInfo",
    "UnionRegion",
    "as_region",
    "cell_range",
    "pixel_ranges",
    "pixels_of",
    "point_pixel",
]
