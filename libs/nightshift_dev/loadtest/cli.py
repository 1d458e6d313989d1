"""``nightshift loadtest visit|roundtrip|night|report``: thin commands over :mod:`nightshift_dev.loadtest`.

Each run writes ``result.json``, ``report.html`` and its PNG plots into a directory of
its own under ``--results`` and prints one summary line: each budget, the measured p95
and the margin. A run that cannot go on still writes its report, then exits 1 with the reason.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click
import numpy as np

from nightshift.cli import cli_errors

from ._catalogue import CatalogueConfig, run_catalogue
from ._errors import LoadTestError
from ._report import write_report
from ._results import LoadTestResult
from ._roundtrip import RoundTripConfig, run_roundtrip
from ._services import ServicesConfig, run_services_night

__all__ = ["loadtest"]

_RESULTS = click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=Path("loadtest-results"),
                        show_default=True, help="Each run writes a directory of its own here.")


def _command_line() -> str:
    return "nightshift " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else "nightshift loadtest"


def _run_dir(results: Path, kind: str) -> Path:
    return results / f"{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def memory_growth(result: LoadTestResult) -> dict[str, dict[str, float]]:
    """Per process: RSS at the start and end of the second half of the run, and its slope (MB/hour) there."""
    out = {}
    for name, points in result.resources.items():
        if len(points) < 6:
            continue
        half = points[len(points) // 2:]
        t = np.array([p[0] for p in half])
        rss = np.array([p[2] for p in half])
        slope = float(np.polyfit(t, rss, 1)[0]) * 3600 if np.ptp(t) > 0 else 0.0
        out[name] = {"rss_start_mb": round(float(points[0][2]), 1), "rss_mid_mb": round(float(rss[0]), 1),
                     "rss_end_mb": round(float(rss[-1]), 1), "slope_mb_per_hour": round(slope, 1)}
    return out


def _finish(result: LoadTestResult, directory: Path) -> None:
    report = write_report(result, directory)
    click.echo(f"report: {report}")
    click.echo(result.summary_line())
    if result.failed:
        raise LoadTestError(result.failed)


@click.group()
def loadtest() -> None:
    """Load tests of Alert Production against the seed's budgets, on the running local stack.

    \b
    Figures say which mode made them: catalogue = simulated DIA catalogues (no pixels)
    through the APDB and the real alert-publisher services.
    """


def _catalogue_options(f: click.decorators.FC) -> click.decorators.FC:
    for opt in reversed([
        click.option("--visits", type=click.IntRange(1), default=3, show_default=True),
        click.option("--sources", type=click.IntRange(1), default=10_000, show_default=True,
                     help="New DiaSources per visit."),
        click.option("--detectors", type=click.IntRange(1, 189), default=189, show_default=True,
                     help="Detectors that get sources (189: ~53 each, as LSST spreads); services: 1..9, default 4."),
        click.option("--hot-field", "hot", type=click.IntRange(0, 189), default=0, show_default=True,
                     help="Put every source of a visit on this many detectors (0: LSST's spread)."),
        click.option("--history", type=click.IntRange(0), default=30, show_default=True,
                     help="Previous DiaSources and DiaForcedSources per object in each alert."),
        click.option("--publishers", type=click.IntRange(1), default=2, show_default=True,
                     help="Alert-publisher service processes."),
        click.option("--tasks", type=click.IntRange(1), default=4, show_default=True,
                     help="Detector tasks (APDB store + bundle + event) at once."),
        click.option("--mode", type=click.Choice(["catalogue", "services"]), default="catalogue", show_default=True,
                     help="catalogue: simulated DIA catalogues, no pixels, into the alert publishers; services "
                          "(night only): rendered raws through all six services, as `nightshift ap run-night`."),
        click.option("--guard", type=click.FloatRange(1), default=600.0, show_default=True,
                     help="Seconds without progress after which the run stops."),
        click.option("--keep", is_flag=True, help="Keep the APDB schema, topics and bucket."),
        _RESULTS,
    ]):
        f = opt(f)
    return f


@loadtest.command("visit")
@cli_errors
@_catalogue_options
def visit_cmd(visits: int, sources: int, detectors: int, hot: int, history: int, publishers: int, tasks: int,
              mode: str, guard: float, keep: bool, results: Path) -> None:
    """Full visits of alerts (10,000 by default) each measured by itself: timeToIssueAlerts per detector and visit."""
    if mode != "catalogue":
        raise click.UsageError("visit runs in --mode catalogue only; a services-mode run is `loadtest night --mode "
                               "services`")
    cfg = CatalogueConfig(visits=visits, sources=sources, detectors=detectors, hot_detectors=hot, history=history,
                          publishers=publishers, tasks=tasks, guard_s=guard, keep=keep)
    directory = _run_dir(results, "visit")
    result = run_catalogue(cfg, "visit", _command_line(), directory)
    _finish(result, directory)


@loadtest.command("night")
@cli_errors
@_catalogue_options
@click.option("--cadence", type=click.FloatRange(0), default=35.0, show_default=True,
              help="Seconds between visit starts (LSST: ~35).")
@click.option("--chaos", is_flag=True, help="catalogue: SIGKILL a random alert publisher in every other visit and "
              "restart it, S3 and PostgreSQL outages; services: the i-th of --faults in the i-th visit.")
@click.option("--detector-size", type=click.IntRange(64, 4096), default=512, show_default=True,
              help="services: pixels per detector side.")
@click.option("--runners", type=click.IntRange(1), default=2, show_default=True, help="services: runner processes.")
@click.option("--faults", default="runner,publisher", show_default=True,
              help="services: comma-separated, from runner, publisher, broker, postgres (the last two need "
                   "--own-stack); the i-th is injected in the i-th visit, after its first dia.results.")
@click.option("--own-stack", is_flag=True,
              help="services: the run owns the stack of NIGHTSHIFT_STACK_DIR (starts it; refuses a running stack a "
                   "load test did not start), so --chaos may restart its broker and PostgreSQL.")
def night_cmd(visits: int, sources: int, detectors: int, hot: int, history: int, publishers: int, tasks: int,
              mode: str, guard: float, keep: bool, results: Path, cadence: float, chaos: bool, detector_size: int,
              runners: int, faults: str, own_stack: bool) -> None:
    """A sustained run at a cadence (with --chaos: kills and restarts), reconciled at the end.

    \b
    --mode catalogue: alerts against the APDB.
    --mode services: every DIA source has one alert; every planned quantum completed or
    failed with a reason; every output file has its registry row and every row its file.
    """
    if mode == "services":
        _services_night(visits, detectors, detector_size, cadence, runners, chaos, faults, own_stack, guard, keep,
                        results)
        return
    cfg = CatalogueConfig(visits=visits, sources=sources, detectors=detectors, hot_detectors=hot, history=history,
                          publishers=publishers, tasks=tasks, guard_s=guard, keep=keep, cadence_s=cadence,
                          chaos=chaos)
    directory = _run_dir(results, "night")
    result = run_catalogue(cfg, "night", _command_line(), directory)
    result.extra["memory"] = memory_growth(result)
    rec = result.extra.get("reconciliation")
    if rec is not None:
        click.echo(f"reconciliation: {rec}")
        if not rec["ok"] and not result.failed:
            result.failed = (f"reconciliation: {rec['lost']} lost, {rec['duplicated']} duplicated, "
                             f"{rec['alerts_without_apdb_row']} alerts without an APDB row")
    _finish(result, directory)


def _services_night(visits: int, detectors: int, detector_size: int, cadence: float, runners: int, chaos: bool,
                    faults: str, own_stack: bool, guard: float, keep: bool, results: Path) -> None:
    source = click.get_current_context().get_parameter_source("detectors")
    if source is click.core.ParameterSource.DEFAULT:
        detectors = 4  # the catalogue's 189 are LSSTCam's; services mode renders LSSTCam-sim's central raft
    if detectors > 9:
        raise click.UsageError("--mode services runs 1..9 detectors (LSSTCam-sim's central raft); pass --detectors")
    cfg = ServicesConfig(visits=visits, detectors=detectors, detector_size=detector_size, cadence_s=cadence,
                         runners=runners, chaos=chaos, faults=tuple(f.strip() for f in faults.split(",") if f.strip()),
                         own_stack=own_stack, guard_s=guard, keep=keep)
    directory = _run_dir(results, "night")
    result = run_services_night(cfg, _command_line(), directory)
    result.extra["memory"] = memory_growth(result)
    rec = result.extra.get("reconciliation")
    if rec is not None:
        click.echo("reconciliation: alerts " + ", ".join(f"{k} {rec['alerts'][k]}" for k in (
            "apdb_dia_sources", "distinct_alerts", "lost", "duplicated", "alerts_without_apdb_row")))
        q, d = rec["quanta"], rec["datasets"]
        click.echo(f"                quanta planned {q['planned']}, completed {q['completed']}, failed {q['failed']}, "
                   f"unresolved {len(q['unresolved'])}, failed without reason {len(q['failed_without_reason'])}")
        click.echo(f"                datasets: {d['registry_rows']} registry rows, {d['files']} files; rows without "
                   f"file {len(d['rows_without_file'])}, files without row {len(d['files_without_row'])}")
        if not rec["ok"] and not result.failed:
            bad = [k for k in ("alerts", "quanta", "datasets") if not rec[k]["ok"]]
            result.failed = f"reconciliation failed: {', '.join(bad)}"
    elif not result.failed:
        result.failed = "no reconciliation (the night did not start)"
    _finish(result, directory)


@loadtest.command("roundtrip")
@cli_errors
@click.option("--schema", default="loadtest_roundtrip", show_default=True, help="APDB schema (reused if it exists).")
@click.option("--visits", type=click.IntRange(1), default=20, show_default=True, help="Measured round trips.")
@click.option("--seed-visits", type=click.IntRange(0), default=0, show_default=True,
              help="Visits of 10,000 DiaSources stored first, unmeasured (1,000 ≈ 10 M rows).")
@click.option("--min-dia-sources", type=click.IntRange(0), default=10_000_000, show_default=True,
              help="Refuse to measure on a smaller DiaSource table.")
@click.option("--sources", type=click.IntRange(1), default=10_000, show_default=True,
              help="DiaSources (and objects, forced sources) per visit; keep it as the schema was seeded.")
@click.option("--guard", type=click.FloatRange(1), default=120.0, show_default=True)
@click.option("--drop", is_flag=True, help="Drop the schema at the end.")
@_RESULTS
def roundtrip_cmd(schema: str, visits: int, seed_visits: int, min_dia_sources: int, sources: int, guard: float,
                  drop: bool, results: Path) -> None:
    """timeToWriteReadAlertsDB (DMS-MWST-REQ-0028): writer and reader processes on a ≥ 10 M-row DiaSource table."""
    cfg = RoundTripConfig(schema=schema, visits=visits, seed_visits=seed_visits, min_dia_sources=min_dia_sources,
                          sources_per_visit=sources, guard_s=guard, drop=drop)
    directory = _run_dir(results, "roundtrip")
    result = run_roundtrip(cfg, _command_line())
    _finish(result, directory)


@loadtest.command("report")
@cli_errors
@click.argument("result_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of the report [default: the file's own directory for result.json, else <stem>-report/].")
def report_cmd(result_json: Path, out: Path | None) -> None:
    """Write the HTML report (and plots) again from a result.json."""
    result = LoadTestResult.load(result_json)
    if out is None:
        out = result_json.parent if result_json.name == "result.json" else result_json.with_name(
            f"{result_json.stem}-report")
    click.echo(f"report: {write_report(result, out)}")
    click.echo(result.summary_line())
