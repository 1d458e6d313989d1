"""Sky regions: exact containment and overlap, HEALPix pixel ranges at any depth (pure computation)."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift import NightshiftError
from nightshift.apdb import random_positions
from nightshift.sky import (
    MAX_DEPTH,
    Box,
    Circle,
    ConvexPolygon,
    RegionError,
    UnionRegion,
    as_region,
    cell_range,
    pixel_ranges,
    pixels_of,
    point_pixel,
)


def _in_ranges(pix: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(ranges[:, 0], pix, side="right") - 1
    return (idx >= 0) & (pix < ranges[np.clip(idx, 0, None), 1])


def _square(ra: float, dec: float, half: float) -> ConvexPolygon:
    return ConvexPolygon(((ra - half, dec - half), (ra + half, dec - half), (ra + half, dec + half),
                          (ra - half, dec + half)))


@pytest.mark.parametrize("radius", [0.05, 1.75])
def test_circle_ranges_cover_every_inside_point(radius: float) -> None:
    rng = np.random.default_rng(3)
    circle = Circle(150.0, -30.0, radius)
    ra, dec = random_positions(150.0, -30.0, radius * 1.3, 20000, rng)
    inside = circle.contains(ra, dec)
    assert 0 < inside.sum() < len(ra)
    ranges = pixel_ranges(circle, 16, max_ranges=64)
    assert 1 <= len(ranges) <= 64
    assert np.all(ranges[1:, 0] > ranges[:-1, 1])  # sorted, disjoint, merged
    covered = _in_ranges(pixels_of(ra, dec, 16), ranges)
    assert covered[inside].all()
    # The cover is tight: little beyond the circle is selected.
    assert covered.sum() < 1.6 * inside.sum()


def test_polygon_contains_and_ranges_in_either_winding() -> None:
    poly = ConvexPolygon.from_radec((10.0, 12.0, 12.0, 10.0), (-1.0, -1.0, 1.0, 1.0))
    rev = ConvexPolygon(tuple(reversed(poly.vertices)))
    assert poly.ra == (10.0, 12.0, 12.0, 10.0) and poly.dec == (-1.0, -1.0, 1.0, 1.0)
    rng = np.random.default_rng(4)
    ra, dec = 9.0 + 4.0 * rng.random(5000), -2.0 + 4.0 * rng.random(5000)
    inside = poly.contains(ra, dec)
    np.testing.assert_array_equal(inside, rev.contains(ra, dec))
    assert inside[(ra > 10.05) & (ra < 11.95) & (np.abs(dec) < 0.95)].all()
    assert not inside[(ra < 9.95) | (ra > 12.05) | (np.abs(dec) > 1.05)].any()
    ranges = pixel_ranges(poly, 16)
    assert _in_ranges(pixels_of(ra, dec, 16), ranges)[inside].all()


@pytest.mark.parametrize("depth", [0, 7, 14, 20, MAX_DEPTH])
def test_ranges_at_any_depth_hold_the_inside_points(depth: int) -> None:
    """Ranges at depths beyond the query depth are the cover's cells scaled down, still covering every point."""
    rng = np.random.default_rng(depth)
    regions = [Circle(359.9, 0.0, 0.3), _square(45.0, 89.5, 0.3), Box(350.0, 10.0, -2.0, 2.0),
               UnionRegion((Circle(10.0, 0.0, 0.2), _square(10.5, 0.0, 0.2)))]
    centres = [(359.9, 0.0, 0.5), (45.0, 89.5, 0.8), (0.0, 0.0, 12.0), (10.25, 0.0, 0.6)]
    for region, (ra0, dec0, radius) in zip(regions, centres, strict=True):
        ranges = pixel_ranges(region, depth)
        assert ranges.dtype == np.int64 and ranges.shape[1] == 2
        assert np.all(ranges[:, 0] < ranges[:, 1]) and np.all(ranges[1:, 0] > ranges[:-1, 1])
        ra, dec = random_positions(ra0, dec0, radius, 20000, rng)
        ra, dec = ra[np.abs(dec) <= 90.0], dec[np.abs(dec) <= 90.0]
        inside = region.contains(ra, dec)
        assert inside.any(), region
        assert _in_ranges(pixels_of(ra[inside], dec[inside], depth), ranges).all(), region
    with pytest.raises(RegionError, match="depth must be in"):
        pixel_ranges(Circle(0.0, 0.0, 1.0), 30)


def test_max_ranges_coarsens_the_cover() -> None:
    circle = Circle(150.0, -30.0, 1.75)
    fine = pixel_ranges(circle, 16)
    coarse = pixel_ranges(circle, 16, max_ranges=8)
    assert len(fine) > 8 >= len(coarse) >= 1
    # every fine range lies inside a coarse one
    assert _in_ranges(fine[:, 0], coarse).all() and _in_ranges(fine[:, 1] - 1, coarse).all()
    assert np.array_equal(circle.pixel_ranges(16, max_ranges=8), coarse)


def test_grown_regions_cover_the_margin() -> None:
    poly = ConvexPolygon.from_radec((10.0, 12.0, 12.0, 10.0), (-1.0, -1.0, 1.0, 1.0))
    ranges = pixel_ranges(poly, 10, margin_deg=0.2)
    edge_ra = np.array([9.85, 12.15, 11.0, 11.0, 9.87])
    edge_dec = np.array([0.0, 0.0, -1.15, 1.15, -1.13])
    assert _in_ranges(pixels_of(edge_ra, edge_dec, 10), ranges).all()
    assert not _in_ranges(pixels_of(edge_ra, edge_dec, 10), pixel_ranges(poly, 10)).all()
    assert Circle(1.0, 2.0, 0.5).dilated(0.25) == Circle(1.0, 2.0, 0.75)
    box = Box(10.0, 12.0, -1.0, 1.0).dilated(0.5)
    assert box.contains([9.6, 12.4, 11.0], [0.0, 0.0, 1.45]).all()


def test_polygon_overlap_is_exact_below_one_index_cell() -> None:
    """Two detector-sized footprints 0.01 deg apart share HEALPix cells of order 7 but do not overlap."""
    a = _square(10.1, 0.1, 0.1)
    b = ConvexPolygon(((10.21, 0.0), (10.4, 0.0), (10.4, 0.2), (10.21, 0.2)))
    c = ConvexPolygon(((10.19, 0.1), (10.4, 0.1), (10.4, 0.3), (10.19, 0.3)))
    shared = {p for lo, hi in pixel_ranges(a, 7).tolist() for p in range(lo, hi)} & \
        {p for lo, hi in pixel_ranges(b, 7).tolist() for p in range(lo, hi)}
    assert shared  # the index alone would call them overlapping
    assert not a.overlaps(b) and not b.overlaps(a)
    assert a.overlaps(c) and c.overlaps(a)
    assert Circle(10.3, 0.1, 0.05).overlaps(b) and not Circle(10.3, 0.1, 0.05).overlaps(a)
    assert UnionRegion((a, Circle(50.0, 0.0, 1.0))).overlaps(c)
    assert not UnionRegion((b, Circle(50.0, 0.0, 1.0))).overlaps(a)
    assert Box(10.25, 11.0, -1.0, 1.0).overlaps(b) and not Box(10.25, 11.0, -1.0, 1.0).overlaps(a)


def test_box_wraps_through_ra_zero() -> None:
    box = Box(350.0, 10.0, -5.0, 5.0)
    np.testing.assert_array_equal(box.contains([355.0, 5.0, 0.0, 180.0, 20.0], [0.0, 4.9, -4.9, 0.0, 0.0]),
                                  [True, True, True, False, False])
    full = Box(0.0, 360.0, 80.0, 90.0)
    assert full.contains([0.0, 123.0, 359.0], [85.0, 81.0, 89.0]).all()
    assert not full.contains([0.0], [79.0]).any()


def test_points_and_scalars() -> None:
    circle = Circle(0.0, 0.0, 1.0)
    assert circle.contains(0.5, 0.5).shape == () and bool(circle.contains(0.5, 0.5))
    assert circle.contains([], []).shape == (0,)
    assert point_pixel(45.0, 0.5, 5) == int(pixels_of([45.0], [0.5], 5)[0])
    assert cell_range(3, 2, 4) == (48, 64) and cell_range(1000, 6, 4) == (62, 63)


@pytest.mark.parametrize("build, message", [
    (lambda: Circle(0.0, 95.0, 1.0), "not a valid position"),
    (lambda: Circle(0.0, 0.0, 0.0), "0 < radius < 180"),
    (lambda: Circle(0.0, 0.0, 180.0), "0 < radius < 180"),
    (lambda: ConvexPolygon.from_radec((0.0, 1.0), (0.0, 1.0)), "at least 3"),
    (lambda: ConvexPolygon(((0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0))), "not convex"),
    (lambda: ConvexPolygon(((0.0, 0.0), (2.0, 0.0), (1.0, 0.2), (2.0, 2.0), (0.0, 2.0))), "not convex"),
    (lambda: ConvexPolygon(((0.0, 0.0), (120.0, 0.0), (240.0, 0.0))), "surrounds no area"),
    (lambda: ConvexPolygon(((0.0, 0.0), ("a", 0.0), (1.0, 1.0))), "degree pairs"),
    (lambda: Box(0.0, 10.0, 5.0, -5.0), "dec_min <= dec_max"),
    (lambda: UnionRegion(()), "one or more regions"),
    (lambda: as_region("north"), "a region is a Circle"),
])
def test_invalid_regions_are_rejected(build: object, message: str) -> None:
    with pytest.raises(RegionError, match=message) as info:
        build()  # type: ignore[operator]  # parametrized lambdas typed as object
    assert isinstance(info.value, NightshiftError) and isinstance(info.value, ValueError)


def test_as_region() -> None:
    assert as_region((1.0, 2.0, 0.5)) == Circle(1.0, 2.0, 0.5)
    assert as_region([(0, 0), (1, 0), (1, 1)]) == ConvexPolygon(((0.0, 0.0), (1.0, 0.0), (1.0, 1.0)))
    box = Box(0.0, 1.0, 0.0, 1.0)
    assert as_region(box) is box
