"""``nightshift ap ...``: Alert Production as a user runs it (``run-night`` here; ``trigger`` and ``watch`` in
``_ap_trigger.py``)."""

from __future__ import annotations

import click

from ._errors import cli_errors

__all__ = ["ap"]


@click.group()
def ap() -> None:
    """Alert Production: the six services over Kafka, from nextVisit to alerts; the observatory side.

    \b
      nightshift ap run-night --visits 4            a whole night on this machine (make demo)
      nightshift alerts tail --topic <topic> --from-beginning   read its alerts
    \b
      nightshift sim night ./night --visits 4 --detectors 90..92 --detector-size 512
      nightshift ap watch ./drop --state ./drop.state      # raw.arrived for new files
      nightshift ap trigger ./night --drop ./drop --cadence 35 --speed 5
    """


@ap.command("run-night")
@click.option("--visits", "-n", type=int, default=4, show_default=True, help="Science visits of the night.")
@click.option("--detectors", "-k", type=int, default=4, show_default=True,
              help="Detectors per visit (1-9, LSSTCam-sim's central raft).")
@click.option("--cadence", type=float, default=35.0, show_default=True, help="Seconds between visits.")
@click.option("--detector-size", type=int, default=512, show_default=True, help="Pixels per detector side.")
@click.option("--exposure-time", type=float, default=30.0, show_default=True, help="Seconds of each exposure.")
@click.option("--runners", type=int, default=2, show_default=True, help="Runner processes (one consumer group).")
@click.option("--datastore", type=click.Choice(["s3", "posix"]), default="s3", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Repository config, drop directory and service logs (a new temporary directory by default).")
@click.option("--live/--no-live", default=None, help="Live per-visit table (default: when stdout is a terminal).")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds to wait for the last visit's alerts at most.")
@cli_errors
def run_night_cmd(visits: int, detectors: int, cadence: float, detector_size: int, exposure_time: float, runners: int,
                  datastore: str, seed: int, workdir: str | None, live: bool | None, timeout: float) -> None:
    """Run a simulated night end to end: local stack, every service, visits on the cadence, alerts.

    Starts the local stack and every Alert Production service as a process, simulates the night
    (raws, master calibrations, templates), sends nextVisit and drops the raws on time, shows a
    live per-visit timeline and ends with a summary (alerts, shutter-close-to-alert latency, DIA
    round trip). The services are stopped with SIGTERM at the end. Exit code 1 if a visit did not
    reach all of its alerts.
    """
    import sys

    try:
        from nightshift_dev.night import NightSpec, run_night
    except ModuleNotFoundError as exc:  # pragma: no cover - only outside a source checkout
        raise click.ClickException(
            "`nightshift ap run-night` starts the local stack of the nightshift source checkout (package "
            "nightshift_dev), which is not installed here; in a checkout run `make venv` and use .venv/bin/nightshift"
        ) from exc
    spec = NightSpec(visits=visits, detectors=detectors, cadence_s=cadence, detector_size=detector_size,
                     exposure_time_s=exposure_time, runners=runners, datastore=datastore, seed=seed,
                     timeout_s=timeout)
    summary = run_night(spec, echo=click.echo, live=sys.stdout.isatty() if live is None else live, workdir=workdir)
    if summary.visits_complete < summary.visits or summary.duplicate_alerts or summary.missing_alerts:
        raise SystemExit(1)
