"""``nightshift ap trigger`` and ``nightshift ap watch``: the observatory side (thin commands over
:mod:`nightshift.obs.sim` and :mod:`nightshift.obs`)."""

from __future__ import annotations

import asyncio
import contextlib

import click

from ._ap import ap
from ._errors import cli_errors as _errors

__all__ = ["trigger_cmd", "watch_cmd"]


@ap.command("trigger")
@click.argument("night", type=click.Path(exists=True, file_okay=False))
@click.option("--drop", "drop", required=True,
              help="Where the raws appear: a directory, or s3://bucket/prefix (S3 endpoint from $S3_ENDPOINT).")
@click.option("--speed", type=float, default=1.0, show_default=True, help="Play the night this many times faster.")
@click.option("--cadence", type=float, default=None,
              help="Seconds between visit starts (default: the simulated times, revisits 30 min apart).")
@click.option("--lead", type=float, default=20.0, show_default=True,
              help="Seconds between nextVisit and the exposure start.")
@click.option("--visits", "-n", type=int, default=None, help="Only the first N visits.")
@click.option("--announce/--no-announce", default=False, show_default=True,
              help="Also produce raw.arrived for each dropped raw (no raw watcher needed).")
@click.option("--issued-now/--issued-sim", default=False, show_default=True,
              help="Stamp nextVisit.issued_at with the wall clock instead of the simulator's clock.")
@click.option("--topic-prefix", default="", envvar="NIGHTSHIFT_TOPIC_PREFIX", help="Prefix of the topics.")
@_errors
def trigger_cmd(night: str, drop: str, speed: float, cadence: float | None, lead: float, visits: int | None,
                announce: bool, issued_now: bool, topic_prefix: str) -> None:
    """Send NIGHT's nextVisit events on time and drop its raws at each exposure end.

    NIGHT is a directory written by `nightshift sim night`. Kafka from NIGHTSHIFT_KAFKA_* (or KAFKA_BOOTSTRAP).

    \b
      nightshift ap trigger ./night --drop s3://raws/incoming --cadence 35 --speed 10 --announce
    """
    from ..events import AsyncProducer, KafkaSettings, ensure_topics
    from ..obs.sim import RawDropper, TriggerStep, load_night, run_trigger, trigger_schedule

    plan = load_night(night)[:visits]
    steps = trigger_schedule(plan, speed=speed, cadence_s=cadence, lead_s=lead)
    kafka = KafkaSettings()
    ensure_topics(kafka, [topic_prefix + "nextVisit", topic_prefix + "raw.arrived"])
    dropper = RawDropper(drop)
    click.echo(f"{len(plan)} visits, {sum(len(v.raws) for v in plan)} raws; last step at "
               f"{steps[-1].at_s if steps else 0:.1f} s")

    def show(step: TriggerStep, late: float) -> None:
        what = "nextVisit" if step.kind == "nextVisit" else f"{len(step.visit.raws)} raws dropped"
        behind = f" ({late:.1f} s late)" if late > 1 else ""
        click.echo(f"{step.at_s:8.1f} s  visit {step.visit.visit}: {what}{behind}")

    async def go() -> None:
        async with AsyncProducer(kafka) as producer:
            report = await run_trigger(steps, producer, dropper, topic_prefix=topic_prefix, announce=announce,
                                       issued_now=issued_now, on_step=show)
        click.echo(f"sent {len(report.next_visits)} nextVisit, dropped {len(report.dropped)} raws"
                   + (f", announced {report.announced}" if announce else ""))

    asyncio.run(go())


@ap.command("watch")
@click.argument("source")
@click.option("--state", type=click.Path(dir_okay=False), default=None,
              help="File of announced raws: a restart announces only new ones (without it, all again: harmless).")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between listings.")
@click.option("--reject-after", type=float, default=30.0, show_default=True,
              help="Seconds a file may stay unreadable (retried at each listing) before raw.arrived.dlq.")
@click.option("--once", is_flag=True,
              help="List once, announce what is new, exit (files must be complete: no settling check).")
@click.option("--topic-prefix", default="", envvar="NIGHTSHIFT_TOPIC_PREFIX", help="Prefix of the topics.")
@_errors
def watch_cmd(source: str, state: str | None, interval: float, reject_after: float, once: bool,
              topic_prefix: str) -> None:
    """Produce raw.arrived for each new raw in SOURCE (a directory or s3://bucket/prefix), by polling.

    Kafka from NIGHTSHIFT_KAFKA_* (or KAFKA_BOOTSTRAP); S3 endpoint from $S3_ENDPOINT.
    """
    from ..events import AsyncProducer, KafkaSettings, ensure_topics
    from ..obs import RawWatcher, RawWatchLoop

    kafka = KafkaSettings()
    ensure_topics(kafka, [topic_prefix + "raw.arrived", topic_prefix + "raw.arrived.dlq"])
    watcher = RawWatcher(source, state, settle=not once)

    async def go() -> None:
        async with AsyncProducer(kafka) as producer:
            loop = RawWatchLoop(watcher, producer, topic_prefix=topic_prefix, interval_s=interval,
                                reject_after_s=0.0 if once else reject_after)
            if once:
                await loop.poll_once()
            else:
                try:
                    await loop.run()
                finally:
                    await loop.close()
            click.echo(f"announced {loop.announced} raw(s), rejected {loop.rejected}")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
