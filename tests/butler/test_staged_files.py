"""Persisting staged outputs (DMS-MWBT-REQ-0079): checksum verified, idempotent, conflicts refused, all or nothing."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import boto3
import pytest

from nightshift.butler import Butler
from nightshift.butler.datastores import (
    ChecksumMismatchError,
    DatasetConflictError,
    FileDatastore,
    StagedFileError,
    open_file_datastore,
    staged_dataset_ref,
    store_staged_file,
)
from nightshift.butler.formatters import FormatterError

RUN = "TestCam/prompt/20261206"
DATA_ID = {"instrument": "TestCam", "visit": "2026120600001", "detector": "3"}


def _stage(path: Path, doc: object) -> str:
    path.write_text(json.dumps(doc))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(store: FileDatastore) -> list[str]:
    root = Path(store.backend.root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def store(tmp_path: Path) -> FileDatastore:
    Butler.create(tmp_path / "repo", register=False).close()
    return open_file_datastore(tmp_path / "repo")


def test_the_staged_file_is_stored_once_and_a_redelivery_finds_it(store: FileDatastore, tmp_path: Path) -> None:
    checksum = _stage(tmp_path / "staged.json", {"n": 1})
    ref = staged_dataset_ref("ap_metrics", "StructuredDataDict", DATA_ID, RUN, uuid.uuid4())
    assert ref.data_id == {"instrument": "TestCam", "visit": 2026120600001, "detector": 3}  # ints, as dimensions are
    first = store_staged_file(store, ref, str(tmp_path / "staged.json"), checksum)
    assert not first.already_stored and first.checksum == checksum and first.size_bytes == 8
    assert store.get(ref) == {"n": 1} and first.uri == store.get_uri(ref)
    files = _files(store)
    again = store_staged_file(store, ref, str(tmp_path / "staged.json"), checksum, remove_staged=True)
    assert again.already_stored and again.uri == first.uri and again.size_bytes == first.size_bytes
    assert _files(store) == files
    assert not (tmp_path / "staged.json").exists()  # stored with its checksum: the staged copy can go


def test_a_checksum_mismatch_stores_nothing(store: FileDatastore, tmp_path: Path) -> None:
    _stage(tmp_path / "staged.json", {"n": 1})
    ref = staged_dataset_ref("ap_metrics", "StructuredDataDict", DATA_ID, RUN, uuid.uuid4())
    with pytest.raises(ChecksumMismatchError, match="nothing was stored"):
        store_staged_file(store, ref, str(tmp_path / "staged.json"), "0" * 64)
    assert not store.exists(ref) and _files(store) == []


def test_another_checksum_for_a_stored_id_is_a_conflict(store: FileDatastore, tmp_path: Path) -> None:
    ref = staged_dataset_ref("ap_metrics", "StructuredDataDict", DATA_ID, RUN, uuid.uuid4())
    store_staged_file(store, ref, str(tmp_path / "a.json"), _stage(tmp_path / "a.json", {"n": 1}))
    with pytest.raises(DatasetConflictError, match="already stored"):
        store_staged_file(store, ref, str(tmp_path / "b.json"), _stage(tmp_path / "b.json", {"n": 2}))
    assert store.get(ref) == {"n": 1}


def test_an_unreadable_file_or_missing_staging_leaves_the_datastore_as_it_was(store: FileDatastore,
                                                                              tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{not json")
    ref = staged_dataset_ref("ap_metrics", "StructuredDataDict", DATA_ID, RUN, uuid.uuid4())
    with pytest.raises(FormatterError):
        store_staged_file(store, ref, str(bad), hashlib.sha256(bad.read_bytes()).hexdigest())
    with pytest.raises(StagedFileError, match="no staged file"):
        store_staged_file(store, ref, str(tmp_path / "gone.json"), "0" * 64)
    assert not store.exists(ref) and _files(store) == []


def test_s3_staging_into_an_s3_datastore(tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=unique_name)
    checksum = _stage(tmp_path / "staged.json", {"n": 7})
    s3.upload_file(str(tmp_path / "staged.json"), unique_name, "staging/x/staged.json")
    config = {"cls": "s3", "name": "s3", "bucket": unique_name, "prefix": "repo", "endpoint_url": s3_endpoint}
    Butler.create(tmp_path / "repo", datastore=config, register=False).close()
    store = open_file_datastore(tmp_path / "repo")
    ref = staged_dataset_ref("ap_metrics", "StructuredDataDict", DATA_ID, RUN, uuid.uuid4())
    stored = store_staged_file(store, ref, f"s3://{unique_name}/staging/x/staged.json", checksum, s3_client=s3)
    assert stored.uri.startswith(f"s3://{unique_name}/repo/") and store.get(ref) == {"n": 7}
    assert store_staged_file(store, ref, f"s3://{unique_name}/staging/x/staged.json", checksum).already_stored
    s3.upload_file(str(tmp_path / "staged.json"), unique_name, "staging/y/staged.json")
    other = staged_dataset_ref("ap_metrics", "StructuredDataDict", {**DATA_ID, "detector": "4"}, RUN, uuid.uuid4())
    store_staged_file(store, other, f"s3://{unique_name}/staging/y/staged.json", checksum, s3_client=s3,
                      remove_staged=True)
    assert "Contents" not in s3.list_objects_v2(Bucket=unique_name, Prefix="staging/y/")  # the staged copy is gone
    # a redelivery needs no staged file: the dataset is found stored
    assert store_staged_file(store, other, f"s3://{unique_name}/staging/y/staged.json", checksum,
                             s3_client=s3).already_stored
    with pytest.raises(StagedFileError, match="cannot download"):
        store_staged_file(store, staged_dataset_ref("ap_metrics", "StructuredDataDict", DATA_ID, RUN, uuid.uuid4()),
                          f"s3://{unique_name}/staging/none.json", checksum, s3_client=s3)
