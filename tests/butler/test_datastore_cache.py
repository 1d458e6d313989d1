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

    cache_dir, log, checksum, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])

    def note(word):
        with open(log, "a") as f:          # one line per event, across processes
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(word + "\\n")

    def fetch(dest):
        note("fetch")
        # a slow download: it lasts until every worker has asked the cache for the file (the others
        # must then wait for it, not fetch again); the deadline only guards against a hang
        deadline = time.monotonic() + 60
        while log.read_text().count("asking") < n and time.monotonic() < deadline:
            time.sleep(0.01)
        note("fetched")
        dest.write_bytes(b"x" * 100_000)

    note("asking")
    with DatastoreCache(cache_dir).local(checksum, ".bin", fetch) as path:
        assert path.read_bytes() == b"x" * 100_000
    print("ok")
    """
)


def test_many_processes_fetch_once(tmp_path: Path) -> None:
    log = tmp_path / "fetches.log"
    log.touch()
    n = 4
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "cache"), str(log), CHECKSUM, str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(n)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-500:] for o in outs]
    lines = log.read_text().split()
    assert lines.count("asking") == n and lines.count("fetch") == lines.count("fetched") == 1
    # every worker had asked before the one download finished: the others really did wait for it
    assert max(i for i, w in enumerate(lines) if w == "asking") < lines.index("fetched")
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
