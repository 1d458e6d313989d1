"""The shared local cache: one fetch for many processes (REQ-0055), eviction, no-fetch mode."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nightshift.butler.datastores import DatastoreCache, MissingLocalFileError

DATA = b"x" * 100_000
CHECKSUM = "sha256:" + hashlib.sha256(DATA).hexdigest()

WORKER = textwrap.dedent(
    """
    import fcntl, sys, time
    from pathlib import Path
    from nightshift.butler.datastores import DatastoreCache

    cache_dir, log, checksum = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

    def fetch(dest):
        with open(log, "a") as f:          # count real fetches across processes
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write("fetch\\n")
        time.sleep(0.3)                    # a slow download: others must wait, not fetch again
        dest.write_bytes(b"x" * 100_000)

    with DatastoreCache(cache_dir).local(checksum, ".bin", fetch) as path:
        assert path.read_bytes() == b"x" * 100_000
    print("ok")
    """
)


def test_many_processes_fetch_once(tmp_path: Path) -> None:
    log = tmp_path / "fetches.log"
    log.touch()
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "cache"), str(log), CHECKSUM],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-500:] for o in outs]
    assert log.read_text().count("fetch") == 1
    entry = DatastoreCache(tmp_path / "cache").path_for(CHECKSUM, ".bin")
    assert entry.stat().st_mode & 0o060 == 0o060  # group read/write: shareable between users


def test_no_fetch_mode_and_eviction(tmp_path: Path) -> None:
    offline = DatastoreCache(tmp_path / "c", fetch=False)
    with pytest.raises(MissingLocalFileError), offline.local(CHECKSUM, ".bin", lambda d: d.write_bytes(DATA)):
        pass
    small = DatastoreCache(tmp_path / "c", max_bytes=150_000)
    others = [bytes([i]) * 100_000 for i in range(3)]
    for blob in others:
        cs = "sha256:" + hashlib.sha256(blob).hexdigest()
        with small.local(cs, ".bin", lambda d, b=blob: d.write_bytes(b)) as p:
            assert p.read_bytes() == blob
    assert small.size() <= 150_000
    assert len(small.entries()) == 1  # the most recent one stays


def test_checksum_is_verified_on_fetch(tmp_path: Path) -> None:
    from nightshift.butler.datastores import DatasetCorruptError

    cache = DatastoreCache(tmp_path / "c")
    with pytest.raises(DatasetCorruptError), cache.local(CHECKSUM, ".bin", lambda d: d.write_bytes(b"not the data")):
        pass
    assert cache.entries() == []
