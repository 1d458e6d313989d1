"""``nightshift sim ...``: the camera simulator (thin commands over :mod:`nightshift.obs.sim`)."""

from __future__ import annotations

import click

from ._butler import _open
from ._errors import cli_errors as _errors
from ._obs import _progress

__all__ = ["sim"]


def _detectors(text: str) -> list[int]:
    """``0..188`` or ``90,94,95`` (or both, comma separated)."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition("..")
        out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return out


@click.group()
def sim() -> None:
    """Simulate raws with known truth: a night of visits, master calibrations, templates.

    \b
      nightshift sim night ./night --visits 10 --detectors 90..98 --detector-size 1024
      nightshift butler ingest-raws ./repo ./night/raw
      nightshift sim calibs ./repo --detectors 90..98 --detector-size 1024
      nightshift sim templates ./repo --patch 1/37 --band r
    """


@sim.command("night")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--visits", "-n", type=int, required=True, help="Number of science visits (fields observed in pairs).")
@click.option("--instrument", default="LSSTCam-sim", show_default=True, type=click.Choice(["LSSTCam-sim", "TestCam"]))
@click.option("--detectors", default="0..188", show_default=True, help="Detectors to render: 0..188 or 90,94.")
@click.option("--detector-size", type=int, default=4096, show_default=True, help="Pixels per detector side.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sky and of every random effect.")
@click.option("--day-obs", type=int, default=20261206, show_default=True)
@click.option("--ra", type=float, default=150.0, show_default=True, help="Centre of the fields (deg).")
@click.option("--dec", type=float, default=2.0, show_default=True)
@click.option("--processes", "-j", type=int, default=1, show_default=True)
@click.option("--progress/--no-progress", default=True)
@_errors
def night_cmd(out: str, visits: int, instrument: str, detectors: str, detector_size: int, seed: int, day_obs: int,
              ra: float, dec: float, processes: int, progress: bool) -> None:
    """Write a night's raws, truth.parquet and next_visit.jsonl into OUT."""
    from ..obs.sim import plan_night, write_night

    dets = _detectors(detectors)
    plan = plan_night(visits, instrument=instrument, day_obs=day_obs, seed=seed, ra=ra, dec=dec)
    with _progress(progress) as bar:
        tick = bar("render", len(plan) * len(dets)) if bar else None
        result = write_night(out, plan, dets, seed=seed, detector_size=detector_size, processes=processes, tick=tick)
    click.echo(f"wrote {len(result['raws'])} raws, {result['transients']} transient truth rows, "
               f"{len(plan)} nextVisit payloads to {out}")


@sim.command("calibs")
@click.argument("repo")
@click.option("--instrument", default="LSSTCam-sim", show_default=True, type=click.Choice(["LSSTCam-sim", "TestCam"]))
@click.option("--detectors", default="0..188", show_default=True)
@click.option("--detector-size", type=int, default=4096, show_default=True)
@click.option("--filters", default="g_6,r_57,i_39", show_default=True, help="Physical filters of the flats.")
@click.option("--begin", default="2026-01-01", show_default=True, help="Start of validity (UTC).")
@click.option("--end", default="2027-12-31", show_default=True, help="End of validity (UTC).")
@click.option("--seed", type=int, default=0, show_default=True)
@_errors
def calibs_cmd(repo: str, instrument: str, detectors: str, detector_size: int, filters: str, begin: str, end: str,
               seed: int) -> None:
    """Write master bias and flats and certify them in the CALIBRATION collection <instrument>/calib."""
    from ..obs.sim import certify_master_calibs

    with _open(repo) as b:
        refs = certify_master_calibs(b, instrument, _detectors(detectors), filters.split(","), begin=begin, end=end,
                                     detector_size=detector_size, seed=seed)
    click.echo(f"certified {len(refs)} master calibrations in {instrument}/calib ({begin} .. {end})")


@sim.command("templates")
@click.argument("repo")
@click.option("--skymap", "skymap_name", default="sim_healpix", show_default=True)
@click.option("--tract-order", type=int, default=3, show_default=True)
@click.option("--patch-levels", type=int, default=5, show_default=True, help="Patches are HEALPix order tract+levels.")
@click.option("--patch", "patches", multiple=True, required=True, metavar="TRACT/PATCH")
@click.option("--band", "bands", multiple=True, default=("r",), show_default=True)
@click.option("--pixel-scale", type=float, default=0.2, show_default=True, help="arcsec per template pixel")
@click.option("--seed", type=int, default=0, show_default=True)
@_errors
def templates_cmd(repo: str, skymap_name: str, tract_order: int, patch_levels: int, patches: tuple[str, ...],
                  bands: tuple[str, ...], pixel_scale: float, seed: int) -> None:
    """Render deep templates of the static sky for the given patches, as template_coadd datasets."""
    from ..obs.sim import make_templates
    from ..sky import HealpixSkyMap

    pairs = [tuple(int(v) for v in p.split("/")) for p in patches]
    skymap = HealpixSkyMap(skymap_name, tract_order=tract_order, patch_levels=patch_levels,
                           tracts=tuple(sorted({t for t, _ in pairs})))
    with _open(repo) as b:
        refs = make_templates(b, skymap, [(t, p) for t, p in pairs], list(bands), seed=seed, pixel_scale=pixel_scale)
    click.echo(f"wrote {len(refs)} template_coadd datasets")
