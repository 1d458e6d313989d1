"""Counting the bytes a piece of code reads from files: behaviour, not timing.

``/proc/thread-self/io`` (Linux) counts the bytes the calling thread received
from ``read``-family system calls (``rchar``), so a reader that claims to read
only what it needs can be held to a byte budget whatever else the machine is
doing. Pages touched through a memory map would not be counted, so memory
mapping is forbidden while counting: the count is complete or the test fails.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from unittest import mock

import pytest

T = TypeVar("T")
_IO = Path("/proc/thread-self/io")


def _rchar() -> int:
    for line in _IO.read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"{_IO} has no rchar line")


class _NoMmap(mmap.mmap):
    """Stands in for ``mmap.mmap`` (still a type, for ``isinstance``) and refuses to map."""

    def __new__(cls, *args: object, **kwargs: object) -> _NoMmap:
        raise AssertionError("the reader memory-mapped a file: its reads cannot be counted")


def bytes_read_by(fn: Callable[[], T]) -> tuple[T, int]:
    """Call ``fn`` (memory mapping forbidden) and return its result and the bytes this thread read meanwhile."""
    if not _IO.exists():
        pytest.skip("needs Linux per-thread I/O accounting (/proc/thread-self/io)")
    with mock.patch.object(mmap, "mmap", _NoMmap):
        before = _rchar()
        result = fn()
        after = _rchar()
    return result, after - before
