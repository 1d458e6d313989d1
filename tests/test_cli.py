"""The CLI teaches through --help and prints shell-ready stack settings."""

from __future__ import annotations

from click.testing import CliRunner

from nightshift.cli import cli
from nightshift.devstack import StackSettings


def test_help_lists_the_starting_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "nightshift dev up" in result.output and "dev" in result.output


def test_dev_env_prints_exportable_lines() -> None:
    result = CliRunner().invoke(cli, ["dev", "env"])
    assert result.exit_code == 0
    lines = dict(line.removeprefix("export ").split("=", 1) for line in result.output.splitlines())
    s = StackSettings()
    assert lines["KAFKA_BOOTSTRAP"] == f"127.0.0.1:{s.kafka_port}"
    assert lines["PG_DSN"] == f"postgresql://nightshift@127.0.0.1:{s.pg_port}/nightshift"
    assert lines["S3_ENDPOINT"] == f"http://127.0.0.1:{s.s3_port}"
    assert lines["SCHEMA_REGISTRY_URL"] == f"http://127.0.0.1:{s.registry_port}/apis/ccompat/v7"
    assert lines["KAFKA_SASL_BOOTSTRAP"] == f"127.0.0.1:{s.kafka_sasl_port}"
    assert lines["KAFKA_SASL_USERNAME"] and lines["KAFKA_SASL_PASSWORD"]
    assert "AWS_SECRET_ACCESS_KEY" in lines  # for eval in a shell; `dev up` never prints it


def test_dev_up_rejects_unknown_component() -> None:
    result = CliRunner().invoke(cli, ["dev", "up", "redis"])
    assert result.exit_code != 0 and "Invalid value" in result.output
