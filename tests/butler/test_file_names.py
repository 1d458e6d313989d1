"""DMS-MWBT-REQ-0078: a file handed to a user has a unique, predictable name, whatever the access mechanism.

Mechanisms: the stored bytes copied out (``Butler.retrieve_files``, from POSIX
or from S3), the ``nightshift butler retrieve`` command, and the single-file
export (``Butler.export_file``). Each gives a dataset the same name, and the
names are unique across the whole repository (types, data IDs, runs), also
when the file template puts part of the identity in directories.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner
from test_butler import RUN, setup_repo
from test_formatters import make_exposure

from nightshift.butler._butler import Butler
from nightshift.cli import cli

OTHER_RUN = "u/other/rerun"


def fill(b: Butler) -> None:
    for run in (RUN, OTHER_RUN):
        for visit in (1, 2):
            b.put({"visit": visit, "run": run}, "metric", instrument="Cam", visit=visit, run=run)
            for detector in (1, 2):
                b.put(make_exposure((8, 8), seed=visit * 10 + detector), "calexp", instrument="Cam", visit=visit,
                      detector=detector, run=run)


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_every_mechanism_gives_the_same_unique_predictable_name(tmp_path: Path) -> None:
    Butler.create(tmp_path / "repo").close()
    with setup_repo(Butler(tmp_path / "repo", run=RUN)) as b:
        fill(b)
        refs = b.all_datasets(["metric", "calexp"])
        assert len(refs) == 12
        retrieved = names(b.retrieve_files(refs, tmp_path / "retrieved"))
        assert len(set(retrieved)) == 12  # unique across types, data IDs and runs, without directories
        calexp = next(r for r in refs if r.dataset_type.name == "calexp" and r.run == OTHER_RUN
                      and dict(r.data_id) == {"instrument": "Cam", "visit": 2, "detector": 1})
        assert b.retrieve_files([calexp], tmp_path / "one")[0].name \
            == "calexp_detector=1_instrument=Cam_visit=2_u_other_rerun.fits"  # predictable from the ref alone
        exported = [b.export_file(r, tmp_path / "exported").name for r in refs]
        assert exported == retrieved
        assert [unquote(b.get_uri(r).rsplit("/", 1)[-1]) for r in refs] == retrieved  # the stored file's own name
    out = CliRunner().invoke(cli, ["butler", "retrieve", str(tmp_path / "repo"), str(tmp_path / "cli"),
                                    "metric", "calexp"])
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(retrieved)
    assert (tmp_path / "cli" / retrieved[0]).read_bytes() == (tmp_path / "retrieved" / retrieved[0]).read_bytes()


def test_directories_in_the_template_are_folded_into_the_name(tmp_path: Path) -> None:
    templates = {"calexp": "{run}/calexp/{instrument}/{visit:04d}/{detector:03d}"}
    Butler.create(tmp_path / "repo", datastore={"cls": "posix", "root": "datastore", "templates": templates}).close()
    with setup_repo(Butler(tmp_path / "repo", run=RUN)) as b:
        fill(b)
        refs = b.all_datasets(["calexp"])
        retrieved = names(b.retrieve_files(refs, tmp_path / "retrieved"))
        assert len(set(retrieved)) == 8
        assert "u~other~rerun~calexp~Cam~0002~001.fits" in retrieved
        assert [b.export_file(r, tmp_path / "exported").name for r in refs] == retrieved


def test_a_shared_template_must_name_the_dataset_type(tmp_path: Path) -> None:
    Butler.create(tmp_path / "repo", datastore={"cls": "posix", "root": "datastore",
                                                "templates": {"default": "{run}/{data_id}"}}).close()
    with setup_repo(Butler(tmp_path / "repo", run=RUN)) as b, pytest.raises(ValueError, match="neither"):
        b.put({"v": 1}, "metric", instrument="Cam", visit=1)


@pytest.mark.integration
def test_the_name_does_not_depend_on_the_storage(tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    Butler.create(tmp_path / "posix").close()
    s3 = {"cls": "s3", "bucket": unique_name, "endpoint_url": s3_endpoint, "create_bucket": True}
    with setup_repo(Butler(tmp_path / "posix", run=RUN)) as local:
        fill(local)
        with local.export_subset(tmp_path / "s3", ["metric", "calexp"], datastore=s3) as remote:
            refs = local.all_datasets(["metric", "calexp"])
            assert remote.get_uri(refs[0]).startswith("s3://")
            from_posix = local.retrieve_files(refs, tmp_path / "from-posix")
            from_s3 = remote.retrieve_files(refs, tmp_path / "from-s3")
            assert names(from_posix) == names(from_s3)
            assert [p.read_bytes() for p in from_posix] == [p.read_bytes() for p in from_s3]
