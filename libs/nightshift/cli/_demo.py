from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Run the end-to-end main job against the local stack and print what it did."""
    from ..demo import run_demo

    run_demo(echo=click.echo)
