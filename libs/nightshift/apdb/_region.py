"""Sky regions and their HEALPix (nested) pixel ranges.

A region (a circle or a convex polygon: a visit or a detector footprint)
becomes a short list of half-open ``[lo, hi)`` ranges of HEALPix nested
indices at the *index depth*; SQL selects rows whose ``pixelId`` falls in a
range, then :meth:`Region.contains` makes the exact cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import astropy.units as u
import cdshealpix.nested as healpix
import numpy as np
from astropy.coordinates import Latitude, Longitude
from numpy.typing import ArrayLike, NDArray

__all__ = ["Circle", "ConvexPolygon", "Region", "pixel_ranges", "pixels_of"]

MAX_DEPTH = 29


def _unit_vectors(ra_deg: ArrayLike, dec_deg: ArrayLike) -> NDArray[np.float64]:
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


class Region(Protocol):
    """What the APDB needs of a sky region."""

    def cells(self, depth: int, margin_deg: float = 0.0) -> tuple[NDArray[np.uint64], NDArray[np.uint8]]:
        """HEALPix nested cells (index, depth) covering the region grown by ``margin_deg``."""
        ...

    def contains(self, ra_deg: ArrayLike, dec_deg: ArrayLike) -> NDArray[np.bool_]:
        """Exact membership of each (ra, dec) point, in degrees."""
        ...


@dataclass(frozen=True)
class Circle:
    """A small circle on the sky.

    Parameters
    ----------
    ra, dec : float
        Centre, ICRS degrees.
    radius : float
        Opening angle, degrees (0 < radius < 90).
    """

    ra: float
    dec: float
    radius: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ra) and math.isfinite(self.dec) and -90.0 <= self.dec <= 90.0):
            raise ValueError(f"circle centre ({self.ra}, {self.dec}) is not a valid position")
        if not (0.0 < self.radius < 90.0):
            raise ValueError(f"circle radius {self.radius} must be in (0, 90) degrees")

    def cells(self, depth: int, margin_deg: float = 0.0) -> tuple[NDArray[np.uint64], NDArray[np.uint8]]:
        ipix, depths, _ = healpix.cone_search(
            Longitude(self.ra * u.deg), Latitude(self.dec * u.deg), (self.radius + margin_deg) * u.deg, depth=depth
        )
        return np.asarray(ipix, dtype=np.uint64), np.asarray(depths, dtype=np.uint8)

    def contains(self, ra_deg: ArrayLike, dec_deg: ArrayLike) -> NDArray[np.bool_]:
        centre = _unit_vectors(self.ra, self.dec)
        points = _unit_vectors(ra_deg, dec_deg)
        result: NDArray[np.bool_] = points @ centre >= math.cos(math.radians(self.radius))
        return result


@dataclass(frozen=True)
class ConvexPolygon:
    """A convex spherical polygon given by its vertices (degrees), in either winding order.

    Parameters
    ----------
    ra, dec : tuple of float
        Vertex coordinates, at least three, no edge longer than 90 degrees.
    """

    ra: tuple[float, ...]
    dec: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.ra) != len(self.dec) or len(self.ra) < 3:
            raise ValueError("a polygon needs at least three (ra, dec) vertices")
        if not all(math.isfinite(v) for v in (*self.ra, *self.dec)):
            raise ValueError("polygon vertices must be finite")

    def _normals(self) -> NDArray[np.float64]:
        v = _unit_vectors(self.ra, self.dec)
        normals = np.cross(v, np.roll(v, -1, axis=0))
        centroid = v.sum(axis=0)
        # Orient every edge normal towards the centroid (handles both windings).
        sign = np.sign(normals @ centroid)
        if np.any(sign == 0):
            raise ValueError("degenerate polygon")
        result: NDArray[np.float64] = normals * sign[:, None]
        return result

    def cells(self, depth: int, margin_deg: float = 0.0) -> tuple[NDArray[np.uint64], NDArray[np.uint8]]:
        ra, dec = np.asarray(self.ra), np.asarray(self.dec)
        if margin_deg > 0.0:
            ra, dec = self._grown(margin_deg)
        ipix, depths, _ = healpix.polygon_search(Longitude(ra * u.deg), Latitude(dec * u.deg), depth=depth)
        return np.asarray(ipix, dtype=np.uint64), np.asarray(depths, dtype=np.uint8)

    def _grown(self, margin_deg: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Vertices pushed away from the centroid so every edge moves out by at least ``margin_deg``."""
        v = _unit_vectors(self.ra, self.dec)
        c = v.sum(axis=0)
        c /= np.linalg.norm(c)
        out = []
        n = len(v)
        for i in range(n):
            a, b, p = v[i - 1], v[(i + 1) % n], v[i]
            e1, e2 = a - p, b - p
            cosang = float(np.dot(e1, e2) / (np.linalg.norm(e1) * np.linalg.norm(e2)))
            half = math.acos(max(-1.0, min(1.0, cosang))) / 2.0
            step = math.radians(2.0 * margin_deg) / max(math.sin(half), 1e-3)
            direction = p - c * np.dot(p, c)
            direction /= np.linalg.norm(direction)
            q = p * math.cos(step) + direction * math.sin(step)
            out.append(q)
        q = np.array(out)
        return np.degrees(np.arctan2(q[:, 1], q[:, 0])) % 360.0, np.degrees(np.arcsin(np.clip(q[:, 2], -1, 1)))

    def contains(self, ra_deg: ArrayLike, dec_deg: ArrayLike) -> NDArray[np.bool_]:
        points = _unit_vectors(ra_deg, dec_deg)
        result: NDArray[np.bool_] = np.all(points @ self._normals().T >= 0.0, axis=-1)
        return result


def pixels_of(ra_deg: ArrayLike, dec_deg: ArrayLike, depth: int) -> NDArray[np.int64]:
    """HEALPix nested index of each position at ``depth`` (as int64, ready for SQL)."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.size == 0:
        return np.empty(0, dtype=np.int64)
    ipix = healpix.lonlat_to_healpix(Longitude(ra * u.deg), Latitude(dec * u.deg), depth)
    return np.asarray(ipix, dtype=np.int64)


def pixel_ranges(
    region: Region, index_depth: int, max_ranges: int = 64, margin_deg: float = 0.0
) -> NDArray[np.int64]:
    """Half-open ranges ``[lo, hi)`` of index-depth pixels covering ``region``.

    The cover is computed at the finest query depth (at most ``index_depth``)
    whose merged range count does not exceed ``max_ranges``.

    Returns
    -------
    ranges : numpy.ndarray
        Shape ``(n, 2)``, int64, sorted and non-overlapping.
    """
    depth = min(index_depth, 14)
    ranges = _ranges(region, depth, index_depth, margin_deg)
    while len(ranges) > max_ranges and depth > 0:
        depth -= 1
        ranges = _ranges(region, depth, index_depth, margin_deg)
    return ranges


def _ranges(region: Region, depth: int, index_depth: int, margin_deg: float) -> NDArray[np.int64]:
    ipix, depths = region.cells(depth, margin_deg)
    shift = (2 * (index_depth - depths.astype(np.int64))).astype(np.uint64)
    lo = (ipix << shift).astype(np.int64)
    hi = ((ipix + np.uint64(1)) << shift).astype(np.int64)
    order = np.argsort(lo)
    lo, hi = lo[order], hi[order]
    if lo.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    # Merge adjacent/overlapping ranges.
    starts = np.ones(lo.size, dtype=bool)
    starts[1:] = lo[1:] > np.maximum.accumulate(hi)[:-1]
    group = np.cumsum(starts) - 1
    out_lo = lo[starts]
    out_hi = np.zeros(out_lo.size, dtype=np.int64)
    np.maximum.at(out_hi, group, hi)
    return np.stack([out_lo, out_hi], axis=1)
