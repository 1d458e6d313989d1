"""Sky regions: circle, convex polygon, box and union, in ICRS degrees.

Each region is a small frozen value backed by an ``lsst.sphgeom`` region (the
spherical-geometry library of daf_butler and dax_apdb), which answers the exact
questions: which points are inside (:meth:`Region.contains`) and whether two
regions share any point (:meth:`Region.overlaps`). The conservative question
"which HEALPix cells may hold its points" is answered by cdshealpix (Rust),
which is about a thousand times faster than sphgeom's own HEALPix envelope
from depth 10 on and works to depth 29 (see ``docs/performance.md``,
``loadtests/sky_bench.py``); the cells become sorted half-open index ranges
through sphgeom's ``RangeSet``.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lsst.sphgeom as sg
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._exceptions import NightshiftError

__all__ = [
    "MAX_DEPTH",
    "MAX_QUERY_DEPTH",
    "Box",
    "Circle",
    "ConvexPolygon",
    "Region",
    "RegionError",
    "UnionRegion",
    "as_region",
    "pixel_ranges",
    "pixels_of",
]

#: Deepest HEALPix depth (order) of a nested index (cdshealpix's limit).
MAX_DEPTH = 29

#: Deepest depth at which a region's cover is computed; finer index depths get
#: the cover's cells scaled to their depth (a cell at depth 14 is ~13 arcsec).
MAX_QUERY_DEPTH = 14


class RegionError(NightshiftError, ValueError):
    """A sky region cannot be built from what was given (bad coordinates, radius, vertex order ...)."""

    error_type = "sky_region"


def _vector(ra: float, dec: float) -> sg.UnitVector3d:
    return sg.UnitVector3d(sg.LonLat.fromDegrees(ra, dec))


def _check_position(what: str, ra: float, dec: float) -> None:
    if not (math.isfinite(ra) and math.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise RegionError(f"{what} ({ra}, {dec}) is not a valid position: ra, dec in degrees with |dec| <= 90")


class Region(ABC):
    """A region of the sky.

    Subclasses are frozen dataclasses: :class:`Circle`, :class:`ConvexPolygon`,
    :class:`Box` and :class:`UnionRegion`.
    """

    @property
    @abstractmethod
    def sphgeom(self) -> sg.Region:
        """The ``lsst.sphgeom`` region this value stands for."""

    @abstractmethod
    def cells(self, depth: int) -> tuple[NDArray[np.uint64], NDArray[np.uint8]]:
        """Nested HEALPix cells covering the region: (index, depth) pairs, depths at most ``depth``.

        The cover is conservative (it may hold a few cells the region only
        nearly touches, never misses one it touches).
        """

    @abstractmethod
    def dilated(self, margin_deg: float) -> Region:
        """A region holding every point within ``margin_deg`` degrees of this one (possibly a little more)."""

    def contains(self, ra_deg: ArrayLike, dec_deg: ArrayLike) -> NDArray[np.bool_]:
        """Exact membership of each (ra, dec) point, in degrees.

        Returns
        -------
        inside : numpy.ndarray of bool
            The broadcast shape of ``ra_deg`` and ``dec_deg``.
        """
        ra, dec = np.broadcast_arrays(np.asarray(ra_deg, dtype=np.float64), np.asarray(dec_deg, dtype=np.float64))
        if ra.size == 0:
            return np.zeros(ra.shape, dtype=bool)
        if not np.all(np.abs(dec) <= 90.0):
            raise RegionError(f"dec must be within [-90, 90] degrees, got {dec[~(np.abs(dec) <= 90.0)][:3].tolist()}")
        flat = self.sphgeom.contains(np.radians(ra.ravel()), np.radians(dec.ravel()))
        return np.asarray(flat, dtype=bool).reshape(ra.shape)

    def overlaps(self, other: Region) -> bool:
        """Whether the two regions share at least one point.

        Exact for circles, convex polygons and unions of them; where sphgeom
        cannot decide (a :class:`Box` against a polygon whose edge crosses the
        box's latitude edge) the answer is ``True``, i.e. conservative.
        """
        result = self.sphgeom.overlaps(other.sphgeom)
        return True if result is None else bool(result)

    def pixel_ranges(self, depth: int, *, max_ranges: int | None = None) -> NDArray[np.int64]:
        """Half-open ranges ``[lo, hi)`` of nested HEALPix indices at ``depth`` covering the region.

        See :func:`pixel_ranges`.
        """
        return pixel_ranges(self, depth, max_ranges=max_ranges)


@dataclass(frozen=True)
class Circle(Region):
    """All points within ``radius`` degrees of (``ra``, ``dec``).

    Parameters
    ----------
    ra, dec : float
        Centre, ICRS degrees.
    radius : float
        Opening angle, degrees, ``0 < radius < 180``.
    """

    ra: float
    dec: float
    radius: float

    def __post_init__(self) -> None:
        _check_position("circle centre", self.ra, self.dec)
        if not (math.isfinite(self.radius) and 0.0 < self.radius < 180.0):
            raise RegionError(f"a circle needs 0 < radius < 180 degrees, got radius {self.radius}")

    @functools.cached_property
    def sphgeom(self) -> sg.Circle:
        return sg.Circle(_vector(self.ra, self.dec), sg.Angle.fromDegrees(self.radius))

    def cells(self, depth: int) -> tuple[NDArray[np.uint64], NDArray[np.uint8]]:
        import astropy.units as u
        from astropy.coordinates import Latitude, Longitude
        from cdshealpix.nested import cone_search

        ipix, depths, _full = cone_search(
            Longitude(self.ra % 360.0, u.deg), Latitude(self.dec, u.deg), self.radius * u.deg, depth=depth
        )
        return np.asarray(ipix, dtype=np.uint64), np.asarray(depths, dtype=np.uint8)

    def dilated(self, margin_deg: float) -> Circle:
        return self if margin_deg <= 0.0 else Circle(self.ra, self.dec, min(self.radius + margin_deg, 179.999999))


@dataclass(frozen=True)
class ConvexPolygon(Region):
    """The convex spherical polygon with great-circle edges between ``vertices``.

    Parameters
    ----------
    vertices : sequence of (ra, dec)
        At least three vertices in ICRS degrees, in order around the polygon
        (either winding), every one a corner of the convex hull.
    """

    vertices: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        try:
            verts = tuple((float(ra), float(dec)) for ra, dec in self.vertices)
        except (TypeError, ValueError) as exc:
            raise RegionError(f"polygon vertices must be (ra, dec) degree pairs: {exc}") from exc
        if len(verts) < 3:
            raise RegionError(f"a polygon needs at least 3 (ra, dec) vertices, got {len(verts)}")
        for ra, dec in verts:
            _check_position("polygon vertex", ra, dec)
        object.__setattr__(self, "vertices", verts)
        points = [_vector(ra, dec) for ra, dec in verts]
        try:
            hull = sg.ConvexPolygon.convexHull(points)
        except ValueError as exc:
            raise RegionError(f"the polygon {verts} surrounds no area: {exc}") from exc
        if hull is None:
            raise RegionError(f"the polygon {verts} does not fit in a hemisphere")
        if not _same_cycle(points, list(hull.getVertices())):
            raise RegionError(
                f"the polygon {verts} is not convex (or its vertices are not in order, or repeat one)"
            )
        self.__dict__["sphgeom"] = hull

    @classmethod
    def from_radec(cls, ra: Sequence[float], dec: Sequence[float]) -> ConvexPolygon:
        """A polygon from separate sequences of vertex right ascensions and declinations (degrees)."""
        if len(ra) != len(dec):
            raise RegionError(f"a polygon needs as many ra as dec values, got {len(ra)} and {len(dec)}")
        return cls(tuple(zip((float(r) for r in ra), (float(d) for d in dec), strict=True)))

    @property
    def ra(self) -> tuple[float, ...]:
        """Vertex right ascensions, degrees."""
        return tuple(v[0] for v in self.vertices)

    @property
    def dec(self) -> tuple[float, ...]:
        """Vertex declinations, degrees."""
        return tuple(v[1] for v in self.vertices)

    @functools.cached_property
    def sphgeom(self) -> sg.ConvexPolygon:  # set by __post_init__; here for the type
        return sg.ConvexPolygon.convexHull([_vector(ra, dec) for ra, dec in self.vertices])

    def cells(self, depth: int) -> tuple[NDArray[np.uint64], NDArray[np.uint8]]:
        import astropy.units as u
        from astropy.coordinates import Latitude, Longitude
        from cdshealpix.nested import polygon_search

        arr = np.asarray(self.vertices, dtype=np.float64)
        ipix, depths, _full = polygon_search(
            Longitude(arr[:, 0] % 360.0, u.deg), Latitude(arr[:, 1], u.deg), depth=depth
        )
        return np.asarray(ipix, dtype=np.uint64), np.asarray(depths, dtype=np.uint8)

    def dilated(self, margin_deg: float) -> ConvexPolygon:
        """Every vertex pushed away from the centroid far enough that each edge moves out by ``margin_deg``.

        A vertex with interior angle ``2h`` moves ``2 * margin / sin(h)``
        (twice the planar offset, for slack on the sphere).
        """
        if margin_deg <= 0.0:
            return self
        v = np.array([[p.x(), p.y(), p.z()] for p in (_vector(ra, dec) for ra, dec in self.vertices)])
        centre = v.sum(axis=0)
        centre /= np.linalg.norm(centre)
        out = []
        n = len(v)
        for i in range(n):
            p, e1, e2 = v[i], v[i - 1] - v[i], v[(i + 1) % n] - v[i]
            cos_angle = float(np.dot(e1, e2) / (np.linalg.norm(e1) * np.linalg.norm(e2)))
            half = math.acos(max(-1.0, min(1.0, cos_angle))) / 2.0
            step = math.radians(2.0 * margin_deg) / max(math.sin(half), 1e-3)
            direction = p - centre * np.dot(p, centre)
            direction /= np.linalg.norm(direction)
            out.append(p * math.cos(step) + direction * math.sin(step))
        q = np.array(out)
        ra = np.degrees(np.arctan2(q[:, 1], q[:, 0])) % 360.0
        dec = np.degrees(np.arcsin(np.clip(q[:, 2], -1.0, 1.0)))
        return ConvexPolygon.from_radec(ra.tolist(), dec.tolist())


def _same_cycle(points: list[sg.UnitVector3d], hull: list[sg.UnitVector3d]) -> bool:
    """Whether ``hull`` visits exactly ``points`` in their cyclic order (either direction)."""
    if len(hull) != len(points):
        return False
    index = []
    for h in hull:
        match = [i for i, p in enumerate(points) if (p - h).getSquaredNorm() < 1e-24]
        if len(match) != 1:
            return False
        index.append(match[0])
    n = len(points)
    steps = {(b - a) % n for a, b in zip(index, index[1:] + index[:1], strict=True)}
    return steps in ({1}, {n - 1})


@dataclass(frozen=True)
class Box(Region):
    """A longitude/latitude box: ``ra_min <= ra <= ra_max`` (wrapping through 0) and ``dec_min <= dec <= dec_max``.

    Parameters
    ----------
    ra_min, ra_max : float
        Right ascension bounds, degrees; ``ra_min > ra_max`` wraps through 0.
    dec_min, dec_max : float
        Declination bounds, degrees, ``-90 <= dec_min <= dec_max <= 90``.
    """

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    def __post_init__(self) -> None:
        values = (self.ra_min, self.ra_max, self.dec_min, self.dec_max)
        if not all(math.isfinite(v) for v in values) or not -90.0 <= self.dec_min <= self.dec_max <= 90.0:
            raise RegionError(f"a box needs finite bounds and -90 <= dec_min <= dec_max <= 90, got {values}")

    @property
    def full_ra(self) -> bool:
        """Whether the box spans every right ascension."""
        return self.ra_max - self.ra_min >= 360.0

    @functools.cached_property
    def sphgeom(self) -> sg.Box:
        if self.full_ra:
            lon = sg.NormalizedAngleInterval.full()
        else:
            lon = sg.NormalizedAngleInterval.fromDegrees(self.ra_min % 360.0, self.ra_max % 360.0)
        return sg.Box(lon, sg.AngleInterval.fromDegrees(self.dec_min, self.dec_max))

    def cells(self, depth: int) -> tuple[NDArray[np.uint64], NDArray[np.uint8]]:
        import astropy.units as u
        from astropy.coordinates import Latitude, Longitude
        from cdshealpix.nested import zone_search

        lo, hi = self.ra_min % 360.0, self.ra_max % 360.0
        if self.full_ra:
            lo, hi = 0.0, 360.0
        elif lo == hi:  # a box of zero width: a meridian segment
            hi = lo + 1e-9
        ipix, depths, _full = zone_search(
            Longitude(lo, u.deg), Latitude(self.dec_min, u.deg),
            Longitude(hi, u.deg), Latitude(self.dec_max, u.deg), depth=depth,  # 360 -> 0 means 2 pi there
        )
        return np.asarray(ipix, dtype=np.uint64), np.asarray(depths, dtype=np.uint8)

    def dilated(self, margin_deg: float) -> Box:
        if margin_deg <= 0.0:
            return self
        grown = self.sphgeom.dilatedBy(sg.Angle.fromDegrees(margin_deg))
        lon, lat = grown.getLon(), grown.getLat()
        if lon.isFull():
            ra_min, ra_max = 0.0, 360.0
        else:
            ra_min, ra_max = lon.getA().asDegrees(), lon.getB().asDegrees()
        return Box(ra_min, ra_max, lat.getA().asDegrees(), lat.getB().asDegrees())


@dataclass(frozen=True)
class UnionRegion(Region):
    """Every point in any of ``regions``.

    Parameters
    ----------
    regions : tuple of Region
        At least one region.
    """

    regions: tuple[Region, ...]

    def __post_init__(self) -> None:
        regions = tuple(self.regions)
        if not regions or not all(isinstance(r, Region) for r in regions):
            raise RegionError(f"a union needs one or more regions, got {self.regions!r}")
        object.__setattr__(self, "regions", regions)

    @functools.cached_property
    def sphgeom(self) -> sg.UnionRegion:
        return sg.UnionRegion(*[r.sphgeom for r in self.regions])

    def cells(self, depth: int) -> tuple[NDArray[np.uint64], NDArray[np.uint8]]:
        parts = [r.cells(depth) for r in self.regions]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def dilated(self, margin_deg: float) -> UnionRegion:
        return self if margin_deg <= 0.0 else UnionRegion(tuple(r.dilated(margin_deg) for r in self.regions))


def as_region(value: Region | Sequence[Any] | NDArray[Any]) -> Region:
    """A region from a :class:`Region`, ``(ra, dec, radius)`` or ``[(ra, dec), ...]`` (degrees).

    Raises
    ------
    RegionError
        If ``value`` is none of these, or not a valid region.
    """
    if isinstance(value, Region):
        return value
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.shape == (3,):
        return Circle(float(arr[0]), float(arr[1]), float(arr[2]))
    if arr.ndim == 2 and arr.shape[1] == 2 and arr.shape[0] >= 3:
        return ConvexPolygon(tuple((float(a), float(b)) for a, b in arr))
    raise RegionError(
        "a region is a Circle, ConvexPolygon, Box or UnionRegion, (ra, dec, radius) in degrees, or a list of "
        f">= 3 (ra, dec) vertices; got {value!r}"
    )


def pixels_of(ra_deg: ArrayLike, dec_deg: ArrayLike, depth: int) -> NDArray[np.int64]:
    """Nested HEALPix index at ``depth`` of each position (int64, ready for SQL)."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.size == 0:
        return np.empty(0, dtype=np.int64)
    if np.any(np.abs(dec) > 90.0):
        raise RegionError(f"dec must be within [-90, 90] degrees, got {dec[np.abs(dec) > 90.0][:3].tolist()}")
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import lonlat_to_healpix

    ipix = lonlat_to_healpix(Longitude(ra % 360.0, u.deg), Latitude(dec, u.deg), _check_depth(depth))
    return np.asarray(ipix, dtype=np.int64)


def _check_depth(depth: int) -> int:
    if not 0 <= depth <= MAX_DEPTH:
        raise RegionError(f"HEALPix depth must be in [0, {MAX_DEPTH}], got {depth}")
    return int(depth)


def pixel_ranges(
    region: Region, depth: int, *, max_ranges: int | None = None, margin_deg: float = 0.0
) -> NDArray[np.int64]:
    """Half-open ranges ``[lo, hi)`` of nested HEALPix indices at ``depth`` covering ``region``.

    The cover is computed at ``min(depth, MAX_QUERY_DEPTH)`` and coarsened one
    level at a time (``RangeSet.simplify``) until at most ``max_ranges``
    ranges remain.

    Parameters
    ----------
    region : Region
        The region.
    depth : int
        HEALPix depth of the returned indices, 0 to 29.
    max_ranges : int, optional
        Most ranges to return (for an SQL ``WHERE`` of bounded size); no limit by default.
    margin_deg : float
        Cover the region grown by this many degrees (:meth:`Region.dilated`).

    Returns
    -------
    ranges : numpy.ndarray
        Shape ``(n, 2)``, int64, sorted and disjoint.
    """
    depth = _check_depth(depth)
    if max_ranges is not None and max_ranges < 1:
        raise RegionError(f"max_ranges must be at least 1, got {max_ranges}")
    query_depth = min(depth, MAX_QUERY_DEPTH)
    ipix, depths = region.dilated(margin_deg).cells(query_depth)
    shift = (2 * (depth - depths.astype(np.int64))).astype(np.uint64)
    order = np.argsort(ipix << shift, kind="stable")
    lo = (ipix << shift)[order]
    hi = ((ipix + np.uint64(1)) << shift)[order]
    # Runs of abutting cells become one range before the RangeSet (which does the set algebra): a zone
    # search returns millions of flat cells at fine depths, which the RangeSet would take one by one.
    starts = np.flatnonzero(np.concatenate(([True], lo[1:] != hi[:-1])))
    ends = np.concatenate((starts[1:], [lo.size])) - 1
    ranges = sg.RangeSet(list(zip(lo[starts].tolist(), hi[ends].tolist(), strict=True)))
    bits = 2 * (depth - query_depth)
    while max_ranges is not None and ranges.size() > max_ranges and bits < 2 * depth:
        bits += 2
        ranges.simplify(bits)
    out = np.asarray(ranges.ranges(), dtype=np.int64)
    return out.reshape(-1, 2)
