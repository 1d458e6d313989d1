"""The planner service: ``nextVisit`` in, one ``quantum.planned`` per detector that sees the field out.

A thin shell over :class:`nightshift.ap.VisitPlanner`. For each ``nextVisit``
(keyed ``"{instrument}/{visit}"``) it computes each requested detector's sky
footprint from the camera geometry, keeps the detectors that overlap the
survey's sky map, resolves their certified calibrations, templates (and
reference shards) in the butler registry, and emits their quanta keyed
``"{instrument}/{detector}"`` -- while the shutter is open, so each runner can
start its APDB preload before the raw arrives (DMS-MWST-REQ-0030).

Ids are deterministic (quantum, outputs and even the event ids), so a
redelivered ``nextVisit`` plans the same quanta; the runner deduplicates on
the quantum id. An unknown instrument, detector or filter goes to
``nextVisit.dlq`` with the reason, and nothing of that visit is planned::

    NIGHTSHIFT_KAFKA_BOOTSTRAP=127.0.0.1:19092 NIGHTSHIFT_BUTLER_REPO=/data/repo \\
        NIGHTSHIFT_SKYMAP=sim_sky python -m nightshift_services.planner

Settings come from the environment (``NIGHTSHIFT_*``; see :class:`PlannerSettings`),
Kafka authentication from ``NIGHTSHIFT_KAFKA_*`` (:class:`nightshift.events.KafkaSettings`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from confluent_kafka import Message
from prometheus_client import Counter, Histogram
from pydantic import Field, field_validator

from nightshift.ap import PlannerConfig, VisitPlanner
from nightshift.butler import Butler
from nightshift.events import AsyncProducer, Event, EventConsumer, NextVisit, dlq_topic, encode, ensure_topics
from nightshift.service import Service, ServiceSettings, setup_logging

log = logging.getLogger("nightshift.planner")

VISITS = Counter("nightshift_planner_visits_total", "nextVisit events planned", ["instrument"])
QUANTA = Counter("nightshift_planner_quanta_total", "quantum.planned events emitted", ["instrument"])
MISSING = Counter("nightshift_planner_missing_inputs_total", "Quanta planned without an input", ["dataset_type"])
PLAN_SECONDS = Histogram("nightshift_planner_plan_seconds", "Planning time of one visit (registry included)",
                         buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, float("inf")))


class PlannerSettings(ServiceSettings):
    """Planner settings (environment ``NIGHTSHIFT_*``, plus the common ones).

    ``NIGHTSHIFT_BUTLER_REPO`` is the repository both planner and runners read;
    the rest mirror :class:`nightshift.ap.PlannerConfig`.
    """

    service_name: str = "planner"
    consumer_group: str | None = "nightshift-planner"
    topic_prefix: str = ""
    butler_repo: str
    skymap: str | None = None
    template_dataset_type: str = "template_coadd"
    template_collections: list[str] = Field(default_factory=lambda: ["templates/sim"])
    calib_collection: str = "{instrument}/calib"
    raw_collection: str = "{instrument}/raw/all"
    run_template: str = "{instrument}/prompt/{day_obs}"
    refcat: str | None = None
    refcat_collections: list[str] = Field(default_factory=lambda: ["refcats"])
    lead_time_s: float = Field(default=20.0, ge=0)
    #: Partitions of the topics the planner creates if missing (quantum.planned must match raw.ingested's).
    partitions: int = Field(default=4, ge=1)
    max_batch: int = Field(default=8, ge=1)
    concurrency: int = Field(default=2, ge=1)

    @field_validator("skymap", "refcat", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value  # NIGHTSHIFT_SKYMAP= (empty) means no sky map

    def planner_config(self) -> PlannerConfig:
        return PlannerConfig(
            skymap=self.skymap, template_dataset_type=self.template_dataset_type,
            template_collections=tuple(self.template_collections), calib_collection=self.calib_collection,
            raw_collection=self.raw_collection, run_template=self.run_template, refcat=self.refcat,
            refcat_collections=tuple(self.refcat_collections), lead_time_s=self.lead_time_s,
        )


class PlanHandler:
    """Plans one ``nextVisit`` (in a worker thread) and publishes its quanta, awaiting every acknowledgement."""

    def __init__(self, planner: VisitPlanner, producer: AsyncProducer, output_topic: str) -> None:
        self.planner = planner
        self.producer = producer
        self.output_topic = output_topic

    async def __call__(self, event: Event, message: Message) -> None:
        if not isinstance(event, NextVisit):  # pragma: no cover - the consumer's subject check guarantees it
            raise TypeError(f"the planner consumes nextVisit, not {type(event).__name__}")
        ids = {"instrument": event.instrument, "visit": event.visit}
        started = time.perf_counter()
        plan = await asyncio.to_thread(self.planner.plan, event)
        elapsed = time.perf_counter() - started
        PLAN_SECONDS.observe(elapsed)
        events = plan.events()
        futures = [await self.producer.enqueue(self.output_topic, encode(q), key=f"{q.instrument}/{q.detector}")
                   for q in events]
        await asyncio.gather(*futures)  # the offset is committed only once every quantum is in the log
        VISITS.labels(event.instrument).inc()
        QUANTA.labels(event.instrument).inc(len(events))
        for p in plan.detectors:
            for name in p.missing:
                MISSING.labels(name).inc()
        log.info("planned %d quanta (%d detectors outside the field) in %.1f ms", len(events), len(plan.outside),
                 elapsed * 1e3, extra={**ids, "quanta": len(events), "outside": len(plan.outside),
                                       "plan_ms": round(elapsed * 1e3, 2)})


async def main(settings: PlannerSettings | None = None, ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run one planner until SIGTERM (or ``Service.stop``)."""
    settings = settings or PlannerSettings()  # butler_repo comes from the environment (NIGHTSHIFT_BUTLER_REPO)
    setup_logging(settings.service_name, settings.log_level, settings.log_format)
    input_topic = settings.topic_prefix + NextVisit.SUBJECT
    output_topic = settings.topic_prefix + "quantum.planned"
    await asyncio.to_thread(ensure_topics, settings.kafka, [input_topic, dlq_topic(input_topic), output_topic],
                            settings.partitions)
    butler = await asyncio.to_thread(Butler, settings.butler_repo)
    planner = VisitPlanner(butler.registry, settings.planner_config(), butler_repo=settings.butler_repo)
    await asyncio.to_thread(planner.check)  # a sky map that is not registered fails here, not on every visit

    def consumers(producer: AsyncProducer) -> list[EventConsumer]:
        return [EventConsumer(
            settings.kafka, settings.consumer_group or "nightshift-planner", [input_topic],
            PlanHandler(planner, producer, output_topic), producer, max_batch=settings.max_batch,
            concurrency=settings.concurrency, subjects={input_topic: NextVisit.SUBJECT},
        )]

    service = Service(settings, consumers)

    try:
        await service.run(ready)
    finally:
        butler.close()


if __name__ == "__main__":
    asyncio.run(main())
