"""The ``nightshift`` command line: thin click commands over library functions."""

from ._main import cli, main

__all__ = ["cli", "main"]
