"""``nightshift butler ingest-raws`` / ``register-instrument``: summary, skipped files, exit code."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from obs_support import sim_raws, write_hsc

from nightshift.butler import Butler
from nightshift.cli import cli


def test_ingest_raws_prints_a_summary_and_fails_when_a_file_is_skipped(tmp_path: Path) -> None:
    Butler.create(tmp_path / "repo").close()
    good = sim_raws(tmp_path / "raw", detectors=(0, 1))
    bad = tmp_path / "raw" / "broken.fits"
    bad.write_bytes(b"\0" * 100)
    runner = CliRunner()
    result = runner.invoke(cli, ["butler", "ingest-raws", str(tmp_path / "repo"), str(tmp_path / "raw"),
                                 "--transfer", "copy", "-j", "1", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "registered instrument TestCam" in result.output
    assert f"skipped: {bad}: not a FITS file" in result.output
    assert "ingested 2 raw(s), 0 already ingested (unchanged), 1 skipped" in result.output
    bad.unlink()
    again = runner.invoke(cli, ["butler", "ingest-raws", str(tmp_path / "repo"), *map(str, good), "--progress"])
    assert again.exit_code == 0, again.output
    assert "ingested 0 raw(s), 2 already ingested (unchanged), 0 skipped" in again.output


def test_register_instrument_then_ingest_another_camera(tmp_path: Path) -> None:
    Butler.create(tmp_path / "repo").close()
    runner = CliRunner()
    result = runner.invoke(cli, ["butler", "register-instrument", str(tmp_path / "repo"), "LSSTCam-sim", "HSC"])
    assert result.exit_code == 0 and "LSSTCam-sim: registered" in result.output
    assert "HSC: registered" in result.output
    src = write_hsc(tmp_path / "hsc.fits")
    result = runner.invoke(cli, ["butler", "ingest-raws", str(tmp_path / "repo"), str(src), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "registered instrument" not in result.output and "ingested 1 raw(s)" in result.output
