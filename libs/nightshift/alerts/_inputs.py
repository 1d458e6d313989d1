"""Alert-ready tables of one (visit, detector) as one Arrow IPC file, in the object store or on disk.

The runner hands its outputs to the alert publisher this way: the ``dia.results``
event carries ``alert_inputs_uri``, the publisher reads the bundle back and builds
the alerts. The bundle is one Arrow IPC *file* with one record batch of two
columns, ``table`` (the table's name) and ``ipc`` (that table as an Arrow IPC
stream), so one GET fetches everything and pyarrow alone reads it. Tables:

``sources``, ``objects``, ``forced_sources``
    The new DiaSources, DiaObject versions and DiaForcedSources (APDB columns).
``preload_objects``, ``preload_sources``, ``preload_forced_sources``
    The field's preload (history), any of them absent.
``cutouts``
    ``diaSourceId`` and the three FITS cutouts (``difference``, ``science``,
    ``template``, binary, nullable).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa

from ._encoder import as_arrow
from ._errors import AlertInputsError
from ._packet import AlertBatch, AlertEncoder, Cutouts

__all__ = ["AlertInputs", "read_alert_inputs", "s3_client", "write_alert_inputs"]

_FORMAT = b"nightshift.alert-inputs/1"
_TABLES = ("sources", "objects", "forced_sources", "preload_objects", "preload_sources", "preload_forced_sources",
           "cutouts")


@dataclass(frozen=True)
class AlertInputs:
    """What the alert publisher needs to build one detector's alerts (see the module docstring)."""

    sources: pa.Table
    objects: pa.Table | None = None
    forced_sources: pa.Table | None = None
    preload_objects: pa.Table | None = None
    preload_sources: pa.Table | None = None
    preload_forced_sources: pa.Table | None = None
    cutouts: pa.Table | None = None

    @staticmethod
    def cutout_table(dia_source_ids: Sequence[int], cutouts: Sequence[Cutouts | None]) -> pa.Table:
        """The ``cutouts`` table of ``cutouts`` aligned with ``dia_source_ids``."""
        if len(dia_source_ids) != len(cutouts):
            raise AlertInputsError(f"{len(cutouts)} cutouts for {len(dia_source_ids)} DiaSources: align them")
        cols: dict[str, list[Any]] = {"difference": [], "science": [], "template": []}
        for c in cutouts:
            for name, values in cols.items():
                values.append(None if c is None else getattr(c, name))
        return pa.table({"diaSourceId": pa.array(list(dia_source_ids), pa.int64()),
                         **{k: pa.array(v, pa.binary()) for k, v in cols.items()}})

    def cutouts_list(self) -> list[Cutouts | None] | None:
        """The cutouts aligned with :attr:`sources` (``None`` where a source has none)."""
        if self.cutouts is None:
            return None
        by_id = {int(i): r for r, i in enumerate(self.cutouts.column("diaSourceId").to_numpy().tolist())}
        diff, sci, tmpl = (self.cutouts.column(c).to_pylist() for c in ("difference", "science", "template"))
        out: list[Cutouts | None] = []
        for i in self.sources.column("diaSourceId").to_numpy().tolist():
            r = by_id.get(int(i))
            out.append(None if r is None else Cutouts(diff[r], sci[r], tmpl[r]))
        return out

    def build(self, encoder: AlertEncoder) -> AlertBatch:
        """The alerts of these tables (:meth:`AlertEncoder.build`)."""
        return encoder.build(
            self.sources, self.objects,
            preload=(self.preload_objects, self.preload_sources, self.preload_forced_sources),
            forced_sources=self.forced_sources, cutouts=self.cutouts_list(),
        )

    def to_bytes(self) -> bytes:
        """The bundle as Arrow IPC file bytes."""
        names, blobs = [], []
        for name in _TABLES:
            table = getattr(self, name)
            if table is None:
                continue
            table = as_arrow(table)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            names.append(name)
            blobs.append(sink.getvalue().to_pybytes())
        columns: dict[str, pa.DataType] = {"table": pa.string(), "ipc": pa.large_binary()}
        bundle = pa.table({"table": pa.array(names, pa.string()), "ipc": pa.array(blobs, pa.large_binary())},
                          schema=pa.schema(columns, metadata={b"format": _FORMAT}))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, bundle.schema) as writer:
            writer.write_table(bundle)
        return bytes(sink.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "the bundle") -> AlertInputs:
        """Read :meth:`to_bytes`' output.

        Raises
        ------
        AlertInputsError
            Not a bundle, or it lacks the ``sources`` table.
        """
        try:
            bundle = pa.ipc.open_file(pa.py_buffer(data)).read_all()
            if (bundle.schema.metadata or {}).get(b"format") != _FORMAT:
                raise AlertInputsError(f"{where} is an Arrow file but not an alert-inputs bundle (no format tag)",
                                       permanent=True)
            tables: dict[str, pa.Table] = {}
            for name, blob in zip(bundle.column("table").to_pylist(), bundle.column("ipc").to_pylist(), strict=True):
                if name in _TABLES and blob is not None:
                    tables[name] = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
        except pa.ArrowInvalid as exc:
            raise AlertInputsError(f"{where} is not a readable Arrow IPC alert-inputs bundle: {exc}",
                                   permanent=True) from exc
        if "sources" not in tables:
            raise AlertInputsError(f"{where} has no 'sources' table: the runner must write the new DiaSources",
                                   permanent=True)
        return cls(**tables)


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client for ``endpoint_url``, ``$S3_ENDPOINT`` or AWS (credentials from the environment)."""
    import boto3

    endpoint = endpoint_url or os.environ.get("S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    return boto3.session.Session().client("s3", endpoint_url=endpoint)


def write_alert_inputs(inputs: AlertInputs, uri: str, *, endpoint_url: str | None = None,
                       s3: Any = None) -> str:
    """Store ``inputs`` at ``uri`` (``s3://bucket/key`` or a local path) and return the URI.

    The bucket must exist. Credentials come from the environment, as boto3 reads them;
    the endpoint from ``endpoint_url``, ``$S3_ENDPOINT`` or AWS.

    Raises
    ------
    AlertInputsError
        The object store or the file system refused the write.
    """
    data = inputs.to_bytes()
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        from botocore.exceptions import BotoCoreError, ClientError

        client = s3 or s3_client(endpoint_url)
        try:
            client.put_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise AlertInputsError(f"could not write the alert inputs to {uri}: {exc}") from exc
        return uri
    if parsed.scheme not in ("", "file"):
        raise AlertInputsError(f"alert inputs URI {uri!r}: use s3://bucket/key or a local path")
    path = Path(parsed.path if parsed.scheme == "file" else uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # readers never see half a bundle
    except OSError as exc:
        raise AlertInputsError(f"could not write the alert inputs to {path}: {exc}") from exc
    return uri


def read_alert_inputs(uri: str, *, endpoint_url: str | None = None, s3: Any = None) -> AlertInputs:
    """Read the bundle :func:`write_alert_inputs` stored at ``uri``.

    Raises
    ------
    AlertInputsError
        The object does not exist, cannot be fetched, or is not a bundle. ``permanent``
        on the exception tells a missing or corrupt bundle (retrying cannot help) from a failed fetch.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        from botocore.exceptions import BotoCoreError, ClientError

        client = s3 or s3_client(endpoint_url)
        try:
            data = client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            missing = code in ("NoSuchKey", "NoSuchBucket", "404")
            raise AlertInputsError(f"could not read the alert inputs at {uri}: {exc}", permanent=missing) from exc
        except BotoCoreError as exc:
            raise AlertInputsError(f"could not read the alert inputs at {uri}: {exc}") from exc
        return AlertInputs.from_bytes(data, uri)
    if parsed.scheme not in ("", "file"):
        raise AlertInputsError(f"alert inputs URI {uri!r}: use s3://bucket/key or a local path", permanent=True)
    path = Path(parsed.path if parsed.scheme == "file" else uri)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise AlertInputsError(f"no alert inputs at {path}", permanent=True) from exc
    except OSError as exc:
        raise AlertInputsError(f"could not read the alert inputs at {path}: {exc}") from exc
    return AlertInputs.from_bytes(data, str(path))
