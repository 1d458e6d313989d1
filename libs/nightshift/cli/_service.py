"""``nightshift service NAME``: run one Alert Production service in the foreground.

Settings come from the environment (``NIGHTSHIFT_*``, see each service's settings
class); the command is the same as ``python -m nightshift_services.NAME``.
"""

from __future__ import annotations

import asyncio
import importlib

import click

#: service name on the command line -> module of ``nightshift_services``
SERVICES = {
    "alert-publisher": "alert_publisher",
    "planner": "planner",
    "datastore-writer": "datastore_writer",
    "ingest": "ingest",
    "registry": "registry",
    "runner": "runner",
}


@click.group()
def service() -> None:
    """Run an Alert Production service (settings from NIGHTSHIFT_* environment variables)."""


def _command(name: str, module: str) -> click.Command:
    def run() -> None:
        mod = importlib.import_module(f"nightshift_services.{module}")
        asyncio.run(mod.main())

    doc = f"Run the {name} service until SIGTERM (same as python -m nightshift_services.{module})."
    return click.Command(name, callback=run, help=doc)


for _name, _module in SERVICES.items():
    service.add_command(_command(_name, _module))
