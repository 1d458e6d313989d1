"""Standard logging for pre-flight and run (REQ-0025).

Every record of the framework and of tasks goes to the ``nightshift.pipe``
logger tree; during a quantum a filter adds ``quantum`` (``label {data ID}``)
so a multi-process or distributed run's lines can be attributed. Different
executors may send the output elsewhere (a file, JSON to Loki, ...).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Literal

__all__ = ["QuantumLogFilter", "configure_logging", "quantum_log_context"]

_current: contextvars.ContextVar[str] = contextvars.ContextVar("nightshift_quantum", default="-")
_HANDLER_NAME = "nightshift.pipe"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s [%(quantum)s]: %(message)s"


class QuantumLogFilter(logging.Filter):
    """Adds ``record.quantum``: the task label and data ID being executed, or ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "quantum"):
            record.quantum = _current.get()
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "quantum": getattr(record, "quantum", "-"), "pid": record.process,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(level: int | str = "INFO", *, fmt: Literal["text", "json"] = "text",
                      file: str | os.PathLike[str] | None = None) -> logging.Logger:
    """Set up the ``nightshift.pipe`` logger (idempotent: replaces the handler it installed before).

    Parameters
    ----------
    level : int or str
        Logging level of the pipeline loggers.
    fmt : {"text", "json"}
        Line format; JSON suits log aggregation.
    file : path, optional
        Append to this file instead of stderr.

    Returns
    -------
    logging.Logger
        The ``nightshift.pipe`` logger.
    """
    logger = logging.getLogger("nightshift.pipe")
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    for h in list(logger.handlers):
        if h.get_name() == _HANDLER_NAME:
            logger.removeHandler(h)
            h.close()
    handler: logging.Handler = logging.FileHandler(file) if file is not None else logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(QuantumLogFilter())
    handler.setFormatter(_JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logger.addHandler(handler)
    logger.propagate = False
    return logger


@contextlib.contextmanager
def quantum_log_context(description: str) -> Iterator[None]:
    """Tag log records emitted inside the block with the quantum's description."""
    token = _current.set(description)
    try:
        yield
    finally:
        _current.reset(token)
