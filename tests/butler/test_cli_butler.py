"""``nightshift butler ...`` against a real SQLite + POSIX repository, through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from registry_support import populate

from nightshift.butler._butler import Butler
from nightshift.cli import cli

RUN = "u/tester/run"


def run(*args: str, input: str | None = None) -> Result:  # noqa: A002 - click's name
    return CliRunner().invoke(cli, ["butler", *args], input=input)


def ok(*args: str, input: str | None = None) -> str:  # noqa: A002
    result = run(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.output


def table(output: str) -> list[dict[str, str]]:
    """Parse the aligned table the commands print (header line first)."""
    lines = [line for line in output.splitlines() if line and not line.startswith("(no results)")]
    header = lines[0].split()
    starts = [lines[0].index(f" {h}") + 1 if i else 0 for i, h in enumerate(header)]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    rows = []
    for line in lines[1:]:
        if line.startswith(("would ", "removed ", "nothing ", "Remove ", "Aborted")):
            break
        rows.append({h: line[a:b].strip() for h, (a, b) in zip(header, bounds, strict=True)})
    return rows


@pytest.fixture
def repo(tmp_path: Path) -> str:
    path = str(tmp_path / "repo")
    assert "created repository" in ok("create", path)
    with Butler(path) as b:
        populate(b.registry)
    ok("register-dataset-type", path, "metric", "StructuredDataDict", "instrument", "visit")
    with Butler(path, run=RUN) as b:
        for v in range(4):
            b.put({"v": v}, "metric", instrument="Cam", visit=v)
    return path


def test_help_teaches_the_commands() -> None:
    out = ok("--help")
    for command in ("create", "register-dataset-type", "query-datasets", "query-data-ids", "query-dimension-records",
                    "query-collections", "export", "import", "remove-datasets"):
        assert command in out
    assert "nightshift butler create ./repo" in out
    where_help = ok("query-datasets", "--help")
    assert "visit.seeing < 0.8" in where_help and "IN (lo..hi)" in where_help


def test_create_refuses_an_existing_repository(repo: str) -> None:
    result = run("create", repo)
    assert result.exit_code == 1 and "already exists" in result.output and "Traceback" not in result.output


def test_register_dataset_type(repo: str) -> None:
    assert "registered calexp" in ok("register-dataset-type", repo, "calexp", "Exposure", "instrument", "visit",
                                     "detector", "--metadata", "psf_fwhm=float")
    assert "already registered" in ok("register-dataset-type", repo, "calexp", "Exposure", "instrument", "visit",
                                      "detector", "--metadata", "psf_fwhm=float")
    clash = run("register-dataset-type", repo, "calexp", "Exposure", "instrument", "visit")
    assert clash.exit_code == 1 and "cannot be redefined" in clash.output
    bad = run("register-dataset-type", repo, "x", "Exposure", "instrument", "--metadata", "oops")
    assert bad.exit_code == 2 and "FIELD=TYPE" in bad.output
    with Butler(repo) as b:
        assert b.registry.get_dataset_type("calexp").metadata == {"psf_fwhm": "float"}


def test_query_datasets_with_where_and_collections(repo: str) -> None:
    rows = table(ok("query-datasets", repo, "metric", "--collections", RUN, "--where", "visit >= 2"))
    assert sorted(int(r["visit"]) for r in rows) == [2, 3] and {r["run"] for r in rows} == {RUN}
    assert len(table(ok("query-datasets", repo, "met*"))) == 4  # glob, every RUN
    syntax = run("query-datasets", repo, "metric", "--where", "visit = = 2")
    assert syntax.exit_code == 1 and "position" in syntax.output
    missing = run("query-datasets", repo, "nope")
    assert missing.exit_code == 1 and "not registered" in missing.output


def test_query_data_ids_and_dimension_records(repo: str) -> None:
    rows = table(ok("query-data-ids", repo, "visit", "--where", "visit.seeing < 0.75"))
    assert sorted(int(r["visit"]) for r in rows) == [0, 1, 2]
    with_data = table(ok("query-data-ids", repo, "visit", "-d", "metric", "-c", RUN, "--where", "visit > 2"))
    assert [int(r["visit"]) for r in with_data] == [3]  # visits 4, 5 have no metric
    records = table(ok("query-dimension-records", repo, "detector", "--where", "detector < 2"))
    assert [r["full_name"] for r in records] == ["R00_S0", "R00_S1"]
    unknown = run("query-dimension-records", repo, "visit", "--where", "visit.nonsense > 1")
    assert unknown.exit_code == 1 and "nonsense" in unknown.output


def test_query_collections(repo: str) -> None:
    with Butler(repo) as b:
        from nightshift.butler.registry import CollectionType

        b.registry.register_collection("chain", CollectionType.CHAINED)
        b.registry.set_collection_chain("chain", [RUN])
    rows = table(ok("query-collections", repo))
    assert {r["name"]: r["type"] for r in rows} == {"chain": "CHAINED", RUN: "RUN"}
    assert "u/tester/run" in ok("query-collections", repo, "chain")
    assert [r["name"] for r in table(ok("query-collections", repo, "--type", "RUN"))] == [RUN]


def test_export_then_import_with_conflict_strategy(repo: str, tmp_path: Path) -> None:
    sub = str(tmp_path / "sub")
    assert "exported 2 dataset(s)" in ok("export", repo, sub, "metric", "--where", "visit IN (0, 1)")
    with Butler(sub, collections=[RUN]) as b:
        assert b.get("metric", instrument="Cam", visit=1) == {"v": 1}
        b.remove_datasets([b.find("metric", instrument="Cam", visit=1)])
        b.put({"v": "changed"}, "metric", instrument="Cam", visit=1, run=RUN)
    clash = run("import", repo, sub)
    assert clash.exit_code == 1 and "conflict=" in clash.output
    assert "imported 2 dataset(s)" in ok("import", repo, sub, "--conflict", "replace")
    with Butler(repo, collections=[RUN]) as b:
        assert b.get("metric", instrument="Cam", visit=1) == {"v": "changed"}
        assert len(b.all_datasets()) == 4


def test_remove_datasets_asks_and_removes_rows_and_files(repo: str) -> None:
    dry = ok("remove-datasets", repo, "metric", "-c", RUN, "--where", "visit < 2", "--dry-run")
    assert "would remove 2" in dry
    aborted = run("remove-datasets", repo, "metric", "--where", "visit < 2", input="n\n")
    assert aborted.exit_code == 1 and "Aborted" in aborted.output
    assert len(table(ok("query-datasets", repo, "metric"))) == 4
    out = ok("remove-datasets", repo, "metric", "--where", "visit < 2", input="y\n")
    assert "removed 2 dataset(s)" in out
    with Butler(repo, collections=[RUN]) as b:
        assert sorted(r.data_id["visit"] for r in b.all_datasets()) == [2, 3]
        assert sum(1 for _ in b.datastore.refs()) == 2
    assert "nothing to remove" in ok("remove-datasets", repo, "metric", "--where", "visit < 2", "--yes")
