"""FITS formatter for :class:`Exposure` composites (DMS-MWBT-REQ-0061, 0033, 0034).

Layout: HDU 0 holds the metadata header; extensions ``IMAGE`` (with the WCS
keywords), ``MASK``, ``VARIANCE`` and ``PSF`` hold the planes. With the
``compression`` option each plane is a tile-compressed image (``CompImageHDU``,
DMS-MWBT-REQ-0060).

Components are read alone: ``wcs`` and ``metadata`` from headers only, a plane
from its own HDU. A ``bbox`` parameter reads only the box's pixels, row by
row (uncompressed files), or through astropy's tile-aware ``section``
(compressed files).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning

from .._storage_class import StorageClass
from ._base import Formatter
from ._exceptions import FormatterError, UnsupportedParameterError
from ._exposure import Box, Exposure
from ._fits_layout import Source, read_header, read_image_section, scan_layout

__all__ = ["FitsExposureFormatter"]

_PLANES = ("image", "mask", "variance", "psf")
_COMPRESSIONS = {"RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1", "PLIO_1", "NOCOMPRESS"}


def _wcs_from_header(header: fits.Header) -> WCS | None:
    if "CTYPE1" not in header:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def _header(path: Source, extname: str) -> fits.Header:
    """One header, without astropy walking (and seeking past) the data of the HDUs."""
    try:
        return read_header(path, extname)
    except KeyError:
        if not isinstance(path, (str, Path)):
            path.seek(0)
        return fits.getheader(path, 0 if extname == "PRIMARY" else extname)


class FitsExposureFormatter(Formatter):
    """Exposure ↔ multi-extension FITS.

    Options
    -------
    compression : str or None
        Tile compression of the planes (``RICE_1``, ``GZIP_1``, ``GZIP_2``,
        ``HCOMPRESS_1``); None writes plain images.
    quantize_level : float
        Passed to astropy for floating-point planes (0 disables quantization
        only with GZIP; see astropy.io.fits.CompImageHDU).
    tile_shape : list of int
        Compression tile shape (rows, cols).
    """

    name: ClassVar[str] = "fits_exposure"
    reads: ClassVar[str] = "Exposure"
    extension: ClassVar[str] = ".fits"
    supported_options: ClassVar[frozenset[str]] = frozenset({"compression", "quantize_level", "tile_shape"})
    read_parameters: ClassVar[frozenset[str]] = frozenset({"bbox"})
    read_components: ClassVar[frozenset[str]] = frozenset({*_PLANES, "wcs", "metadata"})
    reads_streams: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        comp = self.options.get("compression")
        if comp is not None and comp not in _COMPRESSIONS:
            raise UnsupportedParameterError(f"FITS compression {comp!r} is not one of {sorted(_COMPRESSIONS)}")

    # -- write ---------------------------------------------------------------------------------
    def _plane_hdu(self, data: np.ndarray, name: str, header: fits.Header | None = None) -> fits.ImageHDU:
        comp = self.options.get("compression")
        if comp is None or comp == "NOCOMPRESS":
            return fits.ImageHDU(data, header=header, name=name)
        kwargs: dict[str, Any] = {"compression_type": comp}
        if "quantize_level" in self.options:
            kwargs["quantize_level"] = self.options["quantize_level"]
        if "tile_shape" in self.options:
            kwargs["tile_shape"] = tuple(self.options["tile_shape"])
        return fits.CompImageHDU(data, header=header, name=name, **kwargs)

    def write(self, obj: Any, path: Path) -> None:
        if not isinstance(obj, Exposure):
            raise FormatterError(f"{self.name} writes Exposure objects, not {type(obj).__name__}")
        try:
            primary = fits.PrimaryHDU(header=obj.metadata.copy())
            primary.header["NSORIGX"] = (int(obj.origin[0]), "x of pixel [0,0] in the parent image")
            primary.header["NSORIGY"] = (int(obj.origin[1]), "y of pixel [0,0] in the parent image")
            wcs_header = obj.wcs.to_header(relax=True) if obj.wcs is not None else None
            hdus: list[Any] = [
                primary,
                self._plane_hdu(np.asarray(obj.image), "IMAGE", wcs_header),
                self._plane_hdu(np.asarray(obj.mask), "MASK"),
                self._plane_hdu(np.asarray(obj.variance), "VARIANCE"),
            ]
            if obj.psf is not None:
                hdus.append(fits.ImageHDU(np.asarray(obj.psf), name="PSF"))
            fits.HDUList(hdus).writeto(path, checksum=False)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise FormatterError(f"cannot write Exposure as FITS to {path}: {exc}") from exc

    # -- read ----------------------------------------------------------------------------------
    def _read(self, path: Source, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        """Read from a path, or from a seekable stream (remote byte ranges): headers and the box's pixels only."""
        with warnings.catch_warnings():
            # A truncated or damaged file is an error, not a warning.
            warnings.simplefilter("error", AstropyUserWarning)
            return self._read_part(path, component, parameters.get("bbox"))

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        return (OSError, KeyError, IndexError, TypeError, AstropyUserWarning)

    def _read_part(self, path: Source, component: str | None, bbox: Box | None) -> Any:
        if component in _PLANES:
            return self._read_plane(path, component, bbox)
        if component == "metadata":
            return self._metadata(_header(path, "PRIMARY"))
        if component == "wcs":
            wcs = _wcs_from_header(_header(path, "IMAGE"))
            if wcs is not None and bbox is not None:
                wcs = wcs.slice(bbox.slices)
            return wcs
        return self._read_all(path, bbox)

    @staticmethod
    def _metadata(header: fits.Header) -> fits.Header:
        out = header.copy()
        for key in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", "NSORIGX", "NSORIGY"):
            out.remove(key, ignore_missing=True)
        return out

    def _read_plane(self, path: Source, plane: str, bbox: Box | None) -> np.ndarray | None:
        name = plane.upper()
        if bbox is not None and plane != "psf":
            layout = scan_layout(path)
            if name in layout and layout[name].plain_image:
                bbox.check_within(layout[name].shape)
                return read_image_section(path, layout[name], bbox.slices)
        if not isinstance(path, (str, Path)):
            path.seek(0)
        with fits.open(path, memmap=isinstance(path, (str, Path))) as hdul:
            if name not in hdul:
                if plane == "psf":
                    return None
                raise FormatterError(f"{path} has no {name} extension")
            hdu = hdul[name]
            if bbox is not None and plane != "psf":
                bbox.check_within(hdu.shape)
                return np.array(hdu.section[bbox.slices])
            return np.array(hdu.data)

    def _read_all(self, path: Source, bbox: Box | None) -> Exposure:
        if bbox is not None:
            layout = scan_layout(path)
            if all(n in layout and layout[n].plain_image for n in ("IMAGE", "MASK", "VARIANCE")):
                bbox.check_within(layout["IMAGE"].shape)
                planes = {p: read_image_section(path, layout[p.upper()], bbox.slices) for p in _PLANES[:3]}
                header0 = _header(path, "PRIMARY")
                wcs = _wcs_from_header(_header(path, "IMAGE"))
                psf = self._read_plane(path, "psf", None) if "PSF" in layout else None
                return Exposure(
                    **planes,
                    wcs=wcs.slice(bbox.slices) if wcs is not None else None,
                    psf=psf,
                    metadata=self._metadata(header0),
                    origin=(int(header0.get("NSORIGX", 0)) + bbox.x_min, int(header0.get("NSORIGY", 0)) + bbox.y_min),
                )
        if not isinstance(path, (str, Path)):
            path.seek(0)
        with fits.open(path, memmap=False) as hdul:
            header0 = hdul[0].header
            image_hdu = hdul["IMAGE"]
            sl = bbox.slices if bbox is not None else (slice(None), slice(None))
            if bbox is not None:
                bbox.check_within(image_hdu.shape)
            wcs = _wcs_from_header(image_hdu.header)
            return Exposure(
                image=np.array(image_hdu.data[sl]),
                mask=np.array(hdul["MASK"].data[sl]),
                variance=np.array(hdul["VARIANCE"].data[sl]),
                wcs=wcs.slice(sl) if (wcs is not None and bbox is not None) else wcs,
                psf=np.array(hdul["PSF"].data) if "PSF" in hdul else None,
                metadata=self._metadata(header0),
                origin=(
                    int(header0.get("NSORIGX", 0)) + (bbox.x_min if bbox else 0),
                    int(header0.get("NSORIGY", 0)) + (bbox.y_min if bbox else 0),
                ),
            )
