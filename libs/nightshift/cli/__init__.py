"""The ``nightshift`` command line: thin click commands over library functions."""

from ._errors import cli_errors
from ._main import cli, main

__all__ = ["cli", "cli_errors", "main"]
