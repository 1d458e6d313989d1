"""The CLI teaches through --help and prints shell-ready stack settings."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from nightshift import NightshiftError
from nightshift.cli import cli, cli_errors
from nightshift.cli._errors import EXIT_ERROR
from nightshift_dev.devstack import StackSettings


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


def test_dev_commands_come_from_the_development_package() -> None:
    import nightshift_dev.cli
    from nightshift.cli._main import _Root

    root = cli
    assert isinstance(root, _Root)
    ctx = click.Context(root)
    assert root.get_command(ctx, "dev") is nightshift_dev.cli.dev
    assert root.get_command(ctx, "demo") is nightshift_dev.cli.demo


def test_dev_commands_say_what_is_missing_without_the_development_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nightshift_dev.cli", None)  # import fails as if not installed
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert "dev" in help_text and "demo" in help_text
    for args in (["dev", "up", "kafka"], ["demo"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1
        assert "nightshift_dev" in result.output and "not installed" in result.output
        assert not isinstance(result.exception, ModuleNotFoundError)


def test_the_library_never_imports_the_development_package() -> None:
    code = (
        "import sys, nightshift, nightshift.cli, nightshift.events, nightshift.pipe.executors, nightshift.service\n"
        "from click.testing import CliRunner\n"
        "CliRunner().invoke(nightshift.cli.cli, ['butler', '--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('nightshift_dev')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def _probe(exc: BaseException) -> click.Command:
    @click.command()
    @click.option("--n", type=int, default=0)
    @cli_errors
    def probe(n: int) -> None:
        raise exc

    return probe


def test_library_errors_become_one_line_and_exit_code_1() -> None:
    class BrokenThing(NightshiftError):
        pass

    for exc in (BrokenThing("the repository at /x has no butler.yaml; create it first"), ValueError("bad value")):
        result = CliRunner().invoke(_probe(exc), [])
        assert result.exit_code == EXIT_ERROR == 1
        assert result.output == f"Error: {exc}\n"  # one line, no traceback
    usage = CliRunner().invoke(_probe(RuntimeError("unused")), ["--n", "many"])
    assert usage.exit_code == 2 and "Invalid value" in usage.output  # click's usage errors keep exit code 2
    bug = CliRunner().invoke(_probe(RuntimeError("a bug")), [])
    assert isinstance(bug.exception, RuntimeError)  # anything else is a bug: its traceback is kept


def test_every_command_uses_the_one_error_handler() -> None:
    import nightshift_dev.cli

    def leaves(command: click.Command) -> list[click.Command]:
        if isinstance(command, click.Group):
            return [leaf for sub in command.commands.values() for leaf in leaves(sub)]
        return [command]

    groups = [cli.commands[name] for name in ("apdb", "butler", "pipeline")]
    dev_groups = [nightshift_dev.cli.dev, nightshift_dev.cli.demo, nightshift_dev.cli.loadtest]
    commands = [c for g in [*groups, *dev_groups] for c in leaves(g)]
    assert len(commands) > 20
    unhandled = [c.name for c in commands if not getattr(c.callback, "handles_cli_errors", False)]
    assert unhandled == []
