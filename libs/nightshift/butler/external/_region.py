"""Sky regions of reference-catalog reads: a cone or a convex polygon, in degrees.

Each region answers two questions: which nested HEALPix cells of an order
may hold its points (cdshealpix coverage, conservative), and which of given
points are inside it (exact, vectorized on unit vectors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._exceptions import ReferenceCatalogError

__all__ = ["Cone", "ConvexPolygon", "SkyRegion", "as_region"]


def _unit(ra: Any, dec: Any) -> np.ndarray:
    ra_r, dec_r = np.radians(np.asarray(ra, dtype=float)), np.radians(np.asarray(dec, dtype=float))
    cos_dec = np.cos(dec_r)
    return np.stack([cos_dec * np.cos(ra_r), cos_dec * np.sin(ra_r), np.sin(dec_r)], axis=-1)


@dataclass(frozen=True)
class Cone:
    """All points within ``radius`` degrees of (``ra``, ``dec``)."""

    ra: float
    dec: float
    radius: float

    def __post_init__(self) -> None:
        if not -90.0 <= self.dec <= 90.0 or not 0.0 < self.radius < 180.0:
            raise ReferenceCatalogError(
                f"a cone needs |dec| <= 90 and 0 < radius < 180 degrees, got {self.ra, self.dec, self.radius}"
            )

    def pixels(self, order: int) -> np.ndarray:
        """Nested HEALPix cells of ``order`` that overlap the cone (possibly a few more)."""
        import astropy.units as u
        from astropy.coordinates import Latitude, Longitude
        from cdshealpix.nested import cone_search

        ipix, _depth, _full = cone_search(Longitude(self.ra % 360.0, u.deg), Latitude(self.dec, u.deg),
                                          self.radius * u.deg, order, flat=True)
        return np.unique(np.asarray(ipix, dtype=np.int64))

    def contains(self, ra: Any, dec: Any) -> np.ndarray:
        """Boolean mask: which points are inside (boundary included)."""
        cos_sep = _unit(ra, dec) @ _unit(self.ra, self.dec)
        inside: np.ndarray = cos_sep >= np.cos(np.radians(self.radius))
        return inside


@dataclass(frozen=True)
class ConvexPolygon:
    """The convex spherical polygon with great-circle edges between ``vertices`` ((ra, dec) degrees)."""

    vertices: tuple[tuple[float, float], ...]
    _normals: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            verts = tuple((float(ra), float(dec)) for ra, dec in self.vertices)
        except (TypeError, ValueError) as exc:
            raise ReferenceCatalogError(f"polygon vertices must be (ra, dec) degree pairs: {exc}") from exc
        if len(verts) < 3 or any(abs(dec) > 90.0 for _, dec in verts):
            raise ReferenceCatalogError(f"a polygon needs at least 3 (ra, dec) vertices with |dec| <= 90: {verts}")
        object.__setattr__(self, "vertices", verts)
        v = _unit([p[0] for p in verts], [p[1] for p in verts])
        normals = np.cross(v, np.roll(v, -1, axis=0))
        centre = v.sum(axis=0)
        if np.linalg.norm(centre) < 1e-12:
            raise ReferenceCatalogError("the polygon's vertices surround no definite area (do they span a hemisphere?)")
        sides = normals @ centre
        if not (np.all(sides > 0) or np.all(sides < 0)):
            raise ReferenceCatalogError(f"the polygon {verts} is not convex (or its vertices are not in order)")
        object.__setattr__(self, "_normals", normals * np.sign(sides[0]))

    def pixels(self, order: int) -> np.ndarray:
        """Nested HEALPix cells of ``order`` that overlap the polygon (possibly a few more)."""
        import astropy.units as u
        from astropy.coordinates import Latitude, Longitude
        from cdshealpix.nested import polygon_search

        arr = np.asarray(self.vertices)
        ipix, _depth, _full = polygon_search(Longitude(arr[:, 0] % 360.0, u.deg), Latitude(arr[:, 1], u.deg),
                                             order, flat=True)
        return np.unique(np.asarray(ipix, dtype=np.int64))

    def contains(self, ra: Any, dec: Any) -> np.ndarray:
        """Boolean mask: which points are inside (boundary included, to 1e-12)."""
        p = _unit(ra, dec)
        inside: np.ndarray = np.all(p @ self._normals.T >= -1e-12, axis=-1)
        return inside


SkyRegion = Cone | ConvexPolygon


def as_region(region: SkyRegion | Sequence[Any] | np.ndarray) -> SkyRegion:
    """A :class:`Cone` from ``(ra, dec, radius)``, a :class:`ConvexPolygon` from ``[(ra, dec), ...]``.

    Raises
    ------
    ReferenceCatalogError
        If ``region`` is neither.
    """
    if isinstance(region, (Cone, ConvexPolygon)):
        return region
    try:
        arr = np.asarray(region, dtype=float)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.shape == (3,):
        return Cone(float(arr[0]), float(arr[1]), float(arr[2]))
    if arr.ndim == 2 and arr.shape[1] == 2 and arr.shape[0] >= 3:
        return ConvexPolygon(tuple((float(a), float(b)) for a, b in arr))
    raise ReferenceCatalogError(
        "a region is a Cone, a ConvexPolygon, (ra, dec, radius) in degrees, or a list of >= 3 (ra, dec) vertices; "
        f"got {region!r}"
    )
