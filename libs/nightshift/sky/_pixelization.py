"""HEALPix (nested) pixelization of sky regions, through cdshealpix.

Regions are convex polygons given as ``[(ra_deg, dec_deg), ...]``. The registry
indexes each region by the HEALPix cells of order :data:`COMMON_ORDER` that
touch it; two regions "overlap" when they share a cell (conservative at the
scale of one cell, ~0.46 deg at order 7).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["COMMON_ORDER", "cell_range", "point_pixel", "polygon_pixels"]

#: HEALPix order of the registry's spatial index (~0.46 degree cells).
COMMON_ORDER = 7


def polygon_pixels(vertices: Sequence[Sequence[float]], order: int = COMMON_ORDER) -> list[int]:
    """Nested HEALPix indices at ``order`` of every cell touching a convex polygon.

    Raises
    ------
    ValueError
        If the polygon has fewer than 3 vertices or bad coordinates.
    """
    if len(vertices) < 3:
        raise ValueError(f"a region needs at least 3 (ra, dec) vertices, got {len(vertices)}")
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import polygon_search

    arr = np.asarray(vertices, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2 or np.any(np.abs(arr[:, 1]) > 90):
        raise ValueError(f"region vertices must be (ra, dec) degree pairs with |dec| <= 90, got {vertices!r}")
    ipix, depth, _full = polygon_search(
        Longitude(arr[:, 0] % 360.0, u.deg), Latitude(arr[:, 1], u.deg), order, flat=True
    )
    return sorted({int(p) for p in ipix})


def point_pixel(ra: float, dec: float, order: int = COMMON_ORDER) -> int:
    """Nested HEALPix index at ``order`` of the cell holding a point."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import lonlat_to_healpix

    if not -90.0 <= dec <= 90.0:
        raise ValueError(f"dec must be within [-90, 90], got {dec}")
    return int(lonlat_to_healpix(Longitude([ra % 360.0], u.deg), Latitude([dec], u.deg), order)[0])


def cell_range(pixel: int, order: int, target_order: int = COMMON_ORDER) -> tuple[int, int]:
    """The half-open range of ``target_order`` nested indices covered by one cell.

    For a cell finer than ``target_order`` it is the one containing cell.
    """
    if order <= target_order:
        shift = 2 * (target_order - order)
        return pixel << shift, (pixel + 1) << shift
    parent = pixel >> (2 * (order - target_order))
    return parent, parent + 1
