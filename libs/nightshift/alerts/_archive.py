"""The alert archive: each visit's alerts in the object store as Avro object container files, with indexes.

Layout under ``s3://{bucket}/{prefix}/``::

    v11_1/visit=00001234/detector=042.avro        Avro object container file (the format of
                                                  lsst-alert-packet's Schema.store_alerts), one block per alert
    v11_1/visit=00001234/detector=042.index.json  {"diaSourceId": [...], "offset": [...], "length": [...]}

*By visit*: the objects under ``visit=V/``. *By diaSourceId*: nightshift's
source ids carry their visit and detector (``nightshift.apdb.split_source_ids``),
so an id names its index file, and the index gives the byte range of its
block: one ranged GET returns the alert.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..apdb import split_source_ids
from ._encoder import encode_long
from ._errors import ArchiveError
from ._packet import AlertBatch
from ._schema import AlertSchema

__all__ = ["AlertArchive", "ArchivedFile", "container_file", "read_container_blocks"]

_MAGIC = b"Obj\x01"


def _long(v: int) -> bytes:
    body, n = encode_long(np.array([v], dtype=np.int64))
    return bytes(body[0, : int(n[0])])


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the zig-zag varint at ``pos``."""
    z = shift = 0
    while True:
        b = data[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (z >> 1) ^ -(z & 1), pos


def _avro_bytes(b: bytes) -> bytes:
    return _long(len(b)) + b


def container_file(
    schema: AlertSchema, bodies: Sequence[bytes | memoryview], codec: str = "null"
) -> tuple[bytes, list[int], list[int]]:
    """An Avro object container file of ``bodies``, one block per alert.

    Returns
    -------
    tuple
        (file bytes, byte offset of each alert's block, length of each block
        including its 16-byte sync marker).
    """
    if codec not in ("null", "deflate"):
        raise ValueError(f"codec {codec!r}: use 'null' or 'deflate'")
    sync = os.urandom(16)
    meta = [(b"avro.schema", schema.json().encode()), (b"avro.codec", codec.encode())]
    header = _MAGIC + _long(len(meta)) + b"".join(_avro_bytes(k) + _avro_bytes(v) for k, v in meta) + b"\x00" + sync
    parts = [header]
    offsets, lengths = [], []
    pos = len(header)
    one = _long(1)
    for body in bodies:
        data = body if codec == "null" else zlib.compress(body, 1)[2:-4]  # raw deflate, as Avro specifies
        block = b"".join((one, _long(len(data)), data, sync))
        offsets.append(pos)
        lengths.append(len(block))
        parts.append(block)
        pos += len(block)
    return b"".join(parts), offsets, lengths


def read_container_blocks(block: bytes, codec: str = "null") -> bytes:
    """The Avro body of one one-alert block (as sliced by the index)."""
    count, pos = _read_long(block, 0)
    size, start = _read_long(block, pos)
    if count != 1:
        raise ArchiveError(f"an archive block holds {count} alerts; nightshift writes one per block")
    data = block[start : start + size]
    return data if codec == "null" else zlib.decompress(data, -15)


@dataclass(frozen=True)
class ArchivedFile:
    """One archived (visit, detector): the container file's key, its index's key, how many alerts."""

    key: str
    index_key: str
    visit: int
    detector: int
    alerts: int
    bytes: int


class AlertArchive:
    """Archives alert batches to an S3 bucket (any S3 API: AWS, MinIO, S3Proxy).

    Parameters
    ----------
    bucket : str
    prefix : str
    endpoint_url : str, optional
        Default ``$S3_ENDPOINT`` (as ``nightshift dev env`` exports) or AWS.
    codec : str
        ``"null"`` (as Rubin's ``store_alerts``) or ``"deflate"``.
    create_bucket : bool
        Create the bucket when it does not exist.

    Credentials come from the environment (``AWS_ACCESS_KEY_ID``, ...), as boto3 reads them.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "alerts",
        endpoint_url: str | None = None,
        codec: str = "null",
        create_bucket: bool = True,
    ) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or os.environ.get("S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
        self.codec = codec
        self._s3: Any = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url)
        self._create = create_bucket
        self._bucket_ready = False

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            where = self.endpoint_url or "AWS"
            raise ArchiveError(f"S3 {what} failed at {where} (bucket {self.bucket}): {exc}") from exc

    def _ensure_bucket(self) -> None:
        if self._bucket_ready or not self._create:
            return
        from botocore.exceptions import ClientError

        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._call("create_bucket", self._s3.create_bucket, Bucket=self.bucket)
        self._bucket_ready = True

    def _dir(self, schema: AlertSchema, visit: int) -> str:
        return f"{self.prefix}/v{schema.major}_{schema.minor}/visit={visit:08d}"

    def store(self, batch: AlertBatch) -> list[ArchivedFile]:
        """Archive ``batch``: one container file and one index per (visit, detector) it holds."""
        self._ensure_bucket()
        out = []
        pairs = np.stack([batch.visits, batch.detectors], axis=1) if len(batch) else np.zeros((0, 2), np.int64)
        for visit, detector in np.unique(pairs, axis=0).tolist():
            rows = np.flatnonzero((batch.visits == visit) & (batch.detectors == detector)).tolist()
            bodies = batch.bodies()
            data, offsets, lengths = container_file(batch.schema, [bodies[i] for i in rows], self.codec)
            key = f"{self._dir(batch.schema, visit)}/detector={detector:03d}.avro"
            index = {
                "schema_id": batch.schema.schema_id,
                "codec": self.codec,
                "object": key,
                "diaSourceId": [int(batch.dia_source_ids[i]) for i in rows],
                "offset": offsets,
                "length": lengths,
            }
            index_key = key[: -len(".avro")] + ".index.json"
            self._call("put_object", self._s3.put_object, Bucket=self.bucket, Key=key, Body=data)
            self._call("put_object", self._s3.put_object, Bucket=self.bucket, Key=index_key,
                       Body=json.dumps(index).encode())
            out.append(ArchivedFile(key, index_key, int(visit), int(detector), len(rows), len(data)))
        return out

    def files(self, visit: int, schema: AlertSchema | None = None) -> list[str]:
        """Keys of the container files of ``visit`` (the index by visit)."""
        schema = schema or AlertSchema.load()
        prefix = self._dir(schema, visit) + "/"
        keys: list[str] = []
        token: dict[str, Any] = {}
        while True:
            page = self._call("list_objects_v2", self._s3.list_objects_v2, Bucket=self.bucket, Prefix=prefix, **token)
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".avro")]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def visit(self, visit: int, schema: AlertSchema | None = None) -> Iterator[bytes]:
        """The Avro bodies of every archived alert of ``visit``."""
        for key in self.files(visit, schema):
            index = self._index(key[: -len(".avro")] + ".index.json")
            data = self._call("get_object", self._s3.get_object, Bucket=self.bucket, Key=key)["Body"].read()
            for off, length in zip(index["offset"], index["length"], strict=True):
                yield read_container_blocks(data[off : off + length], index["codec"])

    def fetch(self, dia_source_id: int, schema: AlertSchema | None = None) -> bytes:
        """The Avro body of one archived alert, by its ``diaSourceId`` (one index read, one ranged GET).

        Raises
        ------
        ArchiveError
            The alert is not in the archive.
        """
        schema = schema or AlertSchema.load()
        v, d, _ = (int(x[0]) for x in split_source_ids([dia_source_id]))
        index_key = f"{self._dir(schema, v)}/detector={d:03d}.index.json"
        index = self._index(index_key)
        try:
            i = index["diaSourceId"].index(int(dia_source_id))
        except ValueError:
            raise ArchiveError(f"diaSourceId {dia_source_id} is not in {index_key}") from None
        off, length = index["offset"][i], index["length"][i]
        rng = f"bytes={off}-{off + length - 1}"
        block = self._call("get_object", self._s3.get_object, Bucket=self.bucket, Key=index["object"], Range=rng)
        return read_container_blocks(block["Body"].read(), index["codec"])

    def _index(self, key: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise ArchiveError(f"no archive index s3://{self.bucket}/{key} ({exc})") from exc
        result: dict[str, Any] = json.loads(body)
        return result
