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


def test_sim_commands_make_a_night_calibrations_and_templates(tmp_path: Path) -> None:
    from nightshift.sky import point_pixel

    runner = CliRunner()
    night = runner.invoke(cli, ["sim", "night", str(tmp_path / "night"), "--visits", "2", "--instrument", "TestCam",
                                "--detectors", "0..1,3", "--detector-size", "32", "--seed", "4", "--no-progress"])
    assert night.exit_code == 0, night.output
    assert "wrote 6 raws" in night.output and "2 nextVisit payloads" in night.output
    assert len(list((tmp_path / "night" / "raw").rglob("*.fits"))) == 6
    Butler.create(tmp_path / "repo").close()
    calibs = runner.invoke(cli, ["sim", "calibs", str(tmp_path / "repo"), "--instrument", "TestCam", "--detectors",
                                 "0..3", "--detector-size", "32", "--filters", "g_6,r_57"])
    assert calibs.exit_code == 0, calibs.output
    assert "certified 12 master calibrations in TestCam/calib" in calibs.output
    tract = point_pixel(150.0, 2.0, 3)
    templates = runner.invoke(cli, ["sim", "templates", str(tmp_path / "repo"), "--patch-levels", "4",
                                    "--patch", f"{tract}/0", "--band", "g", "--pixel-scale", "4"])
    assert templates.exit_code == 0, templates.output
    assert "wrote 1 template_coadd datasets" in templates.output
