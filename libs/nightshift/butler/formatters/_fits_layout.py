"""A minimal FITS header scanner: where each uncompressed image HDU's pixels are.

astropy parses every card of every header it passes; to cut 50×50 pixels out of
a 4k×4k plane we only need the byte offset, shape and type of the plane, then a
read of just those pixels. This reads the mandatory keywords of each header (a
few 2880-byte blocks) and nothing else.

Every function takes a local path or a seekable binary file object (a
:class:`~nightshift.butler.datastores.DavRangeFile` reading HTTP byte ranges),
so a remote cutout transfers only the headers and the box's pixels.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from astropy.io import fits

__all__ = ["ImageLayout", "Source", "read_header", "read_image_section", "scan_layout"]

#: A local file, or a seekable binary file object.
Source = Path | str | BinaryIO

_BLOCK = 2880
_BITPIX = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


@dataclass(frozen=True)
class ImageLayout:
    """Location of one HDU's data in a FITS file."""

    extname: str
    offset: int
    shape: tuple[int, ...]
    dtype: str
    plain_image: bool  # uncompressed image without BSCALE/BZERO (safe to memory map)
    header_offset: int = 0
    compressed: bool = False


def _value(card: str) -> str:
    return card[10:].split("/", 1)[0].strip().strip("'").strip()


def _read_header(f: BinaryIO) -> dict[str, str] | None:
    keys: dict[str, str] = {}
    while True:
        block = f.read(_BLOCK)
        if len(block) < _BLOCK:
            return None
        text = block.decode("ascii", errors="replace")
        for i in range(0, _BLOCK, 80):
            card = text[i : i + 80]
            key = card[:8].rstrip()
            if key == "END":
                return keys
            if card[8:10] == "= " and key not in keys:
                keys[key] = _value(card)


@contextlib.contextmanager
def _opened(source: Source) -> Iterator[BinaryIO]:
    """A binary file positioned at 0: a path is opened (and closed), a stream is rewound (and left open)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb", buffering=0) as f:
            yield f
    else:
        source.seek(0)
        yield source


def scan_layout(path: Source) -> dict[str, ImageLayout]:
    """Map EXTNAME (``PRIMARY`` for HDU 0) to the layout of its data."""
    out: dict[str, ImageLayout] = {}
    with _opened(path) as f:
        index = 0
        while True:
            header_offset = f.tell()
            keys = _read_header(f)
            if keys is None:
                return out
            offset = f.tell()
            bitpix = int(keys.get("BITPIX", "8"))
            naxis = int(keys.get("NAXIS", "0"))
            axes = [int(keys.get(f"NAXIS{i}", "0")) for i in range(1, naxis + 1)]
            nelem = int(np.prod(axes)) if axes else 0
            size = abs(bitpix) // 8 * int(keys.get("GCOUNT", "1")) * (int(keys.get("PCOUNT", "0")) + nelem)
            name = keys.get("EXTNAME", "PRIMARY" if index == 0 else str(index)).upper()
            plain = (
                keys.get("XTENSION", "IMAGE") in ("IMAGE", "")
                and "BSCALE" not in keys and "BZERO" not in keys and "ZIMAGE" not in keys
                and bitpix in _BITPIX and naxis >= 1
            )
            out[name] = ImageLayout(
                name, offset, tuple(reversed(axes)), _BITPIX.get(bitpix, ">u1"), plain,
                header_offset, keys.get("ZIMAGE", "F") == "T",
            )
            f.seek(offset + (size + _BLOCK - 1) // _BLOCK * _BLOCK)
            index += 1


def read_image_section(path: Source, layout: ImageLayout, slices: tuple[slice, ...]) -> np.ndarray:
    """Read ``data[slices]`` of a plain image HDU (native byte order), reading only the bytes it needs.

    A 2-D box is read row by row: one ``read`` of exactly the box's pixels per
    row (one read in all when the box spans whole rows), so a 50×50 cutout of
    a 4k×4k plane reads 10 kB, not 64 MB. Other selections go through a
    memory map.

    Raises
    ------
    OSError
        The file ends before the pixels the header promises (a truncated file).
    """
    dtype = np.dtype(layout.dtype)
    rows = _row_box(layout.shape, slices)
    if rows is None and not isinstance(path, (str, os.PathLike)):  # a stream: read the plane, then select
        with _opened(path) as f:
            f.seek(layout.offset)
            nbytes = int(np.prod(layout.shape)) * dtype.itemsize
            raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise OSError(f"{getattr(path, 'name', path)} is truncated: {layout.extname} data is incomplete")
        section = np.frombuffer(raw, dtype).reshape(layout.shape)[slices]
        return section.astype(section.dtype.newbyteorder("="))
    if rows is None:
        mm = np.memmap(path, dtype=dtype, mode="r", offset=layout.offset, shape=layout.shape)
        try:
            section = mm[slices]
            return section.astype(section.dtype.newbyteorder("="))
        finally:
            del mm
    (y0, y1), (x0, x1) = rows
    width = layout.shape[1]
    out = np.empty((y1 - y0, x1 - x0), dtype)
    with _opened(path) as f:
        # whole rows are contiguous in the file: one read; otherwise one read per row segment
        targets: list[np.ndarray] = [out] if x1 - x0 == width else list(out)
        for i, target in enumerate(targets):
            f.seek(layout.offset + ((y0 + i) * width + x0) * dtype.itemsize)
            view = target.data.cast("B")
            got = f.readinto(view)  # type: ignore[attr-defined]  # raw files and DavRangeFile have it
            if got != view.nbytes:
                raise OSError(f"{path} is truncated: {layout.extname} data ends before row {y0 + i} "
                              f"({got} of {view.nbytes} bytes)")
    return out.astype(dtype.newbyteorder("="), copy=False)


def _row_box(shape: tuple[int, ...], slices: tuple[slice, ...]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``((y0, y1), (x0, x1))`` for a non-empty step-1 box of a 2-D image; None for anything else."""
    if len(shape) != 2 or len(slices) != 2 or any(not isinstance(s, slice) or s.step not in (None, 1) for s in slices):
        return None
    (y0, y1, _), (x0, x1, _) = (s.indices(n) for s, n in zip(slices, shape, strict=True))
    if y1 <= y0 or x1 <= x0:
        return None
    return (y0, y1), (x0, x1)


def read_header(path: Source, extname: str) -> fits.Header:
    """The header of HDU ``extname`` of an uncompressed-image file, reading no data.

    Raises
    ------
    KeyError
        No such HDU, or it is tile-compressed (use astropy for those).
    """
    layout = scan_layout(path)[extname.upper()]
    if layout.compressed:
        raise KeyError(f"{extname} is compressed")
    with _opened(path) as f:
        f.seek(layout.header_offset)
        raw = f.read(layout.offset - layout.header_offset)
    return fits.Header.fromstring(raw.decode("ascii"))
