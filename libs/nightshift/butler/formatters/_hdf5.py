"""HDF5 formatters (h5py) for :class:`Exposure` composites and arrays (DMS-MWBT-REQ-0025, 0033, 0034, 0060).

``hdf5_exposure`` layout, one file per exposure::

    /image, /mask, /variance   2-d datasets, chunked (``chunk_shape``), optionally
                               compressed (``compression``: gzip or lzf)
    /psf                       the PSF kernel (absent when the exposure has none)
    /wcs                       the WCS as FITS header cards, one 80-character card a
                               line (absent when the exposure has none); attribute
                               ``pixel_shape`` when the WCS had one
    /metadata                  the metadata header, FITS cards one a line
    root attributes            ``nightshift_format``, ``nightshift_format_version``,
                               ``origin`` (x0, y0)

Headers are stored as card text so they round-trip exactly (comments, HISTORY,
long-string CONTINUE cards) and ``h5dump`` shows them readably. Components are
read alone (only that dataset is touched) and ``bbox`` is an h5py slice, which
reads only the chunks the box overlaps.

``hdf5_array`` stores one ``numpy.ndarray`` as the dataset ``/data`` with the
same writer options; ``bbox`` of a 2-d array reads a slice.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from .._storage_class import StorageClass
from ._base import Formatter
from ._exceptions import FormatterError, UnsupportedParameterError
from ._exposure import Box, Exposure

__all__ = ["Hdf5ArrayFormatter", "Hdf5ExposureFormatter"]

FORMAT_VERSION = 1
_PLANES = ("image", "mask", "variance")
_COMPRESSIONS = ("gzip", "lzf")
_DEFAULT_CHUNK = 256
_STRING = h5py.string_dtype("ascii")
# Errors h5py/HDF5 raise for damaged, truncated or foreign files.
_LIBRARY_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)


@dataclass(frozen=True)
class _WriterOptions:
    """Validated ``compression``, ``compression_level``, ``shuffle`` and ``chunk_shape`` options."""

    compression: str | None
    level: int | None
    shuffle: bool
    chunk_shape: tuple[int, ...] | None

    @classmethod
    def parse(cls, name: str, options: Mapping[str, Any]) -> _WriterOptions:
        compression = options.get("compression")
        if compression in (None, "none"):
            compression = None
        elif compression not in _COMPRESSIONS:
            raise UnsupportedParameterError(
                f"{name}: HDF5 compression {compression!r} is not one of {[*_COMPRESSIONS, 'none']}"
            )
        level = options.get("compression_level")
        if level is not None:
            if compression != "gzip":
                raise UnsupportedParameterError(
                    f"{name}: compression_level applies to gzip only (compression is {compression!r})"
                )
            if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
                raise UnsupportedParameterError(f"{name}: compression_level must be an integer 0-9, not {level!r}")
        shuffle = options.get("shuffle", compression is not None)
        if not isinstance(shuffle, bool):
            raise UnsupportedParameterError(f"{name}: shuffle must be true or false, not {shuffle!r}")
        chunk = options.get("chunk_shape")
        if chunk is not None:
            if (
                not isinstance(chunk, (list, tuple))
                or not chunk
                or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in chunk)
            ):
                raise UnsupportedParameterError(
                    f"{name}: chunk_shape must be a list of positive integers (rows, cols), not {chunk!r}"
                )
            chunk = tuple(chunk)
        return cls(compression, level, shuffle, chunk)

    def dataset_kwargs(self, shape: tuple[int, ...]) -> dict[str, Any]:
        """``create_dataset`` keyword arguments for an array of ``shape``."""
        if not shape or 0 in shape:
            return {}  # HDF5 cannot chunk (so cannot compress) scalars or empty arrays
        if self.chunk_shape is not None:
            if len(self.chunk_shape) != len(shape):
                raise FormatterError(
                    f"chunk_shape {list(self.chunk_shape)} has {len(self.chunk_shape)} dimension(s); "
                    f"the array has {len(shape)} (shape {list(shape)})"
                )
            chunks: tuple[int, ...] | bool = tuple(min(c, s) for c, s in zip(self.chunk_shape, shape, strict=True))
        elif len(shape) == 2:
            chunks = tuple(min(_DEFAULT_CHUNK, s) for s in shape)
        else:
            chunks = True  # h5py's own guess
        kwargs: dict[str, Any] = {"chunks": chunks}
        if self.compression is not None:
            kwargs.update(compression=self.compression, shuffle=self.shuffle)
            if self.level is not None:
                kwargs["compression_opts"] = self.level
        return kwargs


def _write_text(group: h5py.Group, name: str, header: fits.Header) -> h5py.Dataset:
    text = header.tostring(sep="\n", endcard=False, padding=False)
    return group.create_dataset(name, data=text, dtype=_STRING)


def _read_header(dset: h5py.Dataset) -> fits.Header:
    raw = dset[()]
    text = raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
    return fits.Header.fromstring(text, sep="\n")


def _read_wcs(f: h5py.File) -> WCS | None:
    if "wcs" not in f:
        return None
    dset = f["wcs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(_read_header(dset))
    if "pixel_shape" in dset.attrs:
        wcs.pixel_shape = tuple(int(n) for n in dset.attrs["pixel_shape"])
    return wcs


def _check_box(dset: h5py.Dataset, bbox: Box) -> None:
    try:
        bbox.check_within(dset.shape)
    except ValueError as exc:
        raise UnsupportedParameterError(f"bbox {exc}; read a box inside the plane") from exc


def _section(dset: h5py.Dataset, bbox: Box | None) -> np.ndarray:
    """``dset[bbox]`` (only the chunks it overlaps are read) or the whole dataset."""
    if bbox is None:
        return np.asarray(dset[()])
    _check_box(dset, bbox)
    return np.asarray(dset[bbox.slices])


@contextlib.contextmanager
def _open(path: Path, what: str) -> Iterator[h5py.File]:
    """Open ``path`` for reading; library errors while open become :class:`FormatterError`."""
    try:
        # Datastore files are immutable once published, so HDF5's advisory file
        # locks are not needed (and fail on file systems without flock).
        with h5py.File(path, "r", locking=False) as f:
            yield f
    except FormatterError:
        raise
    except _LIBRARY_ERRORS as exc:
        raise FormatterError(
            f"cannot read {what} from HDF5 file {path} (damaged, truncated or not HDF5?): {exc}"
        ) from exc


def _require(f: h5py.File, name: str, path: Path, what: str) -> h5py.Dataset:
    if name not in f or not isinstance(f[name], h5py.Dataset):
        raise FormatterError(
            f"{path} is not an HDF5 {what} written by nightshift: it has no '/{name}' dataset "
            f"(top-level objects: {sorted(f.keys())})"
        )
    return f[name]


def _write_file(path: Path, what: str, fill: Callable[[h5py.File], None]) -> None:
    """Create the new file ``path`` and ``fill`` it; on any failure remove what was created."""
    created = False
    try:
        # A new file nobody else opens yet (a staging file): no HDF5 file lock needed, which
        # matters on shared file systems without flock.
        with h5py.File(path, "w-", locking=False) as f:
            created = True
            fill(f)
    except BaseException as exc:
        if created:
            path.unlink(missing_ok=True)
        if isinstance(exc, _LIBRARY_ERRORS) and not isinstance(exc, FormatterError):
            raise FormatterError(f"cannot write {what} as HDF5 to {path}: {exc}") from exc
        raise


class Hdf5ExposureFormatter(Formatter):
    """Exposure ↔ one HDF5 file with one dataset per plane.

    Options
    -------
    compression : {"gzip", "lzf", "none"}
        Filter for the image, mask and variance planes (default none).
    compression_level : int
        gzip level 0-9 (h5py's default 4 if omitted).
    shuffle : bool
        Byte-shuffle filter before compression (default true when compressing).
    chunk_shape : list of int
        Chunk (rows, cols) of the planes, clipped to the plane; default 256×256.
        Cutouts read whole chunks, so smaller chunks make small cutouts cheaper.
    """

    name: ClassVar[str] = "hdf5_exposure"
    reads: ClassVar[str] = "Exposure"
    extension: ClassVar[str] = ".h5"
    supported_options: ClassVar[frozenset[str]] = frozenset(
        {"compression", "compression_level", "shuffle", "chunk_shape"}
    )
    read_parameters: ClassVar[frozenset[str]] = frozenset({"bbox"})
    read_components: ClassVar[frozenset[str]] = frozenset({*_PLANES, "psf", "wcs", "metadata"})

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._writer = _WriterOptions.parse(self.name, self.options)

    # -- write ---------------------------------------------------------------------------------
    def write(self, obj: Any, path: Path) -> None:
        if not isinstance(obj, Exposure):
            raise FormatterError(f"{self.name} writes Exposure objects, not {type(obj).__name__}")

        def fill(f: h5py.File) -> None:
            f.attrs["nightshift_format"] = "exposure"
            f.attrs["nightshift_format_version"] = FORMAT_VERSION
            f.attrs["origin"] = np.asarray(obj.origin, dtype=np.int64)
            for plane in _PLANES:
                data = np.asarray(getattr(obj, plane))
                f.create_dataset(plane, data=data, **self._writer.dataset_kwargs(data.shape))
            if obj.psf is not None:
                f.create_dataset("psf", data=np.asarray(obj.psf))
            if obj.wcs is not None:
                dset = _write_text(f, "wcs", obj.wcs.to_header(relax=True))
                if obj.wcs.pixel_shape is not None:
                    dset.attrs["pixel_shape"] = np.asarray(obj.wcs.pixel_shape, dtype=np.int64)
            _write_text(f, "metadata", obj.metadata)

        _write_file(path, "Exposure", fill)

    # -- read ----------------------------------------------------------------------------------
    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        bbox = parameters.get("bbox")
        what = f"Exposure {component}" if component else "Exposure"
        with _open(path, what) as f:
            image = _require(f, "image", path, "exposure")  # a cheap check that this is an exposure file
            if component in _PLANES:
                return _section(_require(f, component, path, "exposure"), bbox)
            if component == "psf":
                return np.asarray(f["psf"][()]) if "psf" in f else None
            if component == "metadata":
                return _read_header(_require(f, "metadata", path, "exposure"))
            if component == "wcs":
                wcs = _read_wcs(f)
                if wcs is not None and bbox is not None:
                    _check_box(image, bbox)
                    wcs = wcs.slice(bbox.slices)
                return wcs
            return self._read_all(f, path, bbox)

    @staticmethod
    def _read_all(f: h5py.File, path: Path, bbox: Box | None) -> Exposure:
        planes = {p: _section(_require(f, p, path, "exposure"), bbox) for p in _PLANES}
        wcs = _read_wcs(f)
        x0, y0 = (int(v) for v in f.attrs.get("origin", (0, 0)))
        if bbox is not None:
            wcs = wcs.slice(bbox.slices) if wcs is not None else None
            x0, y0 = x0 + bbox.x_min, y0 + bbox.y_min
        return Exposure(
            **planes,
            wcs=wcs,
            psf=np.asarray(f["psf"][()]) if "psf" in f else None,
            metadata=_read_header(_require(f, "metadata", path, "exposure")),
            origin=(x0, y0),
        )


class Hdf5ArrayFormatter(Formatter):
    """``numpy.ndarray`` ↔ the dataset ``/data`` of an HDF5 file; ``bbox`` of a 2-d array is a slice.

    Options
    -------
    compression, compression_level, shuffle, chunk_shape
        As for ``hdf5_exposure``; ``chunk_shape`` must have one entry per
        array dimension (default: 256×256 for 2-d arrays, h5py's guess otherwise).
    """

    name: ClassVar[str] = "hdf5_array"
    reads: ClassVar[str] = "array"
    extension: ClassVar[str] = ".h5"
    supported_options: ClassVar[frozenset[str]] = Hdf5ExposureFormatter.supported_options
    read_parameters: ClassVar[frozenset[str]] = frozenset({"bbox"})

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._writer = _WriterOptions.parse(self.name, self.options)

    def write(self, obj: Any, path: Path) -> None:
        if not isinstance(obj, np.ndarray):
            raise FormatterError(f"{self.name} writes numpy arrays, not {type(obj).__name__}")
        if obj.dtype.hasobject or obj.dtype.kind == "U":
            raise FormatterError(
                f"{self.name} cannot store arrays of dtype {obj.dtype} (HDF5 has no object or UCS-4 string "
                "type); convert strings to bytes ('S') first"
            )

        def fill(f: h5py.File) -> None:
            f.attrs["nightshift_format"] = "array"
            f.attrs["nightshift_format_version"] = FORMAT_VERSION
            f.create_dataset("data", data=obj, **self._writer.dataset_kwargs(obj.shape))

        _write_file(path, "array", fill)

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        with _open(path, "array") as f:
            return _section(_require(f, "data", path, "array"), parameters.get("bbox"))
