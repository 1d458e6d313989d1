"""The S3 storage backend of :class:`FileDatastore` (boto3; DMS-MWBT-REQ-0031, 0040, 0065).

Works against any S3-compatible server (S3Proxy locally, MinIO, AWS).
Credentials come only from the environment / boto3's usual chain and are never
logged. Transient failures (connection refused, timeouts, 5xx, throttling)
are retried by botocore's *standard* retry mode with exponential backoff and
jitter; when the attempts are spent a :class:`StorageUnavailableError`
(``retriable=True``) names the operation and the endpoint.

Only object keys are ever written: no "folder marker" keys ending in ``/``
(S3 has no directories and listing by prefix needs none). Keys ending in ``/``
that a listing returns anyway are not objects of the datastore and are
skipped: S3Proxy's filesystem backend lists every directory of its store that
way (``content-type: application/x-directory``; deleting one takes it ~10 s),
and S3 consoles create such markers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from ._exceptions import (
    DatasetNotFoundError,
    DatastoreError,
    DatastorePermissionError,
    StorageUnavailableError,
)

__all__ = ["S3Backend"]

T = TypeVar("T")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "Forbidden"}
_TRANSIENT_NET = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectionError,
)


class S3Backend:
    """Objects under ``s3://bucket/prefix``.

    Parameters
    ----------
    bucket : str
        Bucket name.
    prefix : str
        Key prefix acting as the datastore root (relocation = new prefix/bucket).
    endpoint_url : str, optional
        S3 endpoint; defaults to ``$S3_ENDPOINT`` / ``$AWS_ENDPOINT_URL`` or AWS.
    max_attempts : int
        Total attempts per request (botocore standard retry mode, with backoff).
    connect_timeout, read_timeout : float
        Seconds.
    create_bucket : bool
        Create the bucket if it does not exist.
    multipart_threshold : int
        Files larger than this are uploaded/downloaded in parts.
    """

    remote = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        max_attempts: int = 4,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        create_bucket: bool = False,
        multipart_threshold: int = 64 << 20,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or os.environ.get("S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
        self.max_attempts = max_attempts
        config = Config(
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=16,
        )
        self.client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold, use_threads=True, max_concurrency=4)
        self._staging = Path(tempfile.mkdtemp(prefix="nightshift-s3-staging-"))
        weakref.finalize(self, shutil.rmtree, self._staging, True)  # staging files never outlive a put
        if create_bucket:
            self._create_bucket()

    def __repr__(self) -> str:
        return f"S3Backend(s3://{self.bucket}/{self.prefix})"

    # -- error boundary ---------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except botocore.exceptions.ClientError as exc:
            raise self._translate(what, exc) from exc
        except boto3.exceptions.S3UploadFailedError as exc:
            cause = exc.__context__
            if isinstance(cause, botocore.exceptions.ClientError):
                raise self._translate(what, cause) from exc
            raise StorageUnavailableError(f"S3 {what} failed at {self.endpoint_url}: {exc}") from exc
        except _TRANSIENT_NET as exc:
            raise StorageUnavailableError(
                f"S3 {what} failed after {self.max_attempts} attempt(s): cannot reach {self.endpoint_url or 'AWS'} "
                f"({type(exc).__name__})"
            ) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise DatastorePermissionError(f"S3 {what}: no credentials in the environment") from exc

    def _translate(self, what: str, exc: botocore.exceptions.ClientError) -> Exception:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _NOT_FOUND or status == 404:
            return DatasetNotFoundError(f"S3 {what}: not found ({code or status})")
        if code in _DENIED or status == 403:
            return DatastorePermissionError(f"S3 {what}: access denied ({code or status})")
        if status >= 500 or code in {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}:
            return StorageUnavailableError(
                f"S3 {what} failed after {self.max_attempts} attempt(s) at {self.endpoint_url}: HTTP {status} {code}"
            )
        return DatastoreError(f"S3 {what} failed: HTTP {status} {code}: {err.get('Message', '')}")

    def _create_bucket(self) -> None:
        try:
            self._call("create bucket", self.client.create_bucket, Bucket=self.bucket)
        except DatastoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, botocore.exceptions.ClientError) and cause.response.get("Error", {}).get(
                "Code"
            ) in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                return
            raise

    # -- operations ------------------------------------------------------------------------------
    def key(self, rel: str) -> str:
        """Object key of ``rel``."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _object_key(self, rel: str) -> str:
        """Key of an object to write: never empty and never a folder marker (ending in ``/``)."""
        if not rel or rel.endswith("/"):
            raise DatastoreError(
                f"refusing to write the S3 key {self.key(rel)!r}: a datastore path must name a file, "
                "not a directory (keys ending in '/' are folder markers)"
            )
        return self.key(rel)

    def uri(self, rel: str) -> str:
        """``s3://`` URI of ``rel``."""
        return f"s3://{self.bucket}/{self.key(rel)}"

    def new_staging_path(self, rel: str) -> Path:
        """A local staging path for a file that will be uploaded as ``rel``."""
        return self._staging / f"{uuid.uuid4().hex}-{Path(rel).name}"

    def publish(self, staging: Path, rel: str) -> None:
        """Upload a staged file (an S3 PUT is atomic: readers see all or nothing)."""
        self._call(f"upload of {self.uri(rel)}", self.client.upload_file, str(staging), self.bucket,
                   self._object_key(rel), Config=self.transfer)
        staging.unlink(missing_ok=True)

    def upload(self, local: Path, rel: str) -> None:
        """Upload a local file, keeping it."""
        self._call(f"upload of {self.uri(rel)}", self.client.upload_file, str(local), self.bucket,
                   self._object_key(rel), Config=self.transfer)

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Write a small object."""
        self._call(f"put of {self.uri(rel)}", self.client.put_object, Bucket=self.bucket, Key=self._object_key(rel),
                   Body=data)

    def get_bytes(self, rel: str) -> bytes | None:
        """Content of a small object, None if absent."""
        try:
            resp = self._call(f"get of {self.uri(rel)}", self.client.get_object, Bucket=self.bucket, Key=self.key(rel))
        except DatasetNotFoundError:
            return None
        try:
            return resp["Body"].read()
        except _TRANSIENT_NET as exc:
            raise StorageUnavailableError(f"S3 read of {self.uri(rel)} was interrupted") from exc

    def download(self, rel: str, dest: Path) -> None:
        """Download ``rel`` to the local file ``dest``."""
        self._call(f"download of {self.uri(rel)}", self.client.download_file, self.bucket, self.key(rel), str(dest),
                   Config=self.transfer)

    def exists(self, rel: str) -> bool:
        """Whether the object exists."""
        return self.size(rel) is not None

    def size(self, rel: str) -> int | None:
        """Object size, None if absent."""
        try:
            head = self._call(
                f"head of {self.uri(rel)}", self.client.head_object, Bucket=self.bucket, Key=self.key(rel)
            )
        except DatasetNotFoundError:
            return None
        return int(head["ContentLength"])

    def delete(self, rel: str) -> None:
        """Delete the object (absent is fine)."""
        self._call(f"delete of {self.uri(rel)}", self.client.delete_object, Bucket=self.bucket, Key=self.key(rel))

    def check_deletable(self, rel: str) -> None:
        """S3 enforces permissions on the DELETE itself; nothing to check ahead."""

    def move(self, src: str, dst: str) -> None:
        """Copy then delete."""
        self._call(
            f"copy to {self.uri(dst)}", self.client.copy_object, Bucket=self.bucket, Key=self._object_key(dst),
            CopySource={"Bucket": self.bucket, "Key": self.key(src)},
        )
        self.delete(src)

    def list(self, prefix: str) -> Iterator[str]:
        """Relative paths of the objects under ``prefix`` (``""``: the whole datastore).

        Keys ending in ``/`` (directory entries / folder markers, see the module
        notes) are skipped: they are not files of the datastore.
        """
        paginator = self.client.get_paginator("list_objects_v2")
        base = self.key(prefix.strip("/")).rstrip("/")
        base = base + "/" if base else ""
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self._call(
            f"list of {self.uri(prefix)}", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=base))
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    yield obj["Key"][strip:]
