"""The runner service: executes quanta published as ``quantum.planned`` events.

A thin shell over :class:`nightshift.pipe.executors.QuantumEventHandler`:
settings from the environment (``NIGHTSHIFT_*``), JSON logs, ``/healthz``
``/readyz`` ``/metrics``, graceful drain on SIGTERM. Start as many as you
like in one consumer group; :class:`nightshift.pipe.KafkaExecutor` submits to
them::

    NIGHTSHIFT_KAFKA_BOOTSTRAP=127.0.0.1:19092 python -m nightshift_services.runner

Kafka authentication comes from the same environment (``NIGHTSHIFT_KAFKA_SECURITY_PROTOCOL``,
``NIGHTSHIFT_KAFKA_SASL_USERNAME``, ``NIGHTSHIFT_KAFKA_SASL_PASSWORD``, ...; see
:class:`nightshift.events.KafkaSettings`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pydantic import Field

from nightshift.events import AsyncProducer, EventConsumer
from nightshift.pipe.executors import QuantumEventHandler, QuantumTopics, ensure_fleet_topics
from nightshift.service import Service, ServiceSettings, setup_logging


class RunnerSettings(ServiceSettings):
    """Runner settings (environment: ``NIGHTSHIFT_TOPIC_PREFIX`` etc., plus the common ones)."""

    service_name: str = "runner"
    consumer_group: str | None = "nightshift-runner"
    topic_prefix: str = ""
    max_batch: int = Field(default=16, ge=1)  # quanta can be long: commit often
    concurrency: int = Field(default=16, ge=1)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    deferred_timeout_s: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)  # crash-loop guard: starts of a quantum whose runner died


async def main(settings: RunnerSettings | None = None, ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run one runner until SIGTERM (or ``Service.stop``)."""
    settings = settings or RunnerSettings()
    setup_logging(settings.service_name, settings.log_level, settings.log_format)
    topics = QuantumTopics.with_prefix(settings.topic_prefix)
    await asyncio.to_thread(ensure_fleet_topics, settings.kafka, topics)

    def consumers(producer: AsyncProducer) -> list[EventConsumer]:
        handler = QuantumEventHandler(producer, topics, deferred_timeout=settings.deferred_timeout_s,
                                      max_attempts=settings.max_attempts)
        return [EventConsumer(
            settings.kafka, settings.consumer_group or "nightshift-runner", [topics.planned], handler,
            # quanta run one at a time on the handler's thread; concurrency > 1 overlaps the answers'
            # acknowledgements with the next quantum
            producer, max_batch=settings.max_batch, concurrency=settings.concurrency, subjects=topics.subjects(),
            config={"session.timeout.ms": settings.session_timeout_ms},
        )]

    service = Service(settings, consumers)

    async def announce() -> None:
        print(f"READY port={service.port}", flush=True)
        if ready is not None:
            await ready()

    await service.run(announce)


if __name__ == "__main__":
    asyncio.run(main())
