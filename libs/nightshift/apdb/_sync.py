"""A synchronous facade over :class:`AsyncApdb` for batch jobs and notebooks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import pyarrow as pa
from astropy.time import Time
from numpy.typing import ArrayLike

from ..sky import Region
from ._apdb import AsyncApdb, Preload, StoreResult
from ._ddl import Layout
from ._settings import ApdbSettings
from ._validate import TableLike

__all__ = ["Apdb"]

T = TypeVar("T")


class Apdb:
    """Blocking APDB client: the same calls as :class:`AsyncApdb`, run on a private event loop.

    The loop lives in a daemon thread, so this works inside Jupyter (which
    already runs a loop). Use as a context manager or call :meth:`close`.

    Parameters
    ----------
    settings : ApdbSettings, optional
        Read from the environment when omitted.
    """

    def __init__(self, settings: ApdbSettings | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nightshift-apdb", daemon=True)
        self._thread.start()
        self._apdb = AsyncApdb(settings)
        self._closed = False
        try:
            self._run(self._apdb.open())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def settings(self) -> ApdbSettings:
        return self._apdb.settings

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("the APDB client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def close(self) -> None:
        """Close the pool and stop the loop thread (idempotent)."""
        if self._closed:
            return
        try:
            self._run(self._apdb.close())
        finally:
            self._closed = True
            self._stop_loop()

    def __enter__(self) -> Apdb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self, *, drop: bool = False) -> None:
        """See :meth:`AsyncApdb.create`."""
        self._run(self._apdb.create(drop=drop))

    def drop(self) -> None:
        """See :meth:`AsyncApdb.drop`."""
        self._run(self._apdb.drop())

    def metadata(self) -> dict[str, str]:
        """See :meth:`AsyncApdb.metadata`."""
        return self._run(self._apdb.metadata())

    def layout(self) -> Layout:
        """See :meth:`AsyncApdb.layout`."""
        return self._run(self._apdb.layout())

    def upgrade(self) -> str:
        """See :meth:`AsyncApdb.upgrade`."""
        return self._run(self._apdb.upgrade())

    def store(
        self,
        visit_time: Time | float,
        objects: TableLike | None,
        sources: TableLike | None = None,
        forced_sources: TableLike | None = None,
    ) -> StoreResult:
        """See :meth:`AsyncApdb.store`."""
        return self._run(self._apdb.store(visit_time, objects, sources, forced_sources))

    def get_dia_objects(self, region: Region) -> pa.Table:
        """See :meth:`AsyncApdb.get_dia_objects`."""
        return self._run(self._apdb.get_dia_objects(region))

    def get_dia_sources(self, object_ids: ArrayLike, since: Time | float, *, region: Region | None = None) -> pa.Table:
        """See :meth:`AsyncApdb.get_dia_sources`."""
        return self._run(self._apdb.get_dia_sources(object_ids, since, region=region))

    def get_dia_forced_sources(
        self, object_ids: ArrayLike, since: Time | float, *, region: Region | None = None
    ) -> pa.Table:
        """See :meth:`AsyncApdb.get_dia_forced_sources`."""
        return self._run(self._apdb.get_dia_forced_sources(object_ids, since, region=region))

    def preload(self, region: Region, since: Time | float) -> Preload:
        """See :meth:`AsyncApdb.preload`."""
        return self._run(self._apdb.preload(region, since))

    def info(self) -> dict[str, Any]:
        """See :func:`nightshift.apdb.info`."""
        from ._admin import info

        return self._run(info(self._apdb))

    def stats(self, *, exact: bool = False) -> dict[str, Any]:
        """See :func:`nightshift.apdb.stats`."""
        from ._admin import stats

        return self._run(stats(self._apdb, exact=exact))

    def prune(self, before: Time | float) -> dict[str, Any]:
        """See :func:`nightshift.apdb.prune`."""
        from ._admin import prune

        return self._run(prune(self._apdb, before))
