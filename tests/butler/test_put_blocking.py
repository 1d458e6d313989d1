"""DMS-MWBT-REQ-0073: ``put`` blocks until it has either worked or failed.

"Worked" is checked from outside the writing process: as soon as ``put``
returns, a fresh Butler in another process (its own registry connection, its
own datastore client) finds the dataset and reads the bytes back. "Failed" is
checked the same way: ``put`` raised, and another process finds neither a
registry row nor a stored file. Both on the local repository (SQLite + POSIX)
and on the shared one (PostgreSQL + S3).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from registry_support import drop_schema
from test_butler import RUN, setup_repo

from nightshift.butler._butler import Butler
from nightshift.butler.datastores import DatastoreError
from nightshift.butler.formatters import FormatterError

READER = """
import json, sys
from nightshift.butler import Butler
from nightshift.butler.datastores import DatasetNotFoundError
with Butler(sys.argv[1], collections=[sys.argv[2]]) as b:
    try:
        ref = b.find("metric", instrument="Cam", visit=int(sys.argv[3]))
    except DatasetNotFoundError:
        print(json.dumps({"row": False}))
    else:
        print(json.dumps({"row": True, "value": b.get(ref), "uri": b.get_uri(ref)}))
"""


def read_in_another_process(root: Path, visit: int) -> dict[str, Any]:
    """What a fresh Butler in a new process sees of ``metric`` for ``visit``."""
    out = subprocess.run([sys.executable, "-c", READER, str(root), RUN, str(visit)],
                         check=True, capture_output=True, text=True, timeout=300)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "datastore").rglob("*") if p.is_file())


def test_put_has_worked_when_it_returns_local(tmp_path: Path) -> None:
    Butler.create(tmp_path / "repo").close()
    with setup_repo(Butler(tmp_path / "repo", run=RUN)) as b:
        for visit in range(3):
            ref = b.put({"visit": visit}, "metric", instrument="Cam", visit=visit)
            seen = read_in_another_process(tmp_path / "repo", visit)  # while the writer is still open
            assert seen == {"row": True, "value": {"visit": visit}, "uri": b.get_uri(ref)}


def test_put_has_failed_when_it_raises_local(tmp_path: Path) -> None:
    Butler.create(tmp_path / "repo").close()
    with setup_repo(Butler(tmp_path / "repo", run=RUN)) as b:
        b.put({"visit": 0}, "metric", instrument="Cam", visit=0)
        before = stored_files(tmp_path / "repo")
        with pytest.raises(FormatterError):
            b.put({"visit": object()}, "metric", instrument="Cam", visit=1)  # not serializable
        assert read_in_another_process(tmp_path / "repo", 1) == {"row": False}
        assert stored_files(tmp_path / "repo") == before
        assert not any((tmp_path / "repo" / "datastore").rglob("*.part"))  # no staging file left either


@pytest.mark.integration
def test_put_has_worked_or_failed_when_it_returns_postgresql_s3(
        tmp_path: Path, s3_endpoint: str, pg_dsn: str, unique_name: str) -> None:
    s3 = {"cls": "s3", "bucket": unique_name, "prefix": "repo", "endpoint_url": s3_endpoint, "create_bucket": True}
    root = tmp_path / "repo"
    Butler.create(root, datastore=s3, registry_db=pg_dsn, registry_schema=unique_name).close()
    client = boto3.client("s3", endpoint_url=s3_endpoint)

    def keys() -> list[str]:
        listing = client.list_objects_v2(Bucket=unique_name, Prefix="repo/")
        return sorted(o["Key"] for o in listing.get("Contents", []))

    try:
        with setup_repo(Butler(root, run=RUN)) as b:
            ref = b.put({"visit": 0}, "metric", instrument="Cam", visit=0)
            assert read_in_another_process(root, 0) == {"row": True, "value": {"visit": 0}, "uri": b.get_uri(ref)}
            before = keys()
            with pytest.raises(FormatterError):
                b.put({"visit": object()}, "metric", instrument="Cam", visit=1)
            assert read_in_another_process(root, 1) == {"row": False}
            assert keys() == before
        # the object store itself refuses the write: point the datastore at a bucket that does not exist
        config = yaml.safe_load((root / "butler.yaml").read_text())
        config["datastore"].update(bucket=unique_name + "-missing", create_bucket=False)
        (root / "butler.yaml").write_text(yaml.safe_dump(config))
        with Butler(root, run=RUN) as b, pytest.raises(DatastoreError):
            b.put({"visit": 2}, "metric", instrument="Cam", visit=2)
        assert read_in_another_process(root, 2) == {"row": False}
    finally:
        drop_schema(pg_dsn, unique_name)
