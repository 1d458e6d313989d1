"""Service logs: the one JSON line format of nightshift (``nightshift._logging``) on stderr."""

from __future__ import annotations

import logging

from .._logging import JsonFormatter

__all__ = ["JsonFormatter", "setup_logging"]


def setup_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger to stderr in the chosen format (replacing earlier handlers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
