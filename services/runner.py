"""The runner service: executes quanta published as ``quantum.planned`` events.

Two kinds of quanta arrive on ``quantum.planned``:

- **graph-pointer quanta** (``graph_uri`` set), submitted by
  :class:`nightshift.pipe.KafkaExecutor`: run by
  :class:`nightshift.pipe.executors.QuantumEventHandler` exactly as before;
- **prompt-processing quanta** (``task_label`` ``ap``, no ``graph_uri``),
  planned per detector from ``nextVisit``: run by
  :class:`nightshift.ap.PromptQuantumHandler` -- APDB preload at once, join
  with the detector's ``raw.ingested`` (either order), the AP chain, the
  APDB, the alert-inputs bundle, ``dataset.write`` / ``dia.results`` /
  ``quantum.completed`` or ``quantum.failed``. Every runner also reads every
  ``raw.ingested`` event (:class:`nightshift.ap.RawListener`), so the raw
  reaches whichever runner holds the plan. ``docs/operations.md`` ("Runner").

A thin shell: settings from the environment (``NIGHTSHIFT_*``), JSON logs,
``/healthz`` ``/readyz`` ``/metrics``, graceful drain on SIGTERM. Start as
many as you like in one consumer group::

    NIGHTSHIFT_KAFKA_BOOTSTRAP=127.0.0.1:19092 python -m nightshift_services.runner

Prompt processing needs ``NIGHTSHIFT_APDB_DSN`` (or ``PG_DSN``),
``NIGHTSHIFT_STAGING_URI`` and ``NIGHTSHIFT_ALERT_INPUTS_URI``; without them
AP quanta are dead-lettered with that reason and graph-pointer quanta run as
usual. Kafka authentication comes from the same environment
(``NIGHTSHIFT_KAFKA_SECURITY_PROTOCOL``, ``NIGHTSHIFT_KAFKA_SASL_USERNAME``,
``NIGHTSHIFT_KAFKA_SASL_PASSWORD``, ...; see :class:`nightshift.events.KafkaSettings`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from confluent_kafka import Message
from pydantic import AliasChoices, Field, SecretStr

from nightshift.events import AsyncProducer, EventConsumer, QuantumPlanned, ensure_topics
from nightshift.events import Event as _Event
from nightshift.pipe.executors import QuantumEventHandler, QuantumTopics, ensure_fleet_topics
from nightshift.service import Service, ServiceConsumer, ServiceSettings, setup_logging

if TYPE_CHECKING:
    from nightshift.ap import PromptConfig


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
    # -- prompt processing (AP quanta) --
    apdb_dsn: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("NIGHTSHIFT_APDB_DSN", "PG_DSN"))
    # the other APDB settings (NIGHTSHIFT_APDB_SCHEMA_NAME, pool sizes, ...) are read by nightshift.apdb.ApdbSettings
    butler_repo: str | None = None  # for AP quanta whose event names no repository
    staging_uri: str | None = None  # output files for the datastore-writer: directory or s3://bucket/prefix
    alert_inputs_uri: str | None = None  # alert-inputs bundles and replay manifests: directory or s3://...
    s3_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NIGHTSHIFT_S3_ENDPOINT_URL", "S3_ENDPOINT"))
    raw_timeout_s: float = Field(default=300.0, gt=0)  # a planned quantum waits this long for its raw
    ap_budget_s: float = Field(default=60.0, gt=0)  # raw to dia.results; slower quanta count as budget misses
    history_days: float = Field(default=365.0, gt=0)  # DiaSource history the preload reads
    raw_lookback_s: float = Field(default=600.0, ge=0)  # raw.ingested events re-read at start
    infra_retry_s: float = Field(default=300.0, ge=0)  # an AP quantum interrupted by the APDB/S3/broker restarts
    #: Astrometric fit acceptance (arcsec rms); raise it for coarse pixels (the small simulated detectors).
    astrometry_max_rms_arcsec: float | None = Field(default=None, gt=0)
    #: Test hook: exit the process at this point of the first AP quantum (``after_store``, ``after_results``),
    #: as a crash would. Never set it in production.
    crash_at: str | None = None

    @property
    def prompt_enabled(self) -> bool:
        """Whether AP quanta can run here (APDB, staging area and bundle store are all set)."""
        return bool(self.apdb_dsn and self.staging_uri and self.alert_inputs_uri)


def _prompt_config(settings: RunnerSettings) -> PromptConfig:
    from nightshift.ap import ApConfig, AstrometryConfig, CharacterizeConfig, PromptConfig

    ap = ApConfig()
    if settings.astrometry_max_rms_arcsec is not None:
        astrometry = dataclasses.replace(AstrometryConfig(), max_rms_arcsec=settings.astrometry_max_rms_arcsec)
        ap = dataclasses.replace(ap, characterize=dataclasses.replace(CharacterizeConfig(), astrometry=astrometry))
    assert settings.staging_uri is not None and settings.alert_inputs_uri is not None  # prompt_enabled
    return PromptConfig(staging_uri=settings.staging_uri, alert_inputs_uri=settings.alert_inputs_uri,
                        s3_endpoint_url=settings.s3_endpoint_url, raw_timeout_s=settings.raw_timeout_s,
                        history_days=settings.history_days, budget_s=settings.ap_budget_s, ap=ap,
                        butler_repo=settings.butler_repo, infra_retry_s=settings.infra_retry_s,
                        crash_at=settings.crash_at)


async def main(settings: RunnerSettings | None = None, ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run one runner until SIGTERM (or ``Service.stop``)."""
    settings = settings or RunnerSettings()
    setup_logging(settings.service_name, settings.log_level, settings.log_format)
    topics = QuantumTopics.with_prefix(settings.topic_prefix)
    await asyncio.to_thread(ensure_fleet_topics, settings.kafka, topics)
    apdb = None
    prompt_topics = None
    if settings.prompt_enabled:
        from nightshift.ap import PromptTopics
        from nightshift.apdb import ApdbSettings, AsyncApdb

        prompt_topics = PromptTopics.with_prefix(settings.topic_prefix)
        # the planned topic and raw.ingested share the default partition count (the contract's co-partitioning)
        await asyncio.to_thread(ensure_topics, settings.kafka, [
            prompt_topics.raw_ingested, prompt_topics.dia_results, prompt_topics.dataset_write])
        assert settings.apdb_dsn is not None
        apdb = await AsyncApdb(ApdbSettings(dsn=settings.apdb_dsn)).open()
    # a consumer must poll within max.poll.interval.ms: an AP quantum may wait raw_timeout_s, then run
    poll_interval_ms = int(max(300.0, settings.raw_timeout_s + 4 * settings.ap_budget_s + 60.0) * 1000)
    closers: list[Callable[[], None]] = []

    def consumers(producer: AsyncProducer) -> list[ServiceConsumer]:
        generic = QuantumEventHandler(producer, topics, deferred_timeout=settings.deferred_timeout_s,
                                      max_attempts=settings.max_attempts)
        prompt = None
        out: list[ServiceConsumer] = []
        if apdb is not None and prompt_topics is not None:
            from nightshift.ap import PromptQuantumHandler, RawListener

            prompt = PromptQuantumHandler(producer, apdb, _prompt_config(settings), prompt_topics)
            closers.append(prompt.close)
            out.append(RawListener(settings.kafka, prompt_topics.raw_ingested, prompt.raw_ingested,
                                   lookback_s=settings.raw_lookback_s))

        async def dispatch(event: _Event, message: Message) -> None:
            from nightshift.ap import PromptQuantumError, is_prompt_quantum

            if isinstance(event, QuantumPlanned) and is_prompt_quantum(event):
                if prompt is None:
                    raise PromptQuantumError(
                        f"AP quantum {event.quantum_id} reached a runner without prompt processing: set "
                        "NIGHTSHIFT_APDB_DSN (or PG_DSN), NIGHTSHIFT_STAGING_URI and NIGHTSHIFT_ALERT_INPUTS_URI")
                await prompt.handle_planned(event)
            else:
                await generic(event, message)

        out.insert(0, EventConsumer(
            settings.kafka, settings.consumer_group or "nightshift-runner", [topics.planned], dispatch,
            # graph quanta run one at a time on the generic handler's thread, AP quanta on the prompt handler's;
            # concurrency > 1 lets AP quanta wait for their raws side by side
            producer, max_batch=settings.max_batch, concurrency=settings.concurrency, subjects=topics.subjects(),
            config={"session.timeout.ms": settings.session_timeout_ms, "max.poll.interval.ms": poll_interval_ms},
        ))
        return out

    service = Service(settings, consumers)

    try:
        await service.run(ready)
    finally:
        for close in closers:
            await asyncio.to_thread(close)
        if apdb is not None:
            await apdb.close()


if __name__ == "__main__":
    asyncio.run(main())
