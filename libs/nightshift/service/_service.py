"""The base every Alert Production service runs on.

A :class:`Service` owns one producer, any number of consumers, and an HTTP
endpoint with ``/healthz`` (the process is alive), ``/readyz`` (the broker
answers) and ``/metrics`` (Prometheus). SIGTERM or SIGINT drains: consumers
finish and commit their in-flight batch within ``drain_timeout_s``, then the
producer flushes. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web
from confluent_kafka.admin import AdminClient
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from ..events import AsyncProducer, EventConsumer
from ._settings import ServiceSettings

log = logging.getLogger(__name__)

UP = Gauge("nightshift_service_up", "1 while the service runs", ["service"])



class ServiceConsumer(Protocol):
    """What a :class:`Service` runs: :class:`~nightshift.events.EventConsumer`, or any loop of the same shape
    (e.g. the alert publisher's transactional consume-produce loop)."""

    @property
    def running(self) -> bool: ...

    async def run(self) -> None: ...

    async def close(self, drain_timeout_s: float = 30.0) -> None: ...


class ThreadedLoop:
    """A :class:`ServiceConsumer` whose loop runs on one worker thread, for blocking clients (a
    confluent-kafka transactional producer, a registry connection) that must stay on one thread.

    Subclasses implement :meth:`_run`, set ``_running`` while it serves, and check ``_stop`` (a
    :class:`threading.Event`) between units of work; :meth:`close` sets it and waits for the loop to
    finish the unit in flight.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    async def run(self) -> None:
        try:
            await asyncio.to_thread(self._run)
        finally:
            self._finished.set()

    async def close(self, drain_timeout_s: float = 30.0) -> None:
        """Finish the unit of work in flight (at most ``drain_timeout_s``), then stop."""
        self._stop.set()
        await asyncio.to_thread(self._finished.wait, drain_timeout_s)

    def _run(self) -> None:
        raise NotImplementedError


ConsumerFactory = Callable[[AsyncProducer], "list[EventConsumer] | list[ServiceConsumer]"]


class Service:
    """Run consumers built by ``make_consumers`` until a signal or :meth:`stop`.

    Parameters
    ----------
    settings : ServiceSettings
    make_consumers : callable
        Builds the service's consumers from the shared producer.
    """

    def __init__(self, settings: ServiceSettings, make_consumers: ConsumerFactory) -> None:
        self.settings = settings
        self._make_consumers = make_consumers
        self.producer = AsyncProducer(settings.kafka)
        self.consumers: list[EventConsumer] | list[ServiceConsumer] = []
        self._stop = asyncio.Event()
        self._signals = 0
        self._runner: web.AppRunner | None = None
        self._admin: AdminClient | None = None  # one metadata client for every /readyz
        self.port: int | None = None

    # -- HTTP -------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": self.settings.service_name})

    async def broker_reachable(self, timeout: float = 2.0) -> bool:
        """Whether a broker answers a metadata request within ``timeout`` (one client, reused)."""
        if self._admin is None:
            self._admin = AdminClient(self.settings.kafka.librdkafka_config())
        admin = self._admin
        try:
            await asyncio.get_running_loop().run_in_executor(None, lambda: admin.list_topics(timeout=timeout))
        except Exception:  # KafkaException: broker not reachable
            return False
        return True

    async def _readyz(self, request: web.Request) -> web.Response:
        consumers_ok = all(c.running for c in self.consumers)
        broker_ok = await self.broker_reachable()
        ready = consumers_ok and broker_ok and not self._stop.is_set()
        return web.json_response(
            {"ready": ready, "broker": broker_ok, "consumers": consumers_ok, "draining": self._stop.is_set()},
            status=200 if ready else 503,
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _start_http(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        # the bound address (the port the OS chose for http_port=0), from aiohttp's public API
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.settings.http_port
        log.info("http endpoint on %s:%s", self.settings.http_host, self.port)

    # -- lifecycle ----------------------------------------------------------
    def stop(self) -> None:
        """Begin a graceful drain."""
        self._stop.set()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.error("second %s: exiting without draining", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s received: draining", signal.Signals(signum).name)
        self.stop()

    async def run(self, ready: Callable[[], Awaitable[None]] | None = None, *, announce: str | None = "") -> None:
        """Start everything, wait for a stop, drain within the timeout, close.

        Once consuming and listening, prints one line ``READY port=<http port>`` (plus ``announce``)
        to stdout, which process launchers and tests wait for (``announce=None``: no line), then
        awaits ``ready``.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (e.g. in tests)
                loop.add_signal_handler(sig, self._on_signal, sig)
        await self.producer.start()
        self.consumers = self._make_consumers(self.producer)
        tasks = [asyncio.create_task(c.run(), name=f"consumer-{i}") for i, c in enumerate(self.consumers)]
        await self._start_http()
        UP.labels(self.settings.service_name).set(1)
        if announce is not None:
            print(f"READY port={self.port}" + (f" {announce}" if announce else ""), flush=True)
        if ready is not None:
            await ready()
        stop_wait = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception() if task is not stop_wait else None
                if exc is not None:
                    raise exc
        finally:
            stop_wait.cancel()
            await self._drain(tasks)

    async def _drain(self, tasks: list[asyncio.Task[None]]) -> None:
        timeout = self.settings.drain_timeout_s
        try:
            await asyncio.wait_for(asyncio.gather(*(c.close(timeout) for c in self.consumers)), timeout + 5)
        except TimeoutError:
            log.warning("consumers did not drain in %.0f s; cancelling", timeout)
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.producer.close(timeout)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._admin = None  # librdkafka frees the client when the last reference goes
        UP.labels(self.settings.service_name).set(0)
        log.info("drained and stopped")
