"""``nightshift pipeline`` commands against a real repository."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from nightshift.butler._butler import Butler
from nightshift.cli import cli
from nightshift.pipe.examples import EXAMPLE_PIPELINE

PIPE = str(EXAMPLE_PIPELINE)


def test_show_config_applies_and_records_overrides(tmp_path: Path) -> None:
    f = tmp_path / "o.yaml"
    f.write_text("gain: 4.0\n")
    result = CliRunner().invoke(cli, ["pipeline", "show-config", PIPE, "--label", "calibrate",
                                      "-c", "calibrate:measure.threshold=9", "-C", f"calibrate:{f}"])
    assert result.exit_code == 0, result.output
    assert "threshold: 9" in result.output and "gain: 4.0" in result.output
    assert "source: command line" in result.output and f"source: file {f}" in result.output
    bad = CliRunner().invoke(cli, ["pipeline", "show-config", PIPE, "-c", "calibrate:nope=1"])
    assert bad.exit_code == 1 and "no field 'nope'" in bad.output and "Traceback" not in bad.output


def test_build_show_run(repo: Butler, tmp_path: Path) -> None:
    runner = CliRunner()
    qg, png, report = tmp_path / "g.qg", tmp_path / "g.png", tmp_path / "r.json"
    args = ["pipeline", "build-graph", str(repo.root), PIPE, "-i", "raw/all", "-i", "calib/bias", "-o", "u/cli/run",
            "-d", "visit < 2", "--save", str(qg), "--png", str(png)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "calibrate" in result.output and png.read_bytes()[:4] == b"\x89PNG"
    shown = runner.invoke(cli, ["pipeline", "show-graph", str(qg), "--quanta"])
    assert shown.exit_code == 0 and "quanta: 11" in shown.output and "[10] survey_summary" in shown.output
    ran = runner.invoke(cli, ["pipeline", "run", str(repo.root), "--graph", str(qg), "--report", str(report),
                              "--progress"])
    assert ran.exit_code == 0, ran.output
    assert "11 succeeded" in ran.output and "quanta" in ran.output  # the progress bar line
    assert json.loads(report.read_text())["counts"]["succeeded"] == 11
    again = runner.invoke(cli, ["pipeline", "run", str(repo.root), "--graph", str(qg)])
    assert "11 memoized" in again.output
    staged = runner.invoke(cli, ["pipeline", "run", str(repo.root), "--graph", str(qg), "--stage-dir",
                                 str(tmp_path / "scratch"), "--report", str(report)])
    assert "11 memoized" in staged.output and json.loads(report.read_text())["extra"]["staged_in"] > 0


def test_empty_graph_and_failures_exit_nonzero(repo: Butler) -> None:
    runner = CliRunner()
    empty = runner.invoke(cli, ["pipeline", "build-graph", str(repo.root), PIPE, "-i", "raw/all", "-i", "calib/bias",
                                "-o", "u/cli/e", "-d", "visit = 42"])
    assert empty.exit_code == 1 and "no 'raw' datasets" in empty.output
    failing = runner.invoke(cli, ["pipeline", "run", str(repo.root), "-p", PIPE, "-i", "raw/all", "-i", "calib/bias",
                                  "-o", "u/cli/f", "-d", "visit = 0", "-c", "calibrate:fail_detectors=[1]"])
    assert failing.exit_code == 1
    assert "1 failed, 2 blocked" in failing.output and "FAILED calibrate" in failing.output
