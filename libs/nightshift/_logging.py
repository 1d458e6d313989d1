"""The one JSON log line format of nightshift (services, pipelines, executors).

One object per line with ``time`` (RFC 3339, UTC, milliseconds, ``Z``), ``level``,
``logger``, ``message`` and ``pid``; ``service`` when the process is a service; every
field added to the record (``extra={...}``, the pipeline's ``quantum``) flattened in;
``exception`` with the traceback. Loki and Elasticsearch ingest it without parsing rules.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

__all__ = ["JsonFormatter", "rfc3339"]

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def rfc3339(created: float) -> str:
    """``created`` (seconds since the epoch) as an RFC 3339 UTC timestamp with milliseconds."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Format records as the JSON lines described in this module.

    Parameters
    ----------
    service : str, optional
        Written as ``service`` in every line (the name of a service process).
    """

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if self.service is not None:
            out["service"] = self.service
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)
