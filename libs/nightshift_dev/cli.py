"""``nightshift dev ...`` and ``nightshift demo``: the local stack and the demo, loaded lazily by nightshift.cli."""

from __future__ import annotations

import shlex

import click

from nightshift.cli import cli_errors

from .devstack import COMPONENTS, down, stack_env, status, up

__all__ = ["demo", "dev"]  # and `loadtest`, made on first use (module __getattr__)


def __getattr__(name: str) -> click.Group:
    """``loadtest`` on first use (it imports matplotlib, psutil and the services' clients)."""
    if name == "loadtest":
        from .loadtest.cli import loadtest

        return loadtest
    raise AttributeError(name)

_COMPONENT = click.argument("components", nargs=-1, type=click.Choice(sorted(COMPONENTS)))


@click.group()
def dev() -> None:
    """Run the local stack of real servers: Kafka (KRaft), PostgreSQL, S3Proxy, Apicurio Registry, WebDAV (wsgidav).

    Data lives in .stack/ and survives `down`/`up` (the registry is in-memory and gets
    its schemas at every `up`); jars come from Maven Central into .cache/ on first use.
    Ports are loopback-only and set by NIGHTSHIFT_KAFKA_PORT, NIGHTSHIFT_KAFKA_SASL_PORT,
    NIGHTSHIFT_PG_PORT, NIGHTSHIFT_S3_PORT, NIGHTSHIFT_REGISTRY_PORT and NIGHTSHIFT_DAV_PORT.
    """


@dev.command("up")
@cli_errors
@_COMPONENT
def up_cmd(components: tuple[str, ...]) -> None:
    """Start (or reuse) the servers; all of them unless some are named."""
    env = up(names=components or None)
    for key, value in env.items():
        if "SECRET" not in key and "PASSWORD" not in key and "TOKEN" not in key:
            click.echo(f"{key}={value}")


@dev.command("down")
@cli_errors
@_COMPONENT
def down_cmd(components: tuple[str, ...]) -> None:
    """Stop the servers, keeping their data."""
    stopped = down(names=components or None)
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@dev.command("status")
@cli_errors
def status_cmd() -> None:
    """Show whether each server is running and ready, and where its log is."""
    for st in status():
        state = "ready" if st.ready else ("starting/unhealthy" if st.running else "stopped")
        click.echo(f"{st.name:9s} {state:18s} log: {st.log}")


@dev.command("env")
@cli_errors
def env_cmd() -> None:
    """Print shell lines for the stack's addresses: eval "$(nightshift dev env)"."""
    for key, value in stack_env().items():
        click.echo(f"export {key}={shlex.quote(value)}")


@click.command()
@cli_errors
def demo() -> None:
    """Run the library tour against the local stack (make tour); the night of make demo is `nightshift ap run-night`."""
    from .demo import run_demo

    run_demo(echo=click.echo)
