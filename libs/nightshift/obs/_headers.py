"""Reading raw headers only: 2880-byte header blocks, never the pixels, from a local file or an S3 object.

Each header-and-data unit is located from its mandatory keywords, its header
is parsed with astropy (``Header.fromstring``), and the file size is checked
against where the last unit's data must end, so a truncated file is caught
without reading a pixel. A file whose primary HDU holds no pixels but whose
image extensions do (DECam) gives one raw per extension, its header the
primary merged with the extension's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from astropy.io import fits

from ._exceptions import RawHeaderError

__all__ = ["RawHeader", "read_raw_headers"]

_BLOCK = 2880
_MAX_HEADER_BLOCKS = 200
_SKIP_KEYS = {"COMMENT", "HISTORY", "", "SIMPLE", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "NEXTEND", "CHECKSUM",
              "DATASUM"}


@dataclass
class RawHeader:
    """The header of one raw (one detector) in a file.

    Attributes
    ----------
    source : str
        Path or ``s3://`` URI of the file.
    hdu : int
        Index of the HDU holding this raw's pixels.
    header : dict
        Keyword -> value (primary merged with the extension for multi-extension files).
    digest : str
        ``sha256`` of every header block of the file plus its size: identifies the file's content
        without reading its pixels.
    size : int
        File size in bytes.
    corrections : dict
        Filled by :func:`nightshift.obs.apply_corrections`: keyword -> ``{old, new, source}``.
    """

    source: str
    hdu: int
    header: dict[str, Any]
    digest: str
    size: int
    corrections: dict[str, dict[str, Any]] = field(default_factory=dict)


def _opener(source: str, s3_client: Any = None) -> tuple[Callable[[int, int], bytes], int, Callable[[], None]]:
    """``read(offset, n)``, the size, and a closer for a local path or an ``s3://bucket/key`` URI."""
    if source.startswith("s3://"):
        import boto3

        bucket, _, key = source[5:].partition("/")
        client = s3_client or boto3.session.Session().client("s3", endpoint_url=os.environ.get("S3_ENDPOINT"))
        try:
            size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except Exception as exc:  # noqa: BLE001 - botocore's error tree; the message says what happened
            raise RawHeaderError(f"{source}: cannot stat the object: {exc}") from exc

        def read_s3(offset: int, n: int) -> bytes:
            end = min(offset + n, size) - 1
            if end < offset:
                return b""
            data: bytes = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{end}")["Body"].read()
            return data

        return read_s3, size, lambda: None
    try:
        fd = os.open(source, os.O_RDONLY)
    except OSError as exc:
        raise RawHeaderError(f"{source}: cannot open: {exc.strerror}") from exc
    size = os.fstat(fd).st_size
    return (lambda offset, n: os.pread(fd, n, offset)), size, lambda: os.close(fd)


def _read_unit(read: Callable[[int, int], bytes], offset: int, source: str, first: bool) -> tuple[bytes, int]:
    """Header bytes of the unit at ``offset`` and the offset of the next unit."""
    chunks: list[bytes] = []
    pos = offset
    chunk = 4 * _BLOCK
    while True:
        data = read(pos, chunk)
        if len(data) < _BLOCK:
            raise RawHeaderError(f"{source}: truncated FITS header at byte {pos} (no END card)")
        data = data[: len(data) - len(data) % _BLOCK]
        if first and not chunks and not data.startswith(b"SIMPLE  ="):
            raise RawHeaderError(f"{source}: not a FITS file (does not start with SIMPLE)")
        for b in range(0, len(data), _BLOCK):
            block = data[b : b + _BLOCK]
            chunks.append(block)
            text = block.decode("ascii", errors="replace")
            if any(text[i : i + 8] == "END     " for i in range(0, _BLOCK, 80)):
                raw = b"".join(chunks)
                try:
                    hdr = fits.Header.fromstring(raw.decode("ascii"))
                except (ValueError, UnicodeDecodeError) as exc:
                    raise RawHeaderError(f"{source}: corrupt FITS header at byte {offset}: {exc}") from exc
                return raw, offset + len(raw) + _data_size(hdr, source)
            if len(chunks) > _MAX_HEADER_BLOCKS:
                raise RawHeaderError(f"{source}: FITS header at byte {offset} has no END card")
        pos += len(data)


def _data_size(hdr: fits.Header, source: str) -> int:
    try:
        naxis = int(hdr.get("NAXIS", 0))
        if naxis == 0:
            return 0
        n = 1
        for i in range(1, naxis + 1):
            n *= int(hdr[f"NAXIS{i}"])
        bits = abs(int(hdr["BITPIX"])) * int(hdr.get("GCOUNT", 1)) * (n + int(hdr.get("PCOUNT", 0)))
    except (KeyError, ValueError) as exc:
        raise RawHeaderError(f"{source}: FITS header lacks a mandatory keyword: {exc}") from exc
    nbytes = bits // 8
    return -(-nbytes // _BLOCK) * _BLOCK


def _as_dict(hdr: fits.Header) -> dict[str, Any]:
    return {k: v for k, v in hdr.items() if k not in _SKIP_KEYS and not isinstance(v, fits.card.Undefined)}


def read_raw_headers(source: str, s3_client: Any = None) -> list[RawHeader]:
    """The raws in a FITS file, from its headers only.

    Parameters
    ----------
    source : str
        Local path or ``s3://bucket/key``.
    s3_client : botocore client, optional
        Client for ``s3://`` sources (one from ``$S3_ENDPOINT`` by default).

    Raises
    ------
    RawHeaderError
        The file cannot be opened, is not FITS, has a corrupt header or is truncated.
    """
    read, size, close = _opener(source, s3_client)
    try:
        units: list[fits.Header] = []
        digest = hashlib.sha256()
        offset = 0
        while offset < size:
            raw, nxt = _read_unit(read, offset, source, first=not units)
            digest.update(raw)
            units.append(fits.Header.fromstring(raw.decode("ascii")))
            if nxt > size:
                raise RawHeaderError(
                    f"{source}: truncated: HDU {len(units) - 1} needs data up to byte {nxt}, the file has {size}")
            offset = nxt
    finally:
        close()
    digest.update(str(size).encode())
    hexdigest = "sha256:" + digest.hexdigest()
    primary = _as_dict(units[0])
    if int(units[0].get("NAXIS", 0)) > 0 or len(units) == 1:
        return [RawHeader(source, 0, primary, hexdigest, size)]
    out = []
    for index, ext in enumerate(units[1:], start=1):
        if ext.get("XTENSION") == "IMAGE" or (ext.get("XTENSION") == "BINTABLE" and ext.get("ZIMAGE")):
            out.append(RawHeader(source, index, {**primary, **_as_dict(ext)}, hexdigest, size))
    if not out:
        raise RawHeaderError(f"{source}: no image data in any HDU")
    return out
