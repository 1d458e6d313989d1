"""Standard logging for pre-flight and run (REQ-0025).

Every record of the framework and of tasks goes to the ``nightshift.pipe``
logger tree; during a quantum a filter adds ``quantum`` (``label {data ID}``)
so a multi-process or distributed run's lines can be attributed. Different
executors may send the output elsewhere (a file, JSON to Loki, ...); JSON lines
are nightshift's one format (``nightshift._logging.JsonFormatter``, as services write).

The framework sets this up itself: :func:`build_quantum_graph` and
:meth:`Executor.run` given a ``log_level`` install the standard handler for
the duration of the phase (:func:`pipeline_logging`) and restore the caller's
logging afterwards; executor workers are configured from the run's settings.
:func:`configure_logging` is for programs that own their process (the CLI).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
from collections.abc import Iterator
from typing import Literal

from .._logging import JsonFormatter

__all__ = ["LogFormat", "QuantumLogFilter", "configure_logging", "pipeline_logging", "quantum_log_context"]

_current: contextvars.ContextVar[str] = contextvars.ContextVar("nightshift_quantum", default="-")
_HANDLER_NAME = "nightshift.pipe"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s [%(quantum)s]: %(message)s"
LogFormat = Literal["text", "json"]
_LOGGER = "nightshift.pipe"


class QuantumLogFilter(logging.Filter):
    """Adds ``record.quantum``: the task label and data ID being executed, or ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "quantum"):
            record.quantum = _current.get()
        return True


def _standard_handler(fmt: LogFormat, file: str | os.PathLike[str] | None) -> logging.Handler:
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    handler: logging.Handler = logging.FileHandler(file) if file is not None else logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(QuantumLogFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    return handler


def _level(level: int | str) -> int | str:
    return level.upper() if isinstance(level, str) else level


def configure_logging(level: int | str = "INFO", *, fmt: LogFormat = "text",
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
    logger = logging.getLogger(_LOGGER)
    handler = _standard_handler(fmt, file)
    logger.setLevel(_level(level))
    for h in list(logger.handlers):
        if h.get_name() == _HANDLER_NAME:
            logger.removeHandler(h)
            h.close()
    logger.addHandler(handler)
    logger.propagate = False
    return logger


@contextlib.contextmanager
def pipeline_logging(level: int | str | None, *, fmt: LogFormat = "text",
                     file: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """The standard logging of one phase (pre-flight or run), undone when the phase ends.

    Inside the block the ``nightshift.pipe`` logger has only the standard
    handler, at ``level``; afterwards its handlers, level and propagation are
    what they were. ``level=None`` leaves logging alone.

    Parameters
    ----------
    level : int, str or None
        Logging level of the pipeline loggers during the phase.
    fmt : {"text", "json"}
        Line format.
    file : path, optional
        Append to this file instead of stderr.
    """
    if level is None:
        yield
        return
    logger = logging.getLogger(_LOGGER)
    handler = _standard_handler(fmt, file)
    saved_level, saved_propagate = logger.level, logger.propagate
    replaced = [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]
    for h in replaced:
        logger.removeHandler(h)
    logger.addHandler(handler)
    logger.setLevel(_level(level))
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        for h in replaced:
            logger.addHandler(h)
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate


@contextlib.contextmanager
def quantum_log_context(description: str) -> Iterator[None]:
    """Tag log records emitted inside the block with the quantum's description."""
    token = _current.set(description)
    try:
        yield
    finally:
        _current.reset(token)
