"""Reading raw headers only: 2880-byte header blocks, never the pixels, from a local file or an S3 object.

Each header-and-data unit is located from its mandatory keywords, its header
is parsed (:func:`parse_cards`), and the file size is checked
against where the last unit's data must end, so a truncated file is caught
without reading a pixel. A file whose primary HDU holds no pixels but whose
image extensions do (DECam) gives one raw per extension, its header the
primary merged with the extension's.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


_STRING = re.compile(r"'((?:[^']|'')*)'")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?$")


def _card_value(text: str) -> Any:
    """Value of the part of a card after ``= `` (FITS fixed or free format)."""
    text = text.strip()
    if text.startswith("'"):
        m = _STRING.match(text)
        return m.group(1).replace("''", "'").rstrip() if m else text.strip("'").rstrip()
    value = text.split("/", 1)[0].strip()
    if value == "T":
        return True
    if value == "F":
        return False
    if not value:
        return None
    if _NUMBER.match(value):
        if "." in value or "e" in value.lower() or "d" in value.lower():
            return float(value.replace("D", "E").replace("d", "e"))
        return int(value)
    return value


def parse_cards(raw: bytes) -> dict[str, Any]:
    """Keyword -> value of a FITS header (first occurrence wins; COMMENT/HISTORY/blank skipped).

    A small parser instead of ``astropy.io.fits.Header.fromstring``: ingest
    parses thousands of headers and astropy's per-card machinery dominated
    its time. ``HIERARCH`` keywords and ``CONTINUE`` long strings are understood.
    """
    text = raw.decode("ascii", errors="replace")
    out: dict[str, Any] = {}
    last: str | None = None
    for i in range(0, len(text), 80):
        card = text[i : i + 80]
        key = card[:8].rstrip()
        if key == "END":
            break
        if key == "CONTINUE" and last is not None and isinstance(out[last], str) and out[last].endswith("&"):
            more = _card_value(card[8:])
            out[last] = out[last][:-1] + (more if isinstance(more, str) else "")
            continue
        if key == "HIERARCH" and "=" in card:
            name, _, rest = card[9:].partition("=")
            key, value_text = name.strip(), rest
        elif card[8:10] == "= ":
            value_text = card[10:]
        else:
            continue
        if key and key not in out:
            out[key] = _card_value(value_text)
            last = key
    return out


def _read_unit(read: Callable[[int, int], bytes], offset: int, source: str,
               first: bool) -> tuple[bytes, dict[str, Any], int]:
    """Header bytes and keywords of the unit at ``offset``, and the offset of the next unit."""
    chunks: list[bytes] = []
    pos = offset
    chunk = 4 * _BLOCK
    while True:
        data = read(pos, chunk)
        if first and not chunks and not data.startswith(b"SIMPLE  ="):
            raise RawHeaderError(f"{source}: not a FITS file (does not start with SIMPLE)")
        if len(data) < _BLOCK:
            raise RawHeaderError(f"{source}: truncated FITS header at byte {pos} (no END card)")
        data = data[: len(data) - len(data) % _BLOCK]
        for b in range(0, len(data), _BLOCK):
            block = data[b : b + _BLOCK]
            chunks.append(block)
            text = block.decode("ascii", errors="replace")
            if any(text[i : i + 8] == "END     " for i in range(0, _BLOCK, 80)):
                raw = b"".join(chunks)
                cards = parse_cards(raw)
                return raw, cards, offset + len(raw) + _data_size(cards, source)
            if len(chunks) > _MAX_HEADER_BLOCKS:
                raise RawHeaderError(f"{source}: FITS header at byte {offset} has no END card")
        pos += len(data)


def _data_size(hdr: dict[str, Any], source: str) -> int:
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


def _as_dict(hdr: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hdr.items() if k not in _SKIP_KEYS and v is not None}


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
        units: list[dict[str, Any]] = []
        digest = hashlib.sha256()
        offset = 0
        while offset < size:
            raw, cards, nxt = _read_unit(read, offset, source, first=not units)
            digest.update(raw)
            units.append(cards)
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
