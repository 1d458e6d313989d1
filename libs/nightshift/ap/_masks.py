"""Mask planes of Alert Production images (bit values of the integer mask plane)."""

from __future__ import annotations

import enum

__all__ = ["MaskPlane"]


class MaskPlane(enum.IntFlag):
    """Bits of the ``mask`` plane, named as in the Rubin science pipelines."""

    BAD = 1 << 0  #: known defect (bad column, hot pixel, corrupt amplifier)
    SAT = 1 << 1  #: at or above the amplifier's saturation level
    INTRP = 1 << 2  #: value interpolated over
    CR = 1 << 3  #: cosmic ray
    EDGE = 1 << 4  #: too close to the edge for a full measurement
    DETECTED = 1 << 5  #: in a positive detection footprint
    DETECTED_NEGATIVE = 1 << 6  #: in a negative detection footprint
    SUSPECT = 1 << 7  #: in the non-linear regime or otherwise doubtful
    NO_DATA = 1 << 8  #: no data (outside the template, unassembled)
    STREAK = 1 << 9  #: on a satellite trail

    @classmethod
    def unusable(cls) -> MaskPlane:
        """The planes whose pixels are excluded from fits (BAD | SAT | CR | NO_DATA)."""
        return cls.BAD | cls.SAT | cls.CR | cls.NO_DATA
