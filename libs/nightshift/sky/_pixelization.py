"""The registry's HEALPix index: its order and small helpers over nested indices.

The registry indexes each dimension record's region by the ranges of nested
HEALPix cells of order :data:`COMMON_ORDER` that touch it
(:meth:`nightshift.sky.Region.pixel_ranges`); SQL finds candidate pairs of
regions through shared cells, and the registry then keeps only the pairs whose
regions really overlap (:meth:`nightshift.sky.Region.overlaps`).
"""

from __future__ import annotations

__all__ = ["COMMON_ORDER", "cell_range", "point_pixel"]

#: HEALPix order of the registry's spatial index (~0.46 degree cells).
COMMON_ORDER = 7


def point_pixel(ra: float, dec: float, order: int = COMMON_ORDER) -> int:
    """Nested HEALPix index at ``order`` of the cell holding a point (degrees).

    Raises
    ------
    RegionError
        If ``dec`` is outside [-90, 90] or ``order`` outside [0, 29].
    """
    from ._region import pixels_of

    return int(pixels_of([ra], [dec], order)[0])


def cell_range(pixel: int, order: int, target_order: int = COMMON_ORDER) -> tuple[int, int]:
    """The half-open range of ``target_order`` nested indices covered by one cell.

    For a cell finer than ``target_order`` it is the one containing cell.
    """
    if order <= target_order:
        shift = 2 * (target_order - order)
        return pixel << shift, (pixel + 1) << shift
    parent = pixel >> (2 * (order - target_order))
    return parent, parent + 1
