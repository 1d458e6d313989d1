"""Multi-process executor on one machine: a persistent process pool (REQ-0019).

Workers are started once and load the graph file once. The default start
method is ``forkserver`` with ``nightshift.pipe`` preloaded: safe with
threads in the parent (unlike ``fork``), and the heavy imports are paid once
per parent process instead of once per worker (``spawn``); each submission then carries only a
small batch of quantum indices, so the framework overhead per quantum stays
in the low milliseconds rather than a process start per quantum.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar, Unpack

from .._graph import QuantumGraph
from ._core import Executor, ExecutorOptions, WorkerSetup, warm_worker

__all__ = ["MultiProcessExecutor"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

_log = logging.getLogger("nightshift.pipe.executor")


class MultiProcessExecutor(Executor):
    """Runs quanta in a pool of worker processes.

    Parameters
    ----------
    processes : int, optional
        Number of workers (default: CPU count).
    start_method : str
        ``forkserver`` (default), ``spawn`` or ``fork``.
    batch : int
        Maximum quanta per submission when many are ready (amortizes IPC).
    **kwargs
        See :class:`Executor`.
    """

    name = "multiprocess"

    def __init__(self, repo: str | os.PathLike[str] | None = None, *, processes: int | None = None,
                 start_method: str = "forkserver", batch: int = 8, **kwargs: Unpack[ExecutorOptions]) -> None:
        super().__init__(repo, **kwargs)
        if processes is not None and processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.processes = processes or os.cpu_count() or 1
        self.start_method = start_method
        self.batch = batch

    @property
    def max_in_flight(self) -> int:
        """Two submissions per worker keep workers busy without flooding the queue."""
        return self.processes * 2

    def _batch_size(self, n_ready: int) -> int:
        return max(1, min(self.batch, n_ready // (self.processes * 2)))

    @contextlib.contextmanager
    def _pool(self, graph: QuantumGraph, setup: WorkerSetup) -> Iterator[cf.Executor]:
        ctx = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload(["nightshift.pipe"])
        # the parent's environment *now* (credentials such as DAV_TOKEN or AWS_* exported after the forkserver
        # started): a forkserver's children otherwise inherit the forkserver's environment from its first use
        environ = dict(os.environ)
        pool = _RestartingPool(lambda: cf.ProcessPoolExecutor(self.processes, mp_context=ctx,
                                                              initializer=_start_worker, initargs=(setup, environ)))
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(setup: WorkerSetup, environ: dict[str, str]) -> int:
    """Worker initializer: take the submitting process's environment, then load the graph."""
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    return warm_worker(setup)


class _RestartingPool(cf.Executor):
    """A process pool that replaces itself when a worker dies (segfault, ``os._exit``, OOM kill).

    The quanta in flight in the broken pool are reported FAILED by the core
    (their descendants BLOCKED); the remaining quanta run in a fresh pool.
    """

    def __init__(self, factory: Callable[[], cf.ProcessPoolExecutor]) -> None:
        self._factory = factory
        self._pool = factory()
        self.restarts = 0

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> cf.Future[_T]:
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            _log.warning("a worker process died; starting a new pool")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._factory()
            self.restarts += 1
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
