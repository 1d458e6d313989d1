"""DMS-MWBT-REQ-0019: a repository subset uploaded from external hardware is usable from another machine.

The upload puts the registry in the platform's PostgreSQL and the bytes (with
the repository's configuration) in its object store. "Another machine" is a
fresh process that never sees the uploading machine's directories: they are
deleted before it starts, and it opens the repository from its ``s3://`` URI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from registry_support import drop_schema
from test_butler import RUN, _two_detector_repo

from nightshift.butler._butler import Butler, ButlerConfigError

SECOND_MACHINE = """
import json, sys
from nightshift.butler import Butler
with Butler.attach(sys.argv[1], sys.argv[2], collections=[sys.argv[3]], run="u/platform/reprocess") as b:
    seen = [b.get("metric", instrument="Cam", visit=v) for v in range(3)]
    b.put({"d": "added on the platform"}, "metric", instrument="Cam", visit=1)
    print(json.dumps({"seen": seen, "uri": b.get_uri("metric", instrument="Cam", visit=1)}))
"""


@pytest.mark.integration
def test_an_uploaded_subset_is_usable_from_another_machine(
        tmp_path: Path, s3_endpoint: str, pg_dsn: str, unique_name: str) -> None:
    s3 = {"cls": "s3", "bucket": unique_name, "prefix": "up", "endpoint_url": s3_endpoint, "create_bucket": True}
    laptop = tmp_path / "laptop"
    try:
        with _two_detector_repo(laptop, "src") as src, src.export_subset(
                laptop / "up", ["metric"], datastore=s3, registry_db=pg_dsn, registry_schema=unique_name) as up:
            uri = up.publish_config()  # already published by the upload; returns where
        assert uri == f"s3://{unique_name}/up"
        shutil.rmtree(laptop)  # the external hardware is gone
        platform = tmp_path / "platform"
        out = subprocess.run([sys.executable, "-c", SECOND_MACHINE, uri, str(platform / "handle"), RUN],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["seen"] == [{"d": 0}, {"d": 1}, {"d": 2}]
        assert result["uri"].startswith(f"s3://{unique_name}/up/")
        with Butler.attach(uri, platform / "another", collections=["u/platform/reprocess", RUN]) as b:
            assert b.get("metric", instrument="Cam", visit=1) == {"d": "added on the platform"}
            assert sorted(p.name for p in (platform / "another").iterdir()) == ["butler.yaml"]  # only a handle
            with pytest.raises(LookupError):  # the upload held only the chosen subset
                b.get("calexp", instrument="Cam", visit=1, detector=0)
        Butler.remove_repository(platform / "another")  # removal from any machine removes it everywhere
        listing = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=unique_name, Prefix="up/")
        assert listing.get("KeyCount", 0) == 0
    finally:
        drop_schema(pg_dsn, unique_name)


def test_a_repository_with_a_local_registry_cannot_be_published(tmp_path: Path) -> None:
    with _two_detector_repo(tmp_path, "r") as b, pytest.raises(ButlerConfigError, match="local SQLite"):
        b.publish_config()


def test_attach_needs_a_published_configuration(tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=unique_name)
    with pytest.raises(ButlerConfigError, match="publish it"):
        Butler.attach(f"s3://{unique_name}/nothing-here", tmp_path / "h")
