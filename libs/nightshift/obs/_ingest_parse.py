"""One file -> its raws' data IDs and dimension records (runs in worker processes; headers only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._exceptions import ObsError, RawHeaderError, UnknownDetectorError
from ._headers import read_raw_headers
from ._instruments import get_instrument
from ._sky import celestial_wcs
from ._translate import apply_corrections, find_translator, quick_translate, translate

__all__ = ["ParsedFile", "ParsedRaw", "clear_exposure_cache", "expand_sources", "parse_file"]


@dataclass
class ParsedRaw:
    """What ingest needs of one raw: where it is, who it is, and the records of its exposure."""

    source: str
    hdu: int
    digest: str
    size: int
    instrument: str
    data_id: dict[str, int | str]
    observation_type: str
    records: dict[str, dict[str, Any]]
    corners: list[tuple[float, float]] | None
    layout_region: list[tuple[float, float]] | None
    corrections: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ParsedFile:
    """The raws of one file, or why it is skipped."""

    source: str
    raws: list[ParsedRaw] = field(default_factory=list)
    error: str | None = None


#: Per-process cache: (instrument, exposure id) -> (records, layout region) of exposures already translated.
_EXPOSURES: dict[tuple[str, int], tuple[dict[str, dict[str, Any]], list[tuple[float, float]] | None]] = {}


def clear_exposure_cache() -> None:
    """Forget the exposures translated so far (called at the start of each ingest)."""
    _EXPOSURES.clear()


def _wcs_corners(header: dict[str, Any]) -> list[tuple[float, float]] | None:
    wcs = celestial_wcs(header)
    nx, ny = int(header.get("NAXIS1", 0)), int(header.get("NAXIS2", 0))
    if wcs is None or nx <= 0 or ny <= 0:
        return None
    r, d = wcs.all_pix2world([-0.5, nx - 0.5, nx - 0.5, -0.5], [-0.5, -0.5, ny - 0.5, ny - 0.5], 0)
    return [(float(a) % 360.0, float(b)) for a, b in zip(r, d, strict=True)]


def parse_file(source: str, search_path: Sequence[str] = ()) -> ParsedFile:
    """Read, correct and translate the headers of one file; never raises for a bad file.

    Parameters
    ----------
    source : str
        Local path or ``s3://`` URI.
    search_path : sequence of str
        Directories of repository-local header corrections (searched first).
    """
    out = ParsedFile(source)
    try:
        for raw in read_raw_headers(source):
            translator = find_translator(raw.header, source)
            apply_corrections(raw, translator, search_path)
            quick = quick_translate(raw, translator)
            if quick.exposure_id is None or quick.detector_num is None:
                raise RawHeaderError(f"{source}[{raw.hdu}]: the {translator.name} translator found no exposure id "
                                     "or detector number in the header")
            exposure_id, detector_num = int(quick.exposure_id), int(quick.detector_num)
            instrument = get_instrument(str(quick.instrument))
            try:
                instrument.detector(detector_num)
            except UnknownDetectorError as exc:
                raise UnknownDetectorError(f"{source}[{raw.hdu}]: {exc}") from None
            key = (instrument.name, exposure_id)
            cached = _EXPOSURES.get(key)
            obs = None
            if cached is None:
                obs = translate(raw, translator)
                instrument.physical_filter(str(obs.physical_filter))
                records = instrument.exposure_records(obs, raw.header, None)
                layout = None
                visit = records.get("visit")
                if visit is not None and visit["boresight_ra"] is not None:
                    layout = instrument.camera.sky_region(visit["boresight_ra"], visit["boresight_dec"],
                                                          visit["sky_angle"] or 0.0)
                cached = _EXPOSURES[key] = (records, layout)
                if len(_EXPOSURES) > 10_000:
                    _EXPOSURES.pop(next(iter(_EXPOSURES)))
            records, layout = cached
            data_id: dict[str, int | str] = {"instrument": instrument.name, "exposure": exposure_id,
                                             "detector": detector_num}
            out.raws.append(ParsedRaw(
                source=source, hdu=raw.hdu, digest=raw.digest, size=raw.size, instrument=instrument.name,
                data_id=data_id, observation_type=records["exposure"]["observation_type"], records=records,
                corners=None if "visit" not in records or instrument.layout_regions
                else _wcs_corners(raw.header), layout_region=layout,
                corrections=raw.corrections,
            ))
    except ObsError as exc:
        out.raws, out.error = [], str(exc) if source in str(exc) else f"{source}: {exc}"
    except (OSError, ValueError, KeyError, TypeError) as exc:  # anything a damaged header can provoke
        out.raws, out.error = [], f"{source}: {type(exc).__name__}: {exc}"
    return out


def expand_sources(sources: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Files (and FITS files in directories, recursively; ``s3://bucket/prefix/`` listings) in order."""
    out: list[str] = []
    for src in sources:
        s = str(src)
        if s.startswith("s3://") and s.endswith("/"):
            import boto3

            bucket, _, prefix = s[5:].partition("/")
            client = boto3.session.Session().client("s3", endpoint_url=os.environ.get("S3_ENDPOINT"))
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                out.extend(f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", [])
                           if o["Key"].endswith((".fits", ".fits.fz", ".fit")))
        elif not s.startswith("s3://") and Path(s).is_dir():
            out.extend(str(p) for p in sorted(Path(s).rglob("*")) if p.name.endswith((".fits", ".fits.fz", ".fit")))
        else:
            out.append(s if s.startswith("s3://") else str(Path(s).absolute()))
    return out
