"""HEALPix pixel ranges of regions, and the exact cut (pure computation)."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.apdb import (
    Circle,
    ConvexPolygon,
    make_source_ids,
    pixel_ranges,
    pixels_of,
    random_positions,
    split_source_ids,
)


def _in_ranges(pix: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(ranges[:, 0], pix, side="right") - 1
    return (idx >= 0) & (pix < ranges[np.clip(idx, 0, None), 1])


@pytest.mark.parametrize("radius", [0.05, 1.75])
def test_circle_ranges_cover_every_inside_point(radius: float) -> None:
    rng = np.random.default_rng(3)
    circle = Circle(150.0, -30.0, radius)
    ra, dec = random_positions(150.0, -30.0, radius * 1.3, 20000, rng)
    inside = circle.contains(ra, dec)
    assert 0 < inside.sum() < len(ra)
    ranges = pixel_ranges(circle, 16, max_ranges=64)
    assert 1 <= len(ranges) <= 64
    assert np.all(ranges[1:, 0] > ranges[:-1, 1] - 1)  # sorted, disjoint
    covered = _in_ranges(pixels_of(ra, dec, 16), ranges)
    assert covered[inside].all()
    # The cover is tight: little beyond the circle is selected.
    assert covered.sum() < 1.6 * inside.sum()


def test_polygon_contains_and_ranges() -> None:
    poly = ConvexPolygon((10.0, 12.0, 12.0, 10.0), (-1.0, -1.0, 1.0, 1.0))
    rev = ConvexPolygon(tuple(reversed(poly.ra)), tuple(reversed(poly.dec)))
    rng = np.random.default_rng(4)
    ra, dec = 9.0 + 4.0 * rng.random(5000), -2.0 + 4.0 * rng.random(5000)
    inside = poly.contains(ra, dec)
    np.testing.assert_array_equal(inside, rev.contains(ra, dec))
    assert inside[(ra > 10.05) & (ra < 11.95) & (np.abs(dec) < 0.95)].all()
    assert not inside[(ra < 9.95) | (ra > 12.05) | (np.abs(dec) > 1.05)].any()
    ranges = pixel_ranges(poly, 16)
    assert _in_ranges(pixels_of(ra, dec, 16), ranges)[inside].all()


def test_grown_polygon_covers_the_margin() -> None:
    poly = ConvexPolygon((10.0, 12.0, 12.0, 10.0), (-1.0, -1.0, 1.0, 1.0))
    ranges = pixel_ranges(poly, 10, max_ranges=10**6, margin_deg=0.2)
    edge_ra = np.array([9.85, 12.15, 11.0, 11.0])
    edge_dec = np.array([0.0, 0.0, -1.15, 1.15])
    assert _in_ranges(pixels_of(edge_ra, edge_dec, 10), ranges).all()


def test_invalid_regions_are_rejected() -> None:
    with pytest.raises(ValueError):
        Circle(0.0, 95.0, 1.0)
    with pytest.raises(ValueError):
        Circle(0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        ConvexPolygon((0.0, 1.0), (0.0, 1.0))


def test_source_ids_are_deterministic_and_reversible() -> None:
    ids = make_source_ids([123456789, 123456789], [188, 3], [0, 1_000_000])
    assert ids[0] != ids[1] and np.all(ids > 0)
    np.testing.assert_array_equal(make_source_ids(123456789, 188, 0), ids[0])
    v, d, n = split_source_ids(ids)
    assert v.tolist() == [123456789, 123456789] and d.tolist() == [188, 3] and n.tolist() == [0, 1_000_000]
    with pytest.raises(ValueError):
        make_source_ids(1, 4096, 0)
