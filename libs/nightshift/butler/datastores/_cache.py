"""A local, content-addressed cache of remote files, shareable between processes.

Entries are named by the checksum recorded when the dataset was written, so
the same bytes are fetched once per host no matter which repository, process
or user asks (DMS-MWBT-REQ-0058, DMS-MWBT-REQ-0055). Concurrency is handled
with ``flock``:

* a fetch takes the entry's lock exclusively, re-checks, downloads to a
  temporary name, verifies the checksum and renames into place;
* a reader holds the entry's lock *shared* while it reads the file;
* eviction (oldest first, beyond ``max_bytes``) only removes entries whose lock
  it can take exclusively without waiting, i.e. that nobody is reading.

Files and directories are created group-writable so users of one group can
share a cache directory. With ``fetch=False`` a missing entry is an error
instead of a download (DMS-MWBT-REQ-0054).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from . import _io
from ._exceptions import DatasetCorruptError, MissingLocalFileError

__all__ = ["DatastoreCache"]


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class DatastoreCache:
    """Content-addressed local copies of remote files.

    Parameters
    ----------
    directory : str or Path
        Cache directory (shared between processes/users of the host).
    max_bytes : int, optional
        Evict least recently used entries beyond this total size.
    fetch : bool
        If False, never download: a missing entry raises MissingLocalFileError.
    """

    def __init__(self, directory: str | Path, max_bytes: int | None = None, fetch: bool = True) -> None:
        self.directory = Path(directory).absolute()
        self.max_bytes = max_bytes
        self.fetch = fetch
        old = os.umask(0o002)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        finally:
            os.umask(old)
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"DatastoreCache({str(self.directory)!r}, max_bytes={self.max_bytes}, fetch={self.fetch})"

    def path_for(self, checksum: str, extension: str) -> Path:
        """Where the entry for ``checksum`` lives."""
        digest = checksum.split(":", 1)[-1]
        if not digest.isalnum():
            raise ValueError(f"checksum {checksum!r} is not a hex digest")
        return self.directory / digest[:2] / f"{digest}{extension}"

    def contains(self, checksum: str, extension: str) -> bool:
        """Whether the entry is cached."""
        return self.path_for(checksum, extension).exists()

    @contextlib.contextmanager
    def local(self, checksum: str, extension: str, fetch: Callable[[Path], None]) -> Iterator[Path]:
        """Yield a local path holding the bytes with ``checksum``, fetching them once if needed.

        Parameters
        ----------
        checksum : str
            ``algorithm:hexdigest`` of the bytes.
        extension : str
            File extension (formatters may need it).
        fetch : callable
            ``fetch(dest)`` writes the bytes to the new local file ``dest``.
        """
        path = self.path_for(checksum, extension)
        lock = path.with_name(path.name + ".lock")
        old = os.umask(0o002)
        try:
            path.parent.mkdir(exist_ok=True)
        finally:
            os.umask(old)
        if not path.exists():
            if not self.fetch:
                raise MissingLocalFileError(
                    f"{path.name} is not in the local cache {self.directory} and fetching is disabled"
                )
            with _flock(lock, fcntl.LOCK_EX):
                if not path.exists():
                    self.misses += 1
                    self._fetch(path, checksum, fetch)
                else:
                    self.hits += 1
        else:
            self.hits += 1
        with _flock(lock, fcntl.LOCK_SH):
            if not path.exists():  # evicted between fetch and read
                if not self.fetch:
                    raise MissingLocalFileError(f"{path.name} was evicted from the local cache")
                self._fetch(path, checksum, fetch)
            os.utime(path)
            yield path
        if self.max_bytes is not None:
            self.evict()

    def _fetch(self, path: Path, checksum: str, fetch: Callable[[Path], None]) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            fetch(tmp)
            algorithm = checksum.split(":", 1)[0] if ":" in checksum else "sha256"
            actual, _ = _io.checksum_file(tmp, algorithm)
            if actual != checksum:
                raise DatasetCorruptError(f"downloaded bytes have checksum {actual}, expected {checksum}")
            os.chmod(tmp, 0o664)
            _io.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def entries(self) -> list[Path]:
        """Cached files."""
        return [p for p in self.directory.glob("*/*") if not p.name.endswith((".lock", ".part"))]

    def size(self) -> int:
        """Total bytes cached."""
        total = 0
        for p in self.entries():
            with contextlib.suppress(FileNotFoundError):
                total += p.stat().st_size
        return total

    def evict(self) -> int:
        """Remove least recently used unlocked entries until within ``max_bytes``; returns bytes freed."""
        if self.max_bytes is None:
            return 0
        stats = []
        for p in self.entries():
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                stats.append((st.st_mtime, st.st_size, p))
        total = sum(s for _, s, _ in stats)
        freed = 0
        for _, size, p in sorted(stats):
            if total - freed <= self.max_bytes:
                break
            with _flock(p.with_name(p.name + ".lock"), fcntl.LOCK_EX | fcntl.LOCK_NB) as got:
                if got:
                    p.unlink(missing_ok=True)
                    freed += size
        return freed
