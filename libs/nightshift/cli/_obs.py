"""``nightshift butler ingest-raws`` and ``register-instrument``: thin commands over :mod:`nightshift.obs`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from ._butler import _open, butler
from ._errors import cli_errors as _errors

__all__ = ["ingest_raws_cmd", "register_instrument_cmd"]


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int], Callable[[], None]] | None]:
    """A rich progress bar (one task per phase) on stderr, or None."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as bar:

        def phase(name: str, total: int) -> Callable[[], None]:
            task = bar.add_task(name, total=total)
            return lambda: bar.advance(task)

        yield phase


@butler.command("register-instrument")
@click.argument("repo")
@click.argument("names", nargs=-1, required=True)
@_errors
def register_instrument_cmd(repo: str, names: tuple[str, ...]) -> None:
    """Write the instrument, filter, band and detector records of NAMES (LSSTCam-sim, TestCam, HSC, DECam)."""
    from ..obs import get_instrument

    with _open(repo) as b:
        for name in names:
            new = get_instrument(name).register(b.registry)
            click.echo(f"{name}: {'registered' if new else 'already registered'}")


@butler.command("ingest-raws")
@click.argument("repo")
@click.argument("sources", nargs=-1, required=True)
@click.option("--transfer", "-t", type=click.Choice(["symlink", "copy", "hardlink", "direct"]), default="symlink",
              show_default=True, help="How files reach the datastore; 'direct' leaves them in place.")
@click.option("--run", help="RUN collection (default: <instrument>/raw/all).")
@click.option("--processes", "-j", type=int, default=None, help="Worker processes reading headers (default: CPUs).")
@click.option("--corrections-dir", type=click.Path(file_okay=False), default=None,
              help="Header corrections <instrument>-<obsid>.yaml (default: REPO/corrections if it exists).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@_errors
def ingest_raws_cmd(repo: str, sources: tuple[str, ...], transfer: str, run: str | None, processes: int | None,
                    corrections_dir: str | None, progress: bool | None) -> None:
    """Ingest raw FITS files (science and calibration) from SOURCES: files, directories, s3:// URIs or prefixes.

    \b
    Reads headers only. Bad files are listed with the reason and skipped; the
    exit code is 1 if any file was skipped. Re-ingesting a file is a no-op.
    Example:
      nightshift butler ingest-raws ./repo ./night/raw --transfer symlink -j 4
    """
    from ..obs import ingest_raws

    show = sys.stderr.isatty() if progress is None else progress
    with _open(repo) as b, _progress(show) as bar:
        report = ingest_raws(b, list(sources), run=run, transfer=transfer, processes=processes,
                             corrections_dir=corrections_dir, progress=bar)
    for name in report.instruments_registered:
        click.echo(f"registered instrument {name}")
    for _, reason in report.skipped:
        click.echo(f"skipped: {reason}", err=True)
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)
