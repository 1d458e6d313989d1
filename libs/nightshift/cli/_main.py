from __future__ import annotations

import logging

import click

from ._apdb import apdb
from ._butler import butler
from ._dev import dev
from ._obs import ingest_raws_cmd  # noqa: F401 - adds ingest-raws, register-instrument to `butler`
from ._pipeline import pipeline
from ._sim import sim


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="WARNING", show_default=True, help="Python logging level (DEBUG, INFO, ...).")
def cli(log_level: str) -> None:
    """nightshift: data middleware for a survey telescope.

    \b
    Start here:
      nightshift dev up        start the local Kafka, PostgreSQL and S3 servers
      eval "$(nightshift dev env)"   export their addresses into your shell
      nightshift demo          run the end-to-end job against them
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


cli.add_command(dev)
cli.add_command(pipeline)
cli.add_command(apdb)
cli.add_command(butler)
cli.add_command(sim)


def _register_optional() -> None:
    from ._demo import demo

    cli.add_command(demo)


_register_optional()


def main() -> None:
    cli(prog_name="nightshift")
