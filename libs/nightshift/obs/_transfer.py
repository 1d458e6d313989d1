"""Placing a raw file in a datastore: copy, hard link, symlink, or in place (local files and S3 objects)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from ..butler import DatasetRef
from ..butler.datastores import FileDatastore
from ._exceptions import ObsError

__all__ = ["TRANSFER_MODES", "TransferMode", "place_file", "unplace_file"]

TransferMode = Literal["copy", "hardlink", "symlink", "direct"]
TRANSFER_MODES: tuple[str, ...] = ("copy", "hardlink", "symlink", "direct")


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def place_file(datastore: Any, source: str, ref: DatasetRef, mode: str) -> tuple[str, bool]:
    """Put ``source`` where ``datastore`` keeps ``ref``.

    Parameters
    ----------
    datastore : FileDatastore
        POSIX or S3.
    source : str
        Absolute local path or ``s3://bucket/key``.
    ref : DatasetRef
        The raw dataset.
    mode : {"copy", "hardlink", "symlink", "direct"}
        ``direct`` leaves the bytes where they are: a local file is linked (never copied); an S3
        object must already be inside the S3 datastore's bucket and prefix, and is recorded there.

    Returns
    -------
    (str, bool)
        Path relative to the datastore root, and whether a new file/object was created there
        (to undo on failure).

    Raises
    ------
    ObsError
        The mode is impossible for this source and datastore.
    """
    if not isinstance(datastore, FileDatastore):
        raise ObsError(f"raw ingest needs a file datastore (POSIX or S3), not {type(datastore).__name__}")
    if mode not in TRANSFER_MODES:
        raise ObsError(f"transfer mode must be one of {', '.join(TRANSFER_MODES)}, not {mode!r}")
    backend = datastore.backend
    remote_source = source.startswith("s3://")
    rel = datastore.templates.path(ref) + ".fits"
    if mode == "direct" and remote_source:
        bucket, key = _split_s3(source)
        prefix = (getattr(backend, "prefix", "") + "/").lstrip("/")
        if not backend.remote or getattr(backend, "bucket", None) != bucket or not key.startswith(prefix):
            raise ObsError(f"{source}: in-place ingest of an S3 object needs an S3 datastore holding it "
                           f"(datastore is {backend!r}); use transfer 'copy'")
        return key[len(prefix):], False
    if mode in ("hardlink", "symlink", "direct"):
        if remote_source or backend.remote:
            raise ObsError(f"{source}: {mode} ingest needs a local file and a POSIX datastore; use 'copy'")
        staging = backend.new_staging_path(rel)
        try:
            (os.link if mode == "hardlink" else os.symlink)(source, staging)
            backend.publish(staging, rel)
        except OSError as exc:
            raise ObsError(f"{source}: {mode} into the datastore failed: {exc}") from exc
        finally:
            staging.unlink(missing_ok=True)
        return rel, True
    # copy
    if not remote_source:
        backend.upload(Path(source), rel)
        return rel, True
    bucket, key = _split_s3(source)
    if backend.remote:  # S3 -> S3: a server-side copy, the bytes never come here
        backend.client.copy_object(CopySource={"Bucket": bucket, "Key": key}, Bucket=backend.bucket,
                                   Key=backend.key(rel))
        return rel, True
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=os.environ.get("S3_ENDPOINT"))
    with tempfile.TemporaryDirectory(prefix="nightshift-raw-") as tmp:
        local = Path(tmp) / "raw.fits"
        client.download_file(bucket, key, str(local))
        backend.upload(local, rel)
    return rel, True


def unplace_file(datastore: Any, rel: str) -> None:
    """Best-effort removal of a file :func:`place_file` created."""
    with contextlib.suppress(Exception):
        datastore.backend.delete(rel)
