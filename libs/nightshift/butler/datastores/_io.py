"""Low-level file steps of a put, one function each.

Each step of a write is a separate function here so that fault-injection tests
can make any one of them fail (monkeypatching this module) and check that the
datastore is left exactly as before (DMS-MWBT-REQ-0076).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["checksum_file", "fsync_dir", "fsync_file", "replace", "write_bytes"]

_CHUNK = 1 << 20


def fsync_file(path: Path) -> None:
    """Flush a written file's data to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename into it) to stable storage."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Atomically rename ``src`` over ``dst`` (same file system)."""
    os.replace(src, dst)


def write_bytes(path: Path, data: bytes, fsync: bool) -> None:
    """Write a new file, optionally fsync'd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def checksum_file(path: Path, algorithm: str = "sha256") -> tuple[str, int]:
    """``(hex digest, size in bytes)`` of a file."""
    h = hashlib.new(algorithm)
    size = 0
    with open(path, "rb", buffering=0) as f:
        first = f.read(_CHUNK)
        h.update(first)
        size = len(first)
        if size < _CHUNK:  # small file: one read, no buffer allocation
            return f"{algorithm}:{h.hexdigest()}", size
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return f"{algorithm}:{h.hexdigest()}", size
