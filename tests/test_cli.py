"""The CLI teaches through --help and prints shell-ready stack settings."""

from __future__ import annotations

from click.testing import CliRunner

from nightshift.cli import cli


def test_help_lists_the_starting_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "nightshift dev up" in result.output and "dev" in result.output


def test_dev_env_prints_exportable_lines() -> None:
    result = CliRunner().invoke(cli, ["dev", "env"])
    assert result.exit_code == 0
    lines = dict(line.removeprefix("export ").split("=", 1) for line in result.output.splitlines())
    assert lines["KAFKA_BOOTSTRAP"] == "127.0.0.1:19092"
    assert lines["PG_DSN"].startswith("postgresql://nightshift@127.0.0.1:")
    assert lines["S3_ENDPOINT"].startswith("http://127.0.0.1:")


def test_dev_up_rejects_unknown_component() -> None:
    result = CliRunner().invoke(cli, ["dev", "up", "redis"])
    assert result.exit_code != 0 and "Invalid value" in result.output
