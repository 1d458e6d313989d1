"""``nightshift alerts``: read, fetch, show and stream Rubin-format alerts (thin over nightshift.alerts)."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

_BOOTSTRAP = click.option(
    "--bootstrap", default=None,
    help="Kafka host:port (default NIGHTSHIFT_KAFKA_BOOTSTRAP or KAFKA_BOOTSTRAP); SASL from NIGHTSHIFT_KAFKA_SASL_*.",
)
_TOPIC = click.option("--topic", default=None, help="Alert topic (default lsst-alerts-v{MAJOR} of the latest schema).")
_ARCHIVE = click.option("--bucket", default=None, help="Read from the alert archive in this S3 bucket instead.")
_PREFIX = click.option("--prefix", default="alerts", show_default=True, help="Key prefix of the archive.")


def _kafka(bootstrap: str | None) -> Any:
    from ..events import KafkaSettings

    try:
        return KafkaSettings(bootstrap_servers=bootstrap) if bootstrap else KafkaSettings()
    except ValueError as exc:
        raise click.UsageError(f"Kafka settings are incomplete (--bootstrap or KAFKA_BOOTSTRAP):\n{exc}") from exc


def _topic(topic: str | None) -> str:
    from ..alerts import alert_topic, latest_version

    return topic or alert_topic(latest_version()[0])


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _consumer(kafka: Any, topic: str, from_beginning: bool) -> Any:
    import uuid

    from confluent_kafka import Consumer

    c = Consumer({**kafka.librdkafka_config(), "group.id": f"nightshift-alerts-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest" if from_beginning else "latest", "enable.auto.commit": False})
    c.subscribe([topic])
    return c


@click.group()
def alerts() -> None:
    """Rubin-format alerts: tail a topic, fetch, show, and stream simulated visits to any Kafka.

    \b
    Try it on your laptop:
      nightshift dev up
      nightshift alerts stream --alerts-per-visit 500 --cadence 10s &
      nightshift alerts tail
    """


@alerts.command("tail")
@_BOOTSTRAP
@_TOPIC
@click.option("--from-beginning", is_flag=True, help="Start at the oldest alert instead of new ones.")
@click.option("--max", "limit", type=int, default=None, help="Stop after this many alerts.")
@click.option("--idle-timeout", type=float, default=None, help="Stop when no alert came for this many seconds.")
def tail_cmd(bootstrap: str | None, topic: str | None, from_beginning: bool, limit: int | None,
             idle_timeout: float | None) -> None:
    """One line per alert: id, ra/dec, band, PSF flux and S/N, reliability, age."""
    from ..alerts import AlertError, decode_alert, summary_line

    c = _consumer(_kafka(bootstrap), _topic(topic), from_beginning)
    seen, last = 0, time.monotonic()
    try:
        while limit is None or seen < limit:
            m = c.poll(0.5)
            if m is None or m.error() is not None:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
                continue
            last = time.monotonic()
            try:
                _, record = decode_alert(m.value())
            except (AlertError, ValueError) as exc:
                click.echo(f"{'?':>20}  undecodable message at {m.topic()}[{m.partition()}]@{m.offset()}: {exc}")
                continue
            click.echo(summary_line(record))
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        c.close()


@alerts.command("fetch")
@click.option("--visit", type=int, default=None, help="Every alert of this visit.")
@click.option("--dia-source-id", type=int, default=None, help="One alert.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True)
@_ARCHIVE
@_PREFIX
@_BOOTSTRAP
@_TOPIC
@click.option("--scan-timeout", type=float, default=10.0, show_default=True,
              help="From a topic: stop when no message came for this many seconds.")
def fetch_cmd(visit: int | None, dia_source_id: int | None, out_dir: str, bucket: str | None, prefix: str,
              bootstrap: str | None, topic: str | None, scan_timeout: float) -> None:
    """Write {id}.avro, {id}.json and the FITS cutouts of alerts, from the archive (--bucket) or a topic."""
    from ..alerts import AlertArchive, AlertError, decode_alert, frame, latest_version, write_alert_files
    from ..alerts import AlertSchema as _Schema

    if (visit is None) == (dia_source_id is None):
        raise click.UsageError("give exactly one of --visit and --dia-source-id")
    count = 0
    try:
        if bucket:
            archive = AlertArchive(bucket, prefix, create_bucket=False)
            schema = _Schema.load(latest_version())
            bodies = [archive.fetch(dia_source_id)] if dia_source_id is not None else archive.visit(visit or 0)
            for body in bodies:
                _, record = decode_alert(frame(schema.schema_id, body))
                write_alert_files(schema, body, record, out_dir)
                count += 1
        else:
            c = _consumer(_kafka(bootstrap), _topic(topic), from_beginning=True)
            last = time.monotonic()
            try:
                while time.monotonic() - last < scan_timeout:
                    m = c.poll(0.5)
                    if m is None or m.error() is not None:
                        continue
                    last = time.monotonic()
                    schema, record = decode_alert(m.value())
                    if record["diaSourceId"] == dia_source_id or record["diaSource"]["visit"] == visit:
                        write_alert_files(schema, m.value()[5:], record, out_dir)
                        count += 1
                        if dia_source_id is not None:
                            break
            finally:
                c.close()
    except AlertError as exc:
        _fail(exc)
    if not count:
        _fail(LookupError("no matching alert found"))
    click.echo(f"wrote {count} alert(s) to {out_dir}")


@alerts.command("show")
@click.argument("source")
@click.option("--png", type=click.Path(dir_okay=False), default=None, help="Cutout PNG path (default {id}.png).")
@_ARCHIVE
@_PREFIX
def show_cmd(source: str, png: str | None, bucket: str | None, prefix: str) -> None:
    """Print an alert (FILE: .avro container or framed message; or a diaSourceId with --bucket) and draw its cutouts."""
    from ..alerts import (
        AlertArchive,
        AlertError,
        alert_json,
        cutouts_png,
        decode_alert,
        frame,
        latest_version,
        read_alert_file,
    )
    from ..alerts import AlertSchema as _Schema

    try:
        if re.fullmatch(r"\d+", source) and not Path(source).exists():
            if not bucket:
                raise click.UsageError("a diaSourceId needs --bucket (the archive); or give a file")
            schema = _Schema.load(latest_version())
            body = AlertArchive(bucket, prefix, create_bucket=False).fetch(int(source))
            records = [decode_alert(frame(schema.schema_id, body))]
        else:
            records = list(read_alert_file(source))
    except (AlertError, OSError) as exc:
        _fail(exc)
        return
    for _, record in records[:1]:
        doc = alert_json({k: v for k, v in record.items() if not k.startswith("cutout")})
        click.echo(json.dumps(doc, indent=1))
        path = cutouts_png(record, png or f"{record['diaSourceId']}.png")
        click.echo(f"cutouts: {path}", err=True)
    if len(records) > 1:
        click.echo(f"({len(records) - 1} more alert(s) in {source} not shown)", err=True)


def _seconds(value: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|min|m)?\s*", value)
    if not m:
        raise click.BadParameter(f"{value!r}: give seconds, e.g. 35s, 500ms or 1min")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, None: 1.0, "min": 60.0, "m": 60.0}[m.group(2)]


@alerts.command("stream")
@_BOOTSTRAP
@click.option("--registry", default=None, help="Confluent-compatible schema registry URL to check the ids against.")
@click.option("--cadence", default="35s", show_default=True, help="Time between visits.")
@click.option("--alerts-per-visit", type=int, default=10_000, show_default=True)
@click.option("--visits", type=int, default=None, help="Stop after this many visits (default: run until Ctrl+C).")
@_TOPIC
@click.option("--partitions", type=int, default=45, show_default=True, help="Partitions of a topic it creates.")
@click.option("--schema", "schema_version", default=None, help="Alert schema MAJOR.MINOR (default: latest).")
def stream_cmd(bootstrap: str | None, registry: str | None, cadence: str, alerts_per_visit: int, visits: int | None,
               topic: str | None, partitions: int, schema_version: str | None) -> None:
    """Publish realistic alerts with coherent histories, visit after visit, to any Kafka (for broker developers)."""
    from ..alerts import AlertError, AlertStream

    stream = AlertStream(_kafka(bootstrap), alerts_per_visit=alerts_per_visit, cadence=_seconds(cadence),
                         topic=topic, registry_url=registry, partitions=partitions, schema=schema_version)

    def progress(i: int, r: Any) -> None:
        lat = ", ".join(f"{v:.2f}" for v in r.alert_timing_since_shutter_close.values())
        click.echo(f"visit {i}: {r.acknowledged}/{r.expected} alerts acknowledged on {r.topic} "
                   f"({r.bytes / 1e6:.1f} MB, {r.seconds:.2f} s; since shutter close {lat} s; "
                   f"{len(r.dead_lettered)} dead-lettered)")

    try:
        stream.run(visits, on_visit=progress)
    except AlertError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
