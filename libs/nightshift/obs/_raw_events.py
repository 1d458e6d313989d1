"""Raws as Alert Production events: ``raw.arrived`` from a file, and the ingest behind ``raw.ingested``.

:func:`describe_raw` reads a raw's headers (never its pixels) and hashes its
bytes, giving the ``raw.arrived`` events an observatory (or the raw watcher)
announces. :func:`ingest_arrived` ingests announced raws with
:func:`ingest_raws` and says, per file, which ``raw`` datasets it holds or
why it cannot be ingested. Both take local paths and ``s3://bucket/key`` URIs.

Idempotent: ingesting the same file again finds its dataset (same
deterministic id) and reports it again; a different file for the same data
ID is a conflict, reported for that file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import RawHeaderError, RawIngestError

if TYPE_CHECKING:
    from ..butler import Butler, DatasetRef
    from ..events import RawArrived, RawIngested

__all__ = ["IngestedRaws", "describe_raw", "ingest_arrived", "raw_event_key", "raw_ingested_events"]

_CHUNK = 1 << 20


def raw_event_key(instrument: str, detector: int) -> str:
    """The Kafka key of per-detector events: ``"{instrument}/{detector}"``."""
    return f"{instrument}/{detector}"


def _s3(s3_client: Any) -> Any:
    if s3_client is not None:
        return s3_client
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=os.environ.get("S3_ENDPOINT"))


def _sha256(uri: str, s3_client: Any) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    try:
        if uri.startswith("s3://"):
            bucket, _, key = uri[len("s3://"):].partition("/")
            body = _s3(s3_client).get_object(Bucket=bucket, Key=key)["Body"]
            while chunk := body.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
        else:
            with open(uri, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
                    size += len(chunk)
    except Exception as exc:  # noqa: BLE001 - OSError or botocore's error tree; the message says which
        raise RawHeaderError(f"{uri}: cannot read the file: {exc}") from exc
    return h.hexdigest(), size


def describe_raw(uri: str, *, s3_client: Any = None, observed_at: datetime | None = None) -> list[RawArrived]:
    """The ``raw.arrived`` events of one raw file (one per detector it holds; one for a simulated raw).

    Parameters
    ----------
    uri : str
        Local path or ``s3://bucket/key``.
    s3_client : botocore client, optional
        For ``s3://`` URIs; one from ``$S3_ENDPOINT`` by default.
    observed_at : datetime, optional
        When the file was seen; now by default.

    Raises
    ------
    ObsError
        The headers cannot be read or translated (:class:`RawHeaderError`, unknown instrument, detector, filter).
    """
    from ..events import RawArrived
    from ._ingest_parse import expand_sources, parse_file

    source = expand_sources([uri])[0]
    parsed = parse_file(source)
    if parsed.error is not None:
        raise RawHeaderError(parsed.error)
    checksum, size = _sha256(source, s3_client)
    when = observed_at or datetime.now(UTC)
    events = []
    for raw in parsed.raws:
        exposure = raw.records["exposure"]
        events.append(RawArrived(
            instrument=raw.instrument, group_id=str(exposure.get("group") or raw.data_id["exposure"]),
            visit=int(raw.data_id["exposure"]), detector=int(raw.data_id["detector"]), snap=0, uri=source,
            size_bytes=size, checksum=checksum, observed_at=when,
        ))
    return events


@dataclass
class IngestedRaws:
    """What :func:`ingest_arrived` did, per announced file.

    Attributes
    ----------
    datasets : dict
        source -> its ``raw`` datasets (now in the registry, whether ingested now or before).
    failed : dict
        source -> why it cannot be ingested (a :class:`RawIngestError` to raise for it).
    new : set
        sources of which at least one dataset was ingested by this call (not before).
    """

    datasets: dict[str, list[DatasetRef]] = field(default_factory=dict)
    failed: dict[str, RawIngestError] = field(default_factory=dict)
    new: set[str] = field(default_factory=set)

    def refs_for(self, uri: str) -> list[DatasetRef]:
        """The datasets of ``uri`` as it was announced (a path, ``file://`` or ``s3://`` URI).

        Raises
        ------
        RawIngestError
            Why it could not be ingested.
        """
        source = _normalize(uri)
        if source in self.failed:
            raise self.failed[source]
        refs = self.datasets.get(source)
        if refs is None:
            raise RawIngestError(f"{uri} was not part of this ingest")
        return refs

    def is_new(self, uri: str) -> bool:
        """Whether this ingest (not an earlier one) stored a dataset of ``uri``."""
        return _normalize(uri) in self.new


def _normalize(uri: str) -> str:
    return uri if uri.startswith("s3://") else str(Path(uri.removeprefix("file://")).absolute())


def ingest_arrived(butler: Butler, uris: Sequence[str], *, run: str | None = None,
                   transfer: str = "copy") -> IngestedRaws:
    """Ingest announced raw files into ``butler`` (headers only; one call for a batch of announcements).

    Parameters
    ----------
    butler : Butler
        The repository (file datastore, POSIX or S3).
    uris : sequence of str
        Local paths (or ``file://``) or ``s3://bucket/key`` URIs; duplicates are ingested once.
    run : str, optional
        RUN collection; ``<instrument>/raw/all`` by default.
    transfer : {"copy", "symlink", "hardlink", "direct"}
        ``copy`` (default) keeps the repository independent of the drop area, which may be cleaned up.

    Returns
    -------
    IngestedRaws
        Every normalized URI is in ``datasets`` or in ``failed``. Errors of the repository itself
        (database, storage) are raised, not reported per file.
    """
    from ._ingest import ingest_raws

    sources = list(dict.fromkeys(_normalize(u) for u in uris))
    report = ingest_raws(butler, sources, run=run, transfer=transfer, processes=1)
    out = IngestedRaws()
    for source, reason in report.skipped:
        out.failed.setdefault(source, RawIngestError(reason))
    fresh = {ref.id for ref in report.ingested}
    for source in sources:
        refs = report.by_source.get(source)
        if refs and source not in out.failed:
            out.datasets[source] = refs
            if any(r.id in fresh for r in refs):
                out.new.add(source)
        elif source not in out.failed:
            out.failed[source] = RawIngestError(f"{source}: holds no raw the ingest could place")
    return out


def raw_ingested_events(butler: Butler, refs: Sequence[DatasetRef]) -> list[RawIngested]:
    """The ``raw.ingested`` events of ingested raws (visit = exposure: simulated and LSST-like raws)."""
    from ..events import RawIngested

    events = []
    for ref in refs:
        data_id = ref.data_id
        events.append(RawIngested(
            instrument=str(data_id["instrument"]), visit=int(data_id["exposure"]), detector=int(data_id["detector"]),
            dataset_id=ref.id, run=ref.run, uri=butler.datastore.get_uri(ref),
        ))
    return events
