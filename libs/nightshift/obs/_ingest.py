"""Raw ingest: files -> exposure, visit and day_obs records plus ``raw`` datasets (REQ-0008, REQ-0009).

Steps
-----
1. In parallel over files (worker processes), read each file's headers only,
   apply header corrections (recorded), translate, and check the instrument,
   detector and filter. A bad file becomes a skip with its path and reason.
2. Register the instruments met (idempotent), then insert the ``day_obs``,
   ``group``, ``exposure`` and (science) ``visit`` records with their regions:
   from the boresight, sky angle and camera layout for the simulated cameras,
   otherwise the hull of the corners that the raws' WCS give.
3. In batches: place each file (copy, hard link, symlink, in place), write its
   datastore record (formatter :class:`RawFormatter` with the corrections),
   then insert the datasets into the registry in one transaction; if that
   fails the batch's new files are removed again.

Idempotent: a raw is identified by its data ID; the digest of its headers
tells whether the same content was ingested already (a no-op) or different
content with the same data ID (a conflict, skipped and reported).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from ..butler import Butler, DatasetRef, DatasetType
from ..butler.datastores import FileDatastore
from ._exceptions import MissingPointingError, ObsError
from ._ingest_parse import ParsedFile, ParsedRaw, clear_exposure_cache, expand_sources, parse_file
from ._instruments import get_instrument
from ._raw_formatter import RawFormatter
from ._sky import convex_hull_region
from ._transfer import place_file, unplace_file

__all__ = ["RAW_DATASET_TYPE", "IngestReport", "ingest_raws"]

#: The dataset type of ingested raws (science and calibration frames alike).
RAW_DATASET_TYPE = DatasetType(
    "raw", ("instrument", "exposure", "detector"), "Exposure",
    metadata={"header_digest": "string", "corrections": "string", "source": "string"},
)


@dataclass
class IngestReport:
    """What an ingest did: datasets ingested, files already there, files skipped with the reason."""

    ingested: list[DatasetRef] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    instruments_registered: list[str] = field(default_factory=list)
    #: source -> the raw datasets it holds (ingested now or before), once they are in the registry
    by_source: dict[str, list[DatasetRef]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True if nothing was skipped."""
        return not self.skipped

    def summary(self) -> str:
        """One line: counts of ingested, unchanged and skipped raws."""
        return (f"ingested {len(self.ingested)} raw(s), {len(self.unchanged)} already ingested (unchanged), "
                f"{len(self.skipped)} skipped")


def _parse_all(sources: list[str], search_path: list[str], processes: int,
               tick: Callable[[], None]) -> list[ParsedFile]:
    clear_exposure_cache()  # corrections may have changed since the last ingest; workers fork from here
    if processes <= 1 or len(sources) < 64:
        out = []
        for s in sources:
            out.append(parse_file(s, search_path))
            tick()
        return out
    results = []
    chunk = max(1, min(64, len(sources) // (processes * 8)))
    with ProcessPoolExecutor(max_workers=processes) as pool:
        for parsed in pool.map(parse_file, sources, repeat(search_path), chunksize=chunk):
            results.append(parsed)
            tick()
    return results


def _regions(raws: list[ParsedRaw], report: IngestReport) -> list[ParsedRaw]:
    """Fill in the visit regions per exposure; raws of science exposures with no pointing are skipped."""
    by_exposure: dict[tuple[str, Any], list[ParsedRaw]] = defaultdict(list)
    for raw in raws:
        by_exposure[(raw.instrument, raw.data_id["exposure"])].append(raw)
    keep = []
    for (inst_name, _), group in by_exposure.items():
        visit = group[0].records.get("visit")
        if visit is None:
            keep.extend(group)
            continue
        corners = [c for r in group for c in (r.corners or [])]
        if get_instrument(inst_name).layout_regions and group[0].layout_region:
            region = group[0].layout_region
        elif corners:
            region = convex_hull_region(corners)
        elif group[0].layout_region:
            region = group[0].layout_region
        else:
            for r in group:
                report.skipped.append((r.source, str(MissingPointingError(
                    f"{r.source}[{r.hdu}]: science exposure {r.data_id['exposure']} has no celestial WCS "
                    "(CTYPE1/2) and no boresight (the translator found no tracking RA/Dec)"))))
            continue
        for r in group:
            r.records["visit"] = {**visit, "region": region}
        keep.extend(group)
    return keep


def _insert_dimension_records(butler: Butler, raws: list[ParsedRaw]) -> None:
    per_element: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = defaultdict(dict)
    for raw in raws:
        for element, rec in raw.records.items():
            per_element[element][(rec["instrument"], rec.get("id", rec.get("name")))] = rec
    reg = butler.registry
    with reg.transaction():
        for element in ("day_obs", "group", "exposure", "visit"):
            reg.insert_dimension_records(element, per_element[element].values(), skip_existing=True)
        visits = per_element["visit"]
        if visits:
            have = {(r["instrument"], r["exposure"], r["visit"]) for r in reg.query_join_rows("visit_definition")}
            rows = [{"instrument": i, "exposure": v, "visit": v} for (i, v) in visits if (i, v, v) not in have]
            if rows:
                reg.insert_join_rows("visit_definition", rows)


def _write_batch(butler: Butler, batch: list[ParsedRaw], run: str, transfer: str, report: IngestReport) -> None:
    store = butler.datastore
    if not isinstance(store, FileDatastore):
        raise ObsError(f"raw ingest needs a file datastore (POSIX or S3), not {type(store).__name__}")
    placed: list[tuple[DatasetRef, str, bool]] = []
    refs: list[DatasetRef] = []
    metadata: list[dict[str, Any]] = []
    fresh: list[DatasetRef] = []
    sources: list[str] = []
    with store.batch():
        for raw in batch:
            ref = DatasetRef(RAW_DATASET_TYPE, raw.data_id, run)
            options = {"hdu": raw.hdu, "corrections": raw.corrections, "digest": raw.digest, "source": raw.source}
            try:
                if store.exists(ref):
                    old = store.record(ref).formatter_options
                    if old.get("digest") != raw.digest:
                        raise ObsError(
                            f"{raw.source}[{raw.hdu}]: conflict: raw {raw.data_id} was ingested from "
                            f"{old.get('source')} with other content (header digest {old.get('digest')} != "
                            f"{raw.digest}); remove that dataset first if this file replaces it")
                    report.unchanged.append(raw.source)
                else:
                    rel, created = place_file(store, raw.source, ref, transfer)
                    placed.append((ref, rel, created))
                    store.adopt(ref, rel, formatter=RawFormatter.name, formatter_options=options, size=raw.size)
                    fresh.append(ref)
            except ObsError as exc:
                report.skipped.append((raw.source, str(exc)))
                continue
            except OSError as exc:
                report.skipped.append((raw.source, f"{raw.source}: transfer failed: {exc}"))
                continue
            refs.append(ref)
            sources.append(raw.source)
            metadata.append({"header_digest": raw.digest, "corrections": json.dumps(raw.corrections, default=str),
                             "source": raw.source})
    try:
        with butler.registry.transaction():
            butler.registry.insert_datasets(RAW_DATASET_TYPE, [r.data_id for r in refs], run, metadata=metadata,
                                            skip_existing=True)
    except BaseException:
        for ref, rel, created in placed:  # in-place objects keep their record: the next ingest repairs the row
            if created:
                with contextlib.suppress(Exception):
                    store.remove(ref)
                unplace_file(store, rel)
        raise
    report.ingested.extend(fresh)
    for source, ref in zip(sources, refs, strict=True):
        report.by_source.setdefault(source, []).append(ref)


def ingest_raws(
    butler: Butler,
    sources: Sequence[str | os.PathLike[str]],
    *,
    run: str | None = None,
    transfer: str = "symlink",
    processes: int | None = None,
    corrections_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 1000,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> IngestReport:
    """Ingest raw files (science and calibration frames) into a repository.

    Parameters
    ----------
    butler : Butler
        The repository (file datastore, POSIX or S3).
    sources : sequence of str or path
        Files, directories (searched for ``*.fits``), ``s3://bucket/key`` or ``s3://bucket/prefix/``.
    run : str, optional
        RUN collection; ``<instrument>/raw/all`` by default.
    transfer : {"symlink", "copy", "hardlink", "direct"}
        How files reach the datastore (``direct``: in place).
    processes : int, optional
        Worker processes reading headers (``os.cpu_count()`` by default).
    corrections_dir : path, optional
        Repository-local header corrections (``<instrument>-<obsid>.yaml``); ``<repo>/corrections``
        by default when it exists. Searched before the translator's own.
    batch_size : int
        Raws per registry transaction.
    progress : callable, optional
        ``progress(phase, total)`` returns a callable to call once per item done (e.g. a rich bar).

    Returns
    -------
    IngestReport
        Never raises for a bad file: it is in ``report.skipped`` with its path and reason.
    """
    files = expand_sources(sources)
    search = [str(corrections_dir)] if corrections_dir else []
    if not search and (Path(butler.root) / "corrections").is_dir():
        search = [str(Path(butler.root) / "corrections")]
    tick = progress("headers", len(files)) if progress else (lambda: None)
    parsed = _parse_all(files, search, processes or os.cpu_count() or 1, tick)
    report = IngestReport()
    raws: list[ParsedRaw] = []
    for pf in parsed:
        if pf.error is not None:
            report.skipped.append((pf.source, pf.error))
        raws.extend(pf.raws)
    butler.register_dataset_type(RAW_DATASET_TYPE)
    for name in sorted({r.instrument for r in raws}):
        if get_instrument(name).register(butler.registry):
            report.instruments_registered.append(name)
    raws = _regions(raws, report)
    _insert_dimension_records(butler, raws)
    seen: dict[tuple[Any, ...], str] = {}
    unique: list[ParsedRaw] = []
    for raw in raws:
        key = tuple(sorted(raw.data_id.items()))
        if key in seen:
            report.skipped.append((raw.source, f"{raw.source}[{raw.hdu}]: conflict: raw {raw.data_id} also comes "
                                               f"from {seen[key]} in this ingest"))
            continue
        seen[key] = raw.source
        unique.append(raw)
    tick = progress("datasets", len(unique)) if progress else (lambda: None)
    by_run: dict[str, list[ParsedRaw]] = defaultdict(list)
    for raw in unique:
        by_run[run or f"{raw.instrument}/raw/all"].append(raw)
    for run_name, items in by_run.items():
        butler.registry.register_run(run_name)
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            _write_batch(butler, batch, run_name, transfer, report)
            for _ in batch:
                tick()
    return report


def skipped_lines(report: IngestReport) -> Iterable[str]:
    """``path: reason`` lines of the skipped files."""
    for _, reason in report.skipped:
        yield reason
