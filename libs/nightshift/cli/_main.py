from __future__ import annotations

import importlib
import logging

import click

from ._alerts import alerts
from ._ap import ap
from ._ap_trigger import trigger_cmd  # noqa: F401 - adds trigger, watch to `ap`
from ._apdb import apdb
from ._butler import butler
from ._obs import ingest_raws_cmd  # noqa: F401 - adds ingest-raws, register-instrument to `butler`
from ._pipeline import pipeline
from ._service import service
from ._sim import sim

#: Commands of the development package ``nightshift_dev`` (this repository's checkout, not the library),
#: imported only when one of them is listed or run.
DEV_COMMANDS = {
    "dev": "Run the local stack of real servers (needs nightshift_dev, from a source checkout).",
    "demo": "Run the library tour against the local stack (needs nightshift_dev, from a source checkout).",
    "loadtest": "Load tests of Alert Production against the seed's budgets (needs nightshift_dev).",
}


def _missing_dev_command(name: str) -> click.Command:
    """A stand-in for ``nightshift <name>`` when nightshift_dev is not installed: says so and exits 1."""

    def fail(args: tuple[str, ...]) -> None:
        raise click.ClickException(
            f"`nightshift {name}` is development tooling from the nightshift source checkout (package "
            "nightshift_dev), which is not installed here. In a checkout run `make venv` (pip install -e .) "
            "and use .venv/bin/nightshift."
        )

    return click.Command(
        name, callback=fail, help=DEV_COMMANDS[name], add_help_option=False,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


class _Root(click.Group):
    """The root group: ``dev`` and ``demo`` come from ``nightshift_dev``, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *DEV_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in DEV_COMMANDS:
            return super().get_command(ctx, cmd_name)
        try:
            module = importlib.import_module("nightshift_dev.cli")
        except ModuleNotFoundError as exc:
            if exc.name not in ("nightshift_dev", "nightshift_dev.cli"):
                raise
            return _missing_dev_command(cmd_name)
        command: click.Command = getattr(module, cmd_name)
        return command


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="WARNING", show_default=True, help="Python logging level (DEBUG, INFO, ...).")
def cli(log_level: str) -> None:
    """nightshift: data middleware for a survey telescope.

    \b
    Start here:
      nightshift dev up        start the local Kafka, PostgreSQL and S3 servers
      eval "$(nightshift dev env)"   export their addresses into your shell
      nightshift ap run-night  a night of Alert Production through every service (make demo)
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


cli.add_command(pipeline)
cli.add_command(apdb)
cli.add_command(alerts)
cli.add_command(ap)
cli.add_command(butler)
cli.add_command(sim)
cli.add_command(service)


def main() -> None:
    cli(prog_name="nightshift")
