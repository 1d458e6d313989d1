"""The POSIX storage backend of :class:`FileDatastore`.

Writes go to a private staging directory inside the root (same file system),
are fsync'd, then renamed into place, so readers on a shared or distributed
file system never see a partial file (DMS-MWBT-REQ-0030).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import _io
from ._exceptions import DatastoreError, DatastorePermissionError, FileTemplateError

__all__ = ["PosixBackend"]

STAGING_DIR = ".staging"


class PosixBackend:
    """Files under a root directory.

    Parameters
    ----------
    root : str or Path
        The datastore root; created if missing.
    fsync : bool
        fsync files and directories on write (default True; turning it off
        trades crash safety for speed).
    """

    remote = False

    def __init__(self, root: str | Path, fsync: bool = True) -> None:
        self.root = Path(root).absolute()
        self._root_str = str(self.root)
        self._staging_dir = os.path.join(self._root_str, STAGING_DIR)
        self._fsync = fsync
        self._deferred = 0
        self._pending_sync: set[str] = set()
        self._counter = itertools.count()
        self._known_dirs: set[str] = set()
        try:
            (self.root / STAGING_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatastoreError(f"cannot create datastore root {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"PosixBackend({str(self.root)!r})"

    @property
    def fsync(self) -> bool:
        """Whether each write is fsync'd now (False inside :meth:`deferred_sync`)."""
        return self._fsync and not self._deferred

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Skip per-file fsyncs inside the block; fsync what it published at its (successful) end.

        Only this block's files and their directories are flushed: a
        file-system-wide ``syncfs`` would also wait for every other process's
        dirty pages (seen here: minutes while PostgreSQL bulk-loaded on the
        same disk).
        """
        self._deferred += 1
        try:
            yield
        except BaseException:
            if self._deferred == 1:
                self._pending_sync.clear()
            raise
        finally:
            self._deferred -= 1
        if self._fsync and not self._deferred:
            pending, self._pending_sync = self._pending_sync, set()
            # Files first, then their directories. A symlink lives in its directory entry, so the
            # directory's fsync covers it. fsync releases the GIL: issuing many at once lets the
            # file system commit them in a few journal transactions instead of one per file.
            files = [p for p in pending if not os.path.islink(p) and os.path.isfile(p)]
            dirs = [p for p in pending if os.path.isdir(p)]
            for group, sync in ((files, _io.fsync_file), (dirs, _io.fsync_dir)):
                if len(group) < 8:
                    for path in group:
                        sync(Path(path))
                    continue
                with ThreadPoolExecutor(max_workers=16, thread_name_prefix="fsync") as pool:
                    list(pool.map(lambda p, sync=sync: sync(Path(p)), group))

    def _abs(self, rel: str) -> str:
        norm = os.path.normpath(os.path.join(self._root_str, rel))
        if not norm.startswith(self._root_str + os.sep):
            raise FileTemplateError(f"path {rel!r} is outside the datastore root {self.root}")
        return norm

    def abspath(self, rel: str) -> Path:
        """Absolute path of ``rel``; refuses anything outside the root."""
        return Path(self._abs(rel))

    def uri(self, rel: str) -> str:
        """``file://`` URI of ``rel``."""
        return self.abspath(rel).as_uri()

    def new_staging_path(self, rel: str) -> Path:
        """A fresh path in the staging area for a file that will become ``rel``."""
        name = f"{os.getpid()}-{next(self._counter)}-{self._nonce}-{os.path.basename(rel)}"
        return Path(os.path.join(self._staging_dir, name))

    @property
    def _nonce(self) -> str:
        nonce = getattr(self, "_nonce_value", None)
        if nonce is None:
            nonce = self._nonce_value = uuid.uuid4().hex[:8]
        return nonce

    def _make_parents(self, dest: str) -> None:
        parent = os.path.dirname(dest)
        if parent not in self._known_dirs:
            os.makedirs(parent, exist_ok=True)
            self._known_dirs.add(parent)

    def publish(self, staging: Path, rel: str) -> None:
        """Atomically move a staged file to ``rel`` (overwriting)."""
        dest = self._abs(rel)
        try:
            self._make_parents(dest)
            try:
                _io.replace(staging, dest)
            except FileNotFoundError:
                if os.path.exists(staging):  # the directory was pruned by another writer: retry once
                    self._known_dirs.discard(os.path.dirname(dest))
                    self._make_parents(dest)
                    _io.replace(staging, dest)
                else:
                    raise
            if self.fsync:
                _io.fsync_dir(Path(os.path.dirname(dest)))
            elif self._fsync:  # deferred: flushed at the end of the batch
                self._pending_sync.update((dest, os.path.dirname(dest)))
        except BaseException:
            self.prune(Path(os.path.dirname(dest)))
            raise

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Atomically write a small file."""
        staging = self.new_staging_path(rel)
        try:
            _io.write_bytes(staging, data, self.fsync)
            self.publish(staging, rel)
        finally:
            staging.unlink(missing_ok=True)

    def get_bytes(self, rel: str) -> bytes | None:
        """Content of ``rel``, or None if absent."""
        try:
            with open(self._abs(rel), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def local_path(self, rel: str) -> Path:
        """``rel`` as a local file (no copy)."""
        return self.abspath(rel)

    def exists(self, rel: str) -> bool:
        """Whether ``rel`` exists."""
        return os.path.exists(self._abs(rel))

    def size(self, rel: str) -> int | None:
        """Size of ``rel`` in bytes, None if absent."""
        try:
            return os.stat(self._abs(rel)).st_size
        except FileNotFoundError:
            return None

    def delete(self, rel: str) -> None:
        """Delete ``rel`` (absent is fine) and prune directories left empty."""
        path = self.abspath(rel)
        try:
            path.unlink(missing_ok=True)
        except PermissionError as exc:
            raise DatastorePermissionError(f"not allowed to delete {path}: {exc}") from exc
        self.prune(path.parent)

    def check_deletable(self, rel: str) -> None:
        """Raise DatastorePermissionError unless the current user may delete ``rel``."""
        parent = self.abspath(rel).parent
        if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
            raise DatastorePermissionError(
                f"not allowed to delete {self.abspath(rel)}: directory {parent} is not writable by this user"
            )

    def prune(self, directory: Path) -> None:
        """Remove empty directories from ``directory`` up to (not including) the root."""
        d = directory
        while d != self.root and str(d).startswith(self._root_str + os.sep):
            self._known_dirs.discard(str(d))
            try:
                d.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT, errno.EACCES, errno.EPERM):
                    if exc.errno != errno.ENOENT:
                        return
                else:
                    raise
            d = d.parent

    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` within the root."""
        dest = self._abs(dst)
        self._make_parents(dest)
        _io.replace(self.abspath(src), Path(dest))
        self.prune(self.abspath(src).parent)

    def download(self, rel: str, dest: Path) -> None:
        """Copy ``rel`` to the local file ``dest``."""
        shutil.copyfile(self.abspath(rel), dest)

    def upload(self, local: Path, rel: str) -> None:
        """Copy a local file to ``rel`` atomically (via staging)."""
        staging = self.new_staging_path(rel)
        try:
            shutil.copyfile(local, staging)
            if self.fsync:
                _io.fsync_file(staging)
            self.publish(staging, rel)
        finally:
            staging.unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        """Relative paths of files under ``prefix``."""
        base = self.abspath(prefix)
        if not base.is_dir():
            return
        for dirpath, _, files in os.walk(base):
            for f in files:
                yield os.path.relpath(os.path.join(dirpath, f), self.root)
