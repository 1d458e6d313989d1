"""``nightshift apdb``: create, inspect, upgrade and prune the L1 database (thin over nightshift.apdb)."""

from __future__ import annotations

import json
from typing import Any

import click

from ..apdb import Apdb, ApdbSettings
from ._errors import cli_errors

_SCHEMA = click.option(
    "--schema", "schema_name", default=None, help="PostgreSQL schema (default: NIGHTSHIFT_APDB_SCHEMA_NAME or 'apdb')."
)


def _settings(schema_name: str | None, **overrides: Any) -> ApdbSettings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if schema_name:
        values["schema_name"] = schema_name
    try:
        return ApdbSettings(**values)
    except ValueError as exc:
        raise click.UsageError(
            f"APDB settings are incomplete or invalid (set NIGHTSHIFT_APDB_DSN or PG_DSN):\n{exc}"
        ) from exc


def _run(settings: ApdbSettings, action: Any) -> Any:
    with Apdb(settings) as apdb:
        return action(apdb)


@click.group()
def apdb() -> None:
    """The L1 database (APDB) on PostgreSQL: DIA objects, sources and forced sources.

    The DSN comes from NIGHTSHIFT_APDB_DSN (or PG_DSN, as `nightshift dev env`
    exports); it is never printed.
    """


@apdb.command("create")
@cli_errors
@_SCHEMA
@click.option("--drop", is_flag=True, help="Drop an existing schema of that name first (deletes its data).")
@click.option("--partition-days", type=int, default=None, help="Width of the time partitions (default 30).")
@click.option("--index-depth", type=int, default=None, help="HEALPix depth of pixelId (default 16).")
@click.option("--chunk-depth", type=int, default=None, help="HEALPix depth of the history chunks (default 7).")
def create_cmd(
    schema_name: str | None, drop: bool, partition_days: int | None, index_depth: int | None, chunk_depth: int | None
) -> None:
    """Create the APDB tables from the shipped Rubin apdb.yaml."""
    settings = _settings(
        schema_name, partition_days=partition_days, index_depth=index_depth, chunk_depth=chunk_depth
    )
    _run(settings, lambda a: a.create(drop=drop))
    click.echo(f"created APDB in schema {settings.schema_name!r}")


@apdb.command("info")
@cli_errors
@_SCHEMA
def info_cmd(schema_name: str | None) -> None:
    """Print the schema version, layout and settings (no secrets) as JSON."""
    settings = _settings(schema_name)
    result = _run(settings, lambda a: a.info())
    click.echo(json.dumps(result, indent=2, sort_keys=True))


@apdb.command("stats")
@cli_errors
@_SCHEMA
@click.option("--exact", is_flag=True, help="Count rows exactly instead of using planner estimates.")
def stats_cmd(schema_name: str | None, exact: bool) -> None:
    """Print rows, partitions and bytes per table as JSON."""
    settings = _settings(schema_name)
    result = _run(settings, lambda a: a.stats(exact=exact))
    click.echo(json.dumps(result, indent=2, sort_keys=True))


@apdb.command("upgrade")
@cli_errors
@_SCHEMA
def upgrade_cmd(schema_name: str | None) -> None:
    """Bring an APDB of an older nightshift layout to the current one, keeping its data (idempotent)."""
    settings = _settings(schema_name)
    layout = _run(settings, lambda a: a.upgrade())
    click.echo(f"APDB in schema {settings.schema_name!r} is at layout {layout}")


@apdb.command("prune")
@cli_errors
@_SCHEMA
@click.option("--before-mjd", type=float, required=True, help="Drop partitions entirely older than this MJD (TAI).")
def prune_cmd(schema_name: str | None, before_mjd: float) -> None:
    """Drop whole time partitions older than a cutoff and close DiaObject validity intervals."""
    settings = _settings(schema_name)
    result = _run(settings, lambda a: a.prune(before_mjd))
    click.echo(json.dumps(result, indent=2, sort_keys=True))
