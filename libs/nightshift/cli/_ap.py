"""``nightshift ap ...``: Alert Production as a user runs it (the commands live in their own small modules)."""

from __future__ import annotations

import click

__all__ = ["ap"]


@click.group()
def ap() -> None:
    """Alert Production: play a night as the observatory would, watch for raws.

    \b
      nightshift sim night ./night --visits 4 --detectors 90..92 --detector-size 512
      nightshift ap watch ./drop --state ./drop.state      # raw.arrived for new files
      nightshift ap trigger ./night --drop ./drop --cadence 35 --speed 5
    """
