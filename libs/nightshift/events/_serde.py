"""Events to and from the Confluent wire format: magic byte 0, 4-byte schema id, Avro body."""

from __future__ import annotations

import io
import struct
import uuid
from typing import Any

import fastavro
from pydantic import ValidationError

from ._errors import DecodeError, EventValidationError
from ._models import EVENT_TYPES, Event
from ._schemas import SchemaCatalog, default_catalog

MAGIC = 0
_HEADER = struct.Struct(">bI")


def _to_avro(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [_to_avro(v) for v in value]
    return value


def encode(event: Event, catalog: SchemaCatalog | None = None) -> bytes:
    """Serialize ``event`` with the newest schema of its subject.

    Returns
    -------
    bytes
        ``b"\\x00" + schema_id (big-endian uint32) + Avro binary body``.
    """
    schema = (catalog or default_catalog()).latest(event.SUBJECT)
    record = {k: _to_avro(v) for k, v in event.model_dump().items()}
    out = io.BytesIO()
    out.write(_HEADER.pack(MAGIC, schema.id))
    fastavro.schemaless_writer(out, schema.parsed, record)
    return out.getvalue()


def schema_id_of(data: bytes) -> int:
    """The schema id in the wire-format header of ``data``."""
    if data is None or len(data) < _HEADER.size:
        raise DecodeError(
            f"message of {0 if data is None else len(data)} bytes is too short for the Confluent wire format"
        )
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"magic byte is {magic}, not {MAGIC}: not a Confluent wire-format Avro message")
    return int(schema_id)


def decode(data: bytes, expected_subject: str | None = None, catalog: SchemaCatalog | None = None) -> Event:
    """Parse wire-format bytes into the event model, resolving old schema versions to the newest.

    Raises
    ------
    DecodeError
        Not wire format, unknown schema id (``UnknownSchemaError``), truncated or corrupt body,
        or an event of another subject than ``expected_subject``.
    EventValidationError
        The body decoded but its content is impossible.
    """
    cat = catalog or default_catalog()
    writer = cat.by_id(schema_id_of(data))
    if expected_subject is not None and writer.subject != expected_subject:
        raise DecodeError(
            f"message carries a {writer.subject!r} event (schema id {writer.id}), expected {expected_subject!r}"
        )
    reader = cat.latest(writer.subject)
    body = io.BytesIO(data[_HEADER.size :])
    try:
        record = fastavro.schemaless_reader(body, writer.parsed, reader.parsed if reader.id != writer.id else None)
    except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
        raise DecodeError(
            f"Avro body of a {writer.subject!r} event (schema id {writer.id}) is corrupt: {exc!r}"
        ) from exc
    if body.tell() != len(data) - _HEADER.size:
        raise DecodeError(
            f"{len(data) - _HEADER.size - body.tell()} trailing bytes after a {writer.subject!r} event: corrupt message"
        )
    try:
        return EVENT_TYPES[writer.subject].model_validate(record)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise EventValidationError(f"invalid {writer.subject!r} event: {problems}") from exc
