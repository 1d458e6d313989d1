"""CPU and memory of named processes over time (psutil), sampled on a background thread."""

from __future__ import annotations

import threading
import time

import psutil

__all__ = ["ResourceSampler"]


class ResourceSampler:
    """Samples CPU % and RSS of each watched process every ``interval`` seconds.

    A process can be re-watched under the same name after a restart (:meth:`watch`
    with the new pid); a process that exited is skipped until then.

    Parameters
    ----------
    t0 : float
        ``time.monotonic()`` of the run's start; samples are stamped relative to it.
    interval : float
        Seconds between samples.
    """

    def __init__(self, t0: float, interval: float = 0.5) -> None:
        self.t0 = t0
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float, float]]] = {}
        self._procs: dict[str, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)

    def watch(self, name: str, pid: int) -> None:
        """Sample process ``pid`` as ``name`` from now on (replacing an earlier pid of that name)."""
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)  # the first call starts the CPU-time interval
        except psutil.Error:
            return
        with self._lock:
            self._procs[name] = proc
            self.samples.setdefault(name, [])

    def __enter__(self) -> ResourceSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = round(time.monotonic() - self.t0, 3)
            with self._lock:
                items = list(self._procs.items())
            for name, proc in items:
                try:
                    with proc.oneshot():
                        cpu = proc.cpu_percent(None)
                        rss = proc.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.samples[name].append((now, round(cpu, 1), round(rss, 1)))
