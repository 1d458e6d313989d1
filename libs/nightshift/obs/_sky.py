"""Sky geometry for regions: convex hulls of corner points, via a tangent plane."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["celestial_wcs", "convex_hull_region"]


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def convex_hull_region(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The convex hull (counter-clockwise (ra, dec) degrees) of points spanning less than a hemisphere.

    Points are projected gnomonically about their mean direction, hulled in the
    plane (Andrew's monotone chain) and projected back; great-circle edges map
    to straight lines, so the hull on the sky is exact.

    Raises
    ------
    ValueError
        Fewer than three distinct points, or points spread over a hemisphere.
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or len(pts) < 3:
        raise ValueError(f"a region needs at least 3 (ra, dec) points, got {len(pts)}")
    v = _unit(pts[:, 0], pts[:, 1])
    c = v.mean(axis=0)
    c /= np.linalg.norm(c)
    east = np.cross([0.0, 0.0, 1.0], c)
    if np.linalg.norm(east) < 1e-12:  # centre at a pole
        east = np.array([0.0, 1.0, 0.0])
    east /= np.linalg.norm(east)
    north = np.cross(c, east)
    dots = v @ c
    if np.any(dots <= 1e-6):
        raise ValueError("points span a hemisphere or more; cannot form a convex region")
    xy = np.stack([(v @ east) / dots, (v @ north) / dots], axis=1)
    order = np.lexsort((xy[:, 1], xy[:, 0]))
    hull: list[int] = []
    for sweep in (order, order[::-1]):
        start = len(hull)
        for i in sweep:
            while len(hull) >= start + 2:
                a, b = xy[hull[-2]], xy[hull[-1]]
                cross = (b[0] - a[0]) * (xy[i][1] - a[1]) - (b[1] - a[1]) * (xy[i][0] - a[0])
                # Nearly collinear vertices (within 1e-6 of the edge length: far below an arcsecond) are
                # dropped: the registry wants a strictly convex polygon.
                if cross > 1e-6 * np.hypot(*(b - a)) * np.hypot(*(xy[i] - a)):
                    break
                hull.pop()
            hull.append(int(i))
        hull.pop()
    # The sweep's end points are kept even when they lie (within rounding) on an edge: drop every
    # vertex whose turn is nearly straight, so the polygon is strictly convex.
    changed = True
    while changed and len(hull) > 3:
        changed = False
        for k in range(len(hull)):
            p0, p1, p2 = xy[hull[k - 1]], xy[hull[k]], xy[hull[(k + 1) % len(hull)]]
            cross = (p1[0] - p0[0]) * (p2[1] - p0[1]) - (p1[1] - p0[1]) * (p2[0] - p0[0])
            if cross <= 1e-6 * np.hypot(*(p1 - p0)) * np.hypot(*(p2 - p0)):
                del hull[k]
                changed = True
                break
    if len(hull) < 3:
        raise ValueError("points are collinear; cannot form a region")
    # Back to the sphere (ra, dec) from the plane.
    out = []
    for i in hull:
        vec = c + xy[i][0] * east + xy[i][1] * north
        vec /= np.linalg.norm(vec)
        out.append((float(np.degrees(np.arctan2(vec[1], vec[0])) % 360.0), float(np.degrees(np.arcsin(vec[2])))))
    return out


def celestial_wcs(header: Mapping[str, Any]) -> Any:
    """An astropy WCS of the celestial keywords in ``header``, or None if it has none.

    Real headers spell units ``degree`` (HSC), which wcslib rejects; they are read as ``deg``.
    """
    if not str(header.get("CTYPE1", "")).startswith("RA"):
        return None
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    hdr = fits.Header()
    for key, value in header.items():
        if key.startswith(_WCS_PREFIXES) and not isinstance(value, bool | dict):
            hdr[key] = "deg" if key.startswith("CUNIT") and str(value).lower().startswith("degree") else value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(hdr, naxis=2)


_WCS_PREFIXES = ("CTYPE", "CRVAL", "CRPIX", "CD1_", "CD2_", "CDELT", "CROTA", "PC1_", "PC2_", "CUNIT", "PV1_", "PV2_",
                 "RADESYS", "EQUINOX", "LONPOLE", "LATPOLE", "WCSAXES")
