"""The raw watcher: poll a drop directory or an S3 prefix and announce each new raw as ``raw.arrived``.

S3Proxy (and a plain directory) cannot notify, so the watcher lists the
source every ``interval_s`` seconds. Each new file's headers are read
(:func:`describe_raw`) and its ``raw.arrived`` events are produced, keyed
``"{instrument}/{detector}"``; a file that cannot be read goes to
``raw.arrived.dlq`` with the reason. Only after the broker acknowledged it is
the file recorded in the state file (one URI per line), so a restart
announces nothing twice that was announced, and at worst re-announces the
file in flight, which the ingest service handles idempotently.

Writers should make files appear atomically: write ``.name.fits.tmp`` (hidden or
``.tmp``/``.part`` names are ignored) and rename; S3 objects appear whole. As a
guard against writers that do not, a file in a directory is announced only once
two consecutive listings saw the same size and modification time (one interval
of latency).
In production, object-created notifications replace polling (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import ObsError

if TYPE_CHECKING:
    from ..events import AsyncProducer

__all__ = ["RawWatchLoop", "RawWatcher"]

log = logging.getLogger(__name__)

RAW_SUFFIXES = (".fits", ".fits.fz", ".fit")
_IGNORED_SUFFIXES = (".tmp", ".part")


class RawWatcher:
    """Which raws under ``source`` have not been announced yet.

    Parameters
    ----------
    source : str or path
        A directory (searched recursively) or ``s3://bucket/prefix``.
    state : str or path, optional
        File recording announced URIs (one a line, appended); without it the
        watcher forgets on restart and announces everything again (harmless:
        ingest is idempotent, but it costs a header read and an event per file).
    s3_client : botocore client, optional
        For an S3 source; one from ``$S3_ENDPOINT`` by default.
    settle : bool
        For a directory: announce a file only when two consecutive :meth:`poll` calls saw it with the
        same size and modification time (a file still being written is not announced half-written).
    """

    def __init__(self, source: str | os.PathLike[str], state: str | os.PathLike[str] | None = None, *,
                 s3_client: Any = None, settle: bool = True) -> None:
        self.source = str(source)
        self.remote = self.source.startswith("s3://")
        if self.remote:
            self.bucket, _, self.prefix = self.source[len("s3://"):].partition("/")
            if not self.bucket:
                raise ObsError(f"watch source {self.source!r}: give s3://bucket/prefix")
            if s3_client is None:
                import boto3

                s3_client = boto3.session.Session().client("s3", endpoint_url=os.environ.get("S3_ENDPOINT"))
            self._s3 = s3_client
        elif not Path(self.source).is_dir():
            raise ObsError(f"watch source {self.source!r} is not a directory (or an s3://bucket/prefix)")
        self.settle = settle and not self.remote
        self._last_seen: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) at the previous poll
        self.state = Path(state) if state is not None else None
        self.announced: set[str] = set()
        if self.state is not None and self.state.exists():
            self.announced = {line.strip() for line in self.state.read_text().splitlines() if line.strip()}

    def _list(self) -> Iterator[str]:
        if self.remote:
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"].rsplit("/", 1)[-1]
                    if name.endswith(RAW_SUFFIXES) and not name.startswith("."):
                        yield f"s3://{self.bucket}/{obj['Key']}"
            return
        root = Path(self.source).absolute()
        for path in sorted(root.rglob("*")):
            name = path.name
            if (name.startswith(".") or name.endswith(_IGNORED_SUFFIXES) or not name.endswith(RAW_SUFFIXES)
                    or not path.is_file()):
                continue
            yield str(path)

    def poll(self) -> list[str]:
        """The raws present now and not announced yet (and, with ``settle``, unchanged since the last poll)."""
        new = sorted(u for u in self._list() if u not in self.announced)
        if not self.settle:
            return new
        seen: dict[str, tuple[int, int]] = {}
        for uri in new:
            try:
                st = os.stat(uri)
            except FileNotFoundError:  # removed between the listing and now
                continue
            seen[uri] = (st.st_size, st.st_mtime_ns)
        ready = [u for u, sig in seen.items() if self._last_seen.get(u) == sig]
        self._last_seen = seen
        return ready

    def mark(self, uri: str) -> None:
        """Record ``uri`` as announced (appended to the state file, flushed)."""
        self.announced.add(uri)
        if self.state is not None:
            self.state.parent.mkdir(parents=True, exist_ok=True)
            with open(self.state, "a") as f:
                f.write(uri + "\n")
                f.flush()
                os.fsync(f.fileno())


class RawWatchLoop:
    """Poll a :class:`RawWatcher` and produce ``raw.arrived`` until closed (a service consumer's shape).

    Parameters
    ----------
    watcher : RawWatcher
    producer : AsyncProducer
        Started producer (the service's).
    topic_prefix : str
        Prefix of the ``raw.arrived`` topic (and of its ``.dlq``).
    interval_s : float
        Seconds between listings.
    reject_after_s : float
        A file whose headers cannot be read is tried again at each listing and dead-lettered only
        once it has failed for this long (an object store that is briefly unreachable must not
        cost a raw); 0 dead-letters at the first failure.
    """

    def __init__(self, watcher: RawWatcher, producer: AsyncProducer, *, topic_prefix: str = "",
                 interval_s: float = 1.0, reject_after_s: float = 30.0) -> None:
        self.watcher = watcher
        self.producer = producer
        self.topic = topic_prefix + "raw.arrived"
        self.interval_s = interval_s
        self.reject_after_s = reject_after_s
        self.announced = 0
        self.rejected = 0
        self._failing_since: dict[str, float] = {}
        self._stop = asyncio.Event()
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    async def poll_once(self) -> int:
        """Announce every new raw once; returns how many files were handled."""
        from ..events import dlq_topic, encode
        from ._raw_events import describe_raw, raw_event_key

        new = await asyncio.to_thread(self.watcher.poll)
        for uri in new:
            try:
                events = await asyncio.to_thread(describe_raw, uri, s3_client=getattr(self.watcher, "_s3", None))
            except ObsError as exc:
                since = self._failing_since.setdefault(uri, time.monotonic())
                if time.monotonic() - since < self.reject_after_s:
                    log.warning("raw %s not readable yet (retried at the next listing): %s", uri, exc)
                    continue
                await self.producer.send(dlq_topic(self.topic), uri.encode(), key=uri, headers=[
                    ("dlq.error_type", exc.error_type), ("dlq.error_message", str(exc)[:4000]),
                    ("dlq.exception", type(exc).__qualname__), ("dlq.source_topic", self.topic), ("uri", uri)])
                self.rejected += 1
                log.warning("raw %s rejected: %s", uri, exc)
            else:
                for event in events:
                    await self.producer.send(self.topic, encode(event), key=raw_event_key(event.instrument,
                                                                                         event.detector))
                    log.info("raw.arrived %s", uri, extra={"visit": event.visit, "detector": event.detector})
                self.announced += 1
            self._failing_since.pop(uri, None)
            await asyncio.to_thread(self.watcher.mark, uri)
        return len(new)

    async def run(self) -> None:
        """Poll until :meth:`close`."""
        self._running = True
        try:
            while not self._stop.is_set():
                try:
                    await self.poll_once()
                except ObsError:
                    raise  # a watcher that cannot work (bad source): stop the service
                except Exception as exc:  # noqa: BLE001 - listing or producing failed: try again next interval
                    log.error("raw watcher: listing %s failed: %s: %s", self.watcher.source, type(exc).__name__, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval_s)
        finally:
            self._running = False

    async def close(self, drain_timeout_s: float = 30.0) -> None:
        """Stop after the file being announced."""
        self._stop.set()
