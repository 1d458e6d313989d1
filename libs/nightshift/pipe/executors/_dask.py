"""Dask distributed executor: quanta as Dask tasks on a cluster beyond one machine.

Why Dask (see ``docs/pipelines.md``): it is pure Python on PyPI, its
``Client.get_executor()`` is a ``concurrent.futures.Executor`` so the common
core drives it unchanged, it runs on laptops (``LocalCluster``), HPC batch
systems (dask-jobqueue) and Kubernetes (dask-kubernetes), and workers are
persistent processes that keep the loaded graph between quanta.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
from collections.abc import Iterator
from typing import Any, Unpack

from .._graph import QuantumGraph
from ._core import Executor, ExecutorOptions, WorkerSetup, warm_worker

__all__ = ["DaskExecutor"]


class DaskExecutor(Executor):
    """Runs quanta on a Dask distributed cluster.

    The graph file must be readable by every worker (shared filesystem or
    object store mount); pass ``graph_path`` to :meth:`run` for that.

    Parameters
    ----------
    client : distributed.Client or str
        A connected client, or a scheduler address (``tcp://host:8786``).
    batch : int
        Maximum quanta per Dask task when many are ready.
    **kwargs
        See :class:`Executor`.
    """

    name = "dask"

    def __init__(self, repo: str | os.PathLike[str] | None = None, *, client: Any, batch: int = 8,
                 **kwargs: Unpack[ExecutorOptions]) -> None:
        super().__init__(repo, **kwargs)
        try:
            import distributed
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ImportError('the Dask executor needs `pip install "dask[distributed]"`') from exc
        self._own_client = isinstance(client, str)
        self.client = distributed.Client(client) if isinstance(client, str) else client  # type: ignore[no-untyped-call]  # unannotated __init__
        self.batch = batch

    def _workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    @property
    def max_in_flight(self) -> int:
        """Two submissions per worker keep workers busy without flooding the queue."""
        return self._workers() * 2

    def _batch_size(self, n_ready: int) -> int:
        return max(1, min(self.batch, n_ready // (self._workers() * 2)))

    @contextlib.contextmanager
    def _pool(self, graph: QuantumGraph, setup: WorkerSetup) -> Iterator[cf.Executor]:
        self.client.run(warm_worker, setup)  # load the graph in every worker once
        executor = self.client.get_executor(pure=False)
        try:
            yield executor
        finally:
            executor.shutdown(wait=True)

    def close(self) -> None:
        """Close the client if this executor created it."""
        if self._own_client:
            self.client.close()
