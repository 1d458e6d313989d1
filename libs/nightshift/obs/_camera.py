"""Cameras: detectors with amplifiers, placed on a focal plane, and the sky they see.

Conventions
-----------
- Pixel coordinates are 0-based ``(x, y)``; a bounding box is
  ``(x_min, y_min, x_max, y_max)`` with the max exclusive.
- The focal plane is in millimetres, its origin on the optical axis.
- A detector's ``rotation`` (degrees) turns its pixel axes into focal-plane
  axes; the boresight ``sky_angle`` turns the focal-plane +y axis from north
  towards east.
- The raw layout of a detector tiles its amplifiers in a grid; each amplifier
  segment is its data columns followed by its serial overscan columns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._exceptions import UnknownDetectorError

__all__ = ["Amplifier", "Camera", "Detector", "PhysicalFilter"]

BBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class PhysicalFilter:
    """A filter in the beam (``HSC-I``) and the abstract band it belongs to (``i``)."""

    name: str
    band: str


@dataclass(frozen=True)
class Amplifier:
    """One readout amplifier of a detector.

    Parameters
    ----------
    name : str
        ``C00`` ... (unique within the detector).
    bbox : tuple of int
        Its pixels in the trimmed (assembled) detector image.
    raw_bbox : tuple of int
        Its whole segment (data + overscan) in the raw image.
    raw_data_bbox, raw_overscan_bbox : tuple of int
        The data and serial-overscan parts of the segment, in raw coordinates.
    gain : float
        Electrons per ADU.
    read_noise : float
        Electrons (rms).
    saturation : float
        ADU above which pixels saturate.
    bias_level : float
        ADU added by the electronics (seen in the overscan).
    """

    name: str
    bbox: BBox
    raw_bbox: BBox
    raw_data_bbox: BBox
    raw_overscan_bbox: BBox
    gain: float
    read_noise: float
    saturation: float
    bias_level: float


@dataclass(frozen=True)
class Detector:
    """A CCD: its size, amplifiers and place on the focal plane.

    Parameters
    ----------
    id : int
        Detector number (the ``detector`` data ID value).
    name : str
        Full name (``R22_S11``).
    purpose : str
        ``SCIENCE``, ``WAVEFRONT``, ``GUIDER`` or ``FOCUS``.
    width, height : int
        Trimmed size in pixels.
    pixel_size : float
        Millimetres per pixel.
    x_mm, y_mm : float
        Focal-plane position of the detector centre.
    rotation : float
        Degrees from detector pixel axes to focal-plane axes.
    amplifiers : tuple of Amplifier
    """

    id: int
    name: str
    purpose: str
    width: int
    height: int
    pixel_size: float
    x_mm: float
    y_mm: float
    rotation: float
    amplifiers: tuple[Amplifier, ...] = field(repr=False)

    @property
    def raw_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the raw image (data plus overscan)."""
        return (max(a.raw_bbox[3] for a in self.amplifiers), max(a.raw_bbox[2] for a in self.amplifiers))

    def pixel_to_focal_plane(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Focal-plane millimetres of trimmed-image pixel coordinates."""
        t = math.radians(self.rotation)
        dx = (np.asarray(x, dtype=float) - (self.width - 1) / 2) * self.pixel_size
        dy = (np.asarray(y, dtype=float) - (self.height - 1) / 2) * self.pixel_size
        return self.x_mm + math.cos(t) * dx - math.sin(t) * dy, self.y_mm + math.sin(t) * dx + math.cos(t) * dy

    def corners(self) -> list[tuple[float, float]]:
        """Focal-plane corners (mm) of the pixel area, counter-clockwise."""
        xs = np.array([-0.5, self.width - 0.5, self.width - 0.5, -0.5])
        ys = np.array([-0.5, -0.5, self.height - 0.5, self.height - 0.5])
        fx, fy = self.pixel_to_focal_plane(xs, ys)
        return [(float(a), float(b)) for a, b in zip(fx, fy, strict=True)]

    def to_record(self, instrument: str) -> dict[str, Any]:
        """The ``detector`` dimension record."""
        return {"instrument": instrument, "id": self.id, "full_name": self.name, "purpose": self.purpose}


@dataclass(frozen=True)
class Camera:
    """Detectors on a focal plane behind optics of a given plate scale.

    Parameters
    ----------
    name : str
    detectors : mapping of int to Detector
    plate_scale : float
        Arcseconds per millimetre on the focal plane.
    """

    name: str
    detectors: Mapping[int, Detector] = field(repr=False)
    plate_scale: float

    def __getitem__(self, detector: int) -> Detector:
        try:
            return self.detectors[detector]
        except KeyError:
            ids = sorted(self.detectors)
            raise UnknownDetectorError(
                f"camera {self.name} has no detector {detector}; its detectors are {ids[0]}..{ids[-1]} "
                f"({len(ids)} in all)"
            ) from None

    def __iter__(self) -> Iterator[Detector]:
        return iter(self.detectors[k] for k in sorted(self.detectors))

    def __len__(self) -> int:
        return len(self.detectors)

    def wcs_header(self, detector: int, ra: float, dec: float, sky_angle: float) -> dict[str, Any]:
        """FITS WCS keywords (TAN) of a detector's trimmed image for a boresight and sky angle (degrees)."""
        det = self[detector]
        k = self.plate_scale / 3600.0  # degrees per mm
        th, td = math.radians(sky_angle), math.radians(det.rotation)
        sky = np.array([[-math.cos(th), math.sin(th)], [math.sin(th), math.cos(th)]])
        rot = np.array([[math.cos(td), -math.sin(td)], [math.sin(td), math.cos(td)]])
        cd = k * det.pixel_size * sky @ rot
        centre = np.array([(det.width - 1) / 2, (det.height - 1) / 2])
        crpix = centre - rot.T @ np.array([det.x_mm, det.y_mm]) / det.pixel_size
        return {
            "WCSAXES": 2, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg",
            "CRVAL1": float(ra) % 360.0, "CRVAL2": float(dec), "RADESYS": "ICRS",
            "CRPIX1": float(crpix[0] + 1), "CRPIX2": float(crpix[1] + 1),
            "CD1_1": float(cd[0, 0]), "CD1_2": float(cd[0, 1]), "CD2_1": float(cd[1, 0]), "CD2_2": float(cd[1, 1]),
        }

    def focal_plane_wcs(self, ra: float, dec: float, sky_angle: float) -> Any:
        """An astropy TAN WCS from focal-plane millimetres (0-based "pixels" of 1 mm, origin on the axis) to the sky.

        The same projection as :meth:`wcs_header` (which composes it with each
        detector's placement): one WCS serves every detector of a pointing.
        """
        from astropy.wcs import WCS

        k = self.plate_scale / 3600.0
        th = math.radians(sky_angle)
        return WCS({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": float(ra) % 360.0, "CRVAL2": float(dec),
                    "CRPIX1": 1.0, "CRPIX2": 1.0, "CD1_1": -k * math.cos(th), "CD1_2": k * math.sin(th),
                    "CD2_1": k * math.sin(th), "CD2_2": k * math.cos(th)})

    def sky_corners(self, ra: float, dec: float, sky_angle: float,
                    detectors: Iterable[int] | None = None) -> dict[int, list[tuple[float, float]]]:
        """Each detector's pixel-area corners on the sky, (ra, dec) degrees, for a boresight and sky angle.

        The corners are those of :meth:`Detector.corners` (the outer edges of
        the corner pixels), projected in one call; a TAN projection maps the
        detector's straight edges to great circles, so the four corners bound
        its sky footprint exactly.

        Raises
        ------
        UnknownDetectorError
            A detector the camera does not have.
        """
        dets = [self[d] for d in detectors] if detectors is not None else list(self)
        if not dets:
            return {}
        corners = np.array([c for det in dets for c in det.corners()])
        r, d = self.focal_plane_wcs(ra, dec, sky_angle).all_pix2world(corners[:, 0], corners[:, 1], 0)
        pairs = list(zip((float(v) % 360.0 for v in r), (float(v) for v in d), strict=True))
        return {det.id: pairs[4 * i:4 * i + 4] for i, det in enumerate(dets)}

    def sky_region(self, ra: float, dec: float, sky_angle: float) -> list[tuple[float, float]]:
        """The convex hull on the sky, (ra, dec) degrees counter-clockwise, of every detector's corners."""
        from ._sky import convex_hull_region

        return convex_hull_region([c for cs in self.sky_corners(ra, dec, sky_angle).values() for c in cs])
