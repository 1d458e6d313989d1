"""The in-memory exposure (image + mask + variance + WCS + PSF + metadata) and delegates."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from .._storage_class import StorageClassDelegate

__all__ = ["ArrayDelegate", "Box", "Exposure", "ExposureDelegate", "TableDelegate"]


@dataclass(frozen=True)
class Box:
    """A pixel box, ``[y_min:y_max, x_min:x_max]`` of a 2-d array (max exclusive).

    Parameters
    ----------
    x_min, y_min : int
        First column and row (0-based).
    x_max, y_max : int
        One past the last column and row.
    """

    x_min: int
    y_min: int
    x_max: int
    y_max: int

    def __post_init__(self) -> None:
        for name in ("x_min", "y_min", "x_max", "y_max"):
            if not isinstance(getattr(self, name), (int, np.integer)):
                raise TypeError(f"Box.{name} must be an int, not {type(getattr(self, name)).__name__}")
        if self.x_min < 0 or self.y_min < 0 or self.x_max <= self.x_min or self.y_max <= self.y_min:
            raise ValueError(f"{self} is empty or negative")

    @classmethod
    def coerce(cls, value: Any) -> Box:
        """A :class:`Box` from a Box, ``(x_min, y_min, x_max, y_max)`` or ``(slice_y, slice_x)``."""
        if isinstance(value, Box):
            return value
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(s, slice) for s in value):
            sy, sx = value
            return cls(int(sx.start or 0), int(sy.start or 0), int(sx.stop), int(sy.stop))
        if isinstance(value, (tuple, list)) and len(value) == 4:
            return cls(*(int(v) for v in value))
        raise ValueError(f"bbox {value!r} is neither a Box, (x_min, y_min, x_max, y_max) nor (slice_y, slice_x)")

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(slice_y, slice_x)`` for numpy indexing."""
        return slice(self.y_min, self.y_max), slice(self.x_min, self.x_max)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.y_max - self.y_min, self.x_max - self.x_min

    def check_within(self, shape: tuple[int, ...]) -> None:
        """Raise ValueError unless the box lies inside an array of ``shape`` (rows, cols)."""
        if len(shape) != 2 or self.y_max > shape[0] or self.x_max > shape[1]:
            raise ValueError(f"{self} is outside an image of shape {tuple(shape)}")


@dataclass
class Exposure:
    """A calibrated image with its planes and models.

    Parameters
    ----------
    image : numpy.ndarray
        2-d pixel values (float32).
    mask : numpy.ndarray, optional
        Integer bit mask, same shape (zeros if omitted).
    variance : numpy.ndarray, optional
        Per-pixel variance, same shape (zeros if omitted).
    wcs : astropy.wcs.WCS, optional
        Celestial world coordinate system of the image.
    psf : numpy.ndarray, optional
        The PSF model as a small kernel image.
    metadata : astropy.io.fits.Header, optional
        Free-form metadata (observation headers).
    origin : tuple of int
        ``(x0, y0)`` of pixel [0, 0] in the parent image (non-zero for cutouts).
    """

    image: np.ndarray
    mask: np.ndarray | None = None
    variance: np.ndarray | None = None
    wcs: WCS | None = None
    psf: np.ndarray | None = None
    metadata: fits.Header = field(default_factory=fits.Header)
    origin: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image)
        if self.image.ndim != 2:
            raise ValueError(f"Exposure.image must be 2-d, got shape {self.image.shape}")
        if self.mask is None:
            self.mask = np.zeros(self.image.shape, dtype=np.int32)
        if self.variance is None:
            self.variance = np.zeros(self.image.shape, dtype=np.float32)
        for name in ("mask", "variance"):
            plane = getattr(self, name)
            if plane.shape != self.image.shape:
                raise ValueError(f"Exposure.{name} has shape {plane.shape}, image has {self.image.shape}")
        if not isinstance(self.metadata, fits.Header):
            self.metadata = fits.Header(dict(self.metadata))

    def cutout(self, bbox: Box | Any) -> Exposure:
        """A new exposure of the pixels in ``bbox`` (WCS shifted accordingly)."""
        box = Box.coerce(bbox)
        box.check_within(self.image.shape)
        sy, sx = box.slices
        mask = cast(np.ndarray, self.mask)  # never None after __post_init__
        variance = cast(np.ndarray, self.variance)
        return Exposure(
            image=self.image[sy, sx].copy(),
            mask=mask[sy, sx].copy(),
            variance=variance[sy, sx].copy(),
            wcs=self.wcs.slice((sy, sx)) if self.wcs is not None else None,
            psf=self.psf,
            metadata=self.metadata.copy(),
            origin=(self.origin[0] + box.x_min, self.origin[1] + box.y_min),
        )


class ExposureDelegate(StorageClassDelegate):
    """Components of an :class:`Exposure`; the ``bbox`` parameter makes a cutout."""

    def handle_parameters(self, obj: Any, parameters: Mapping[str, Any]) -> Any:
        params = dict(parameters)
        bbox = params.pop("bbox", None)
        if params:
            raise ValueError(f"unknown Exposure parameter(s) {sorted(params)}")
        return obj if bbox is None else obj.cutout(bbox)

    def set_component(self, obj: Any, component: str, value: Any) -> Any:
        new = copy.copy(obj)
        if component not in {"image", "mask", "variance", "wcs", "psf", "metadata"}:
            raise KeyError(component)
        setattr(new, component, value)
        return new


class ArrayDelegate(StorageClassDelegate):
    """``bbox`` cutouts of 2-d arrays in memory."""

    def handle_parameters(self, obj: Any, parameters: Mapping[str, Any]) -> Any:
        params = dict(parameters)
        bbox = params.pop("bbox", None)
        if params:
            raise ValueError(f"unknown array parameter(s) {sorted(params)}")
        if bbox is None:
            return obj
        box = Box.coerce(bbox)
        box.check_within(obj.shape)
        return obj[box.slices].copy()


class TableDelegate(StorageClassDelegate):
    """``columns`` selection of astropy or pyarrow tables in memory; a column is a component."""

    def get_component(self, obj: Any, component: str) -> Any:
        if component in getattr(obj, "colnames", ()) or component in getattr(obj, "column_names", ()):
            return obj[component]
        return super().get_component(obj, component)

    def handle_parameters(self, obj: Any, parameters: Mapping[str, Any]) -> Any:
        params = dict(parameters)
        columns = params.pop("columns", None)
        if params:
            raise ValueError(f"unknown table parameter(s) {sorted(params)}")
        if columns is None:
            return obj
        if hasattr(obj, "select"):  # pyarrow.Table
            return obj.select(list(columns))
        return obj[list(columns)]
