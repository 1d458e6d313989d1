"""Fixed schema ids in the real schema registry (Apicurio) of the local stack, read the way brokers read them."""

from __future__ import annotations

import io
import json
import socket
import struct
import time
import uuid
import zlib
from typing import Any

import fastavro
import httpx
import pytest
from confluent_kafka import DeserializingConsumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from lsst.alert.packet import Schema, get_latest_schema_version, get_schema_path

from nightshift.events import (
    ALERT_SUBJECT,
    DatasetStored,
    RegistrySchema,
    SchemaRegistryError,
    SchemaRegistryUnavailableError,
    alert_registry_schemas,
    alert_schema_document,
    alert_schema_versions,
    encode,
    ensure_topics,
    event_registry_schemas,
    register_schemas,
)


def canonical(schema: dict[str, Any] | str) -> str:
    doc = json.loads(schema) if isinstance(schema, str) else schema
    return str(fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(doc, _write_hint=False)))


def named_definitions(node: Any, out: list[str]) -> list[str]:
    """Every named type *defined* (not merely referenced) in a schema document."""
    if isinstance(node, list):
        for n in node:
            named_definitions(n, out)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed"):
            out.append(node["name"] if "." in node["name"] else f"{node.get('namespace', '')}.{node['name']}")
        for f in node.get("fields", []):
            named_definitions(f["type"], out)
        for key in ("items", "values"):
            if key in node:
                named_definitions(node[key], out)
        if isinstance(node.get("type"), (dict, list)):
            named_definitions(node["type"], out)
    return out


# -- the documents (no server) ------------------------------------------------------------------
def test_every_shipped_alert_version_is_one_clean_standalone_document() -> None:
    versions = alert_schema_versions()
    assert versions[-1] == get_latest_schema_version() == (11, 1)
    assert (3, 0) in versions and len(versions) >= 15
    for major, minor in versions:
        doc = alert_schema_document(major, minor)
        text = json.dumps(doc)
        assert "__fastavro" not in text and '"__' not in text
        names = named_definitions(doc, [])
        assert len(names) == len(set(names)), f"v{major}.{minor} defines a type twice: {names}"
        # Parses alone (no named_schemas from elsewhere) into exactly what lsst-alert-packet loads.
        packet = Schema.from_file(f"{get_schema_path(major, minor)}/lsst.v{major}_{minor}.alert.avsc")
        assert canonical(doc) == fastavro.schema.to_parsing_canonical_form(packet.definition)
        assert packet.get_schema_id() == major * 100 + minor


def test_alert_ids_are_rubins_and_event_ids_the_manifests() -> None:
    alerts = alert_registry_schemas()
    assert {s.subject for s in alerts} == {ALERT_SUBJECT}
    assert [s.version for s in alerts] == list(range(1, len(alerts) + 1))
    assert alerts[-1].id == 1101 and [s.id for s in alerts] == sorted(s.id for s in alerts)
    events = {(s.subject, s.version): s.id for s in event_registry_schemas()}
    assert events[("quantum.planned", 2)] == 10 and events[("nextVisit", 1)] == 1
    assert not set(events.values()) & {s.id for s in alerts}


def test_a_registry_that_is_down_fails_fast_naming_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/apis/ccompat/v7"
    with pytest.raises(SchemaRegistryUnavailableError, match=rf"no schema registry answers at {url}"):
        register_schemas(url, timeout=5)


# -- the real registry --------------------------------------------------------------------------


def minimal_record(schema: Any, names: dict[str, Any], namespace: str = "") -> Any:
    """The smallest valid datum of ``schema``: null where allowed, zero/empty otherwise."""
    if isinstance(schema, list):
        return None if "null" in schema else minimal_record(schema[0], names, namespace)
    if isinstance(schema, str):
        primitives = {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0, "double": 0.0,
                      "bytes": b"", "string": ""}
        if schema in primitives:
            return primitives[schema]
        return minimal_record(names[schema if "." in schema else f"{namespace}.{schema}"], names, namespace)
    kind = schema["type"]
    if kind == "record":
        ns = schema.get("namespace", namespace)
        names[f"{ns}.{schema['name']}" if "." not in schema["name"] else schema["name"]] = schema
        return {f["name"]: minimal_record(f["type"], names, ns) for f in schema["fields"]}
    if kind == "array":
        return []
    if kind == "map":
        return {}
    if kind == "enum":
        return schema["symbols"][0]
    return minimal_record(kind, names, namespace)


@pytest.mark.integration
def test_every_fixed_id_resolves_in_the_registry(schema_registry_url: str) -> None:
    wanted = [*event_registry_schemas(), *alert_registry_schemas()]
    with httpx.Client(timeout=30) as http:
        for s in wanted:
            r = http.get(f"{schema_registry_url}/schemas/ids/{s.id}")
            assert r.status_code == 200, f"id {s.id} ({s.subject} v{s.version}): {r.text}"
            assert canonical(r.json()["schema"]) == canonical(s.schema)
        latest = http.get(f"{schema_registry_url}/subjects/{ALERT_SUBJECT}/versions/latest").json()
        assert latest["id"] == 1101 and latest["version"] == len(alert_registry_schemas())
        versions = http.get(f"{schema_registry_url}/subjects/quantum.planned/versions").json()
        manifest = [v.version for v in event_registry_schemas() if v.subject == "quantum.planned"]
        assert versions == manifest and len(manifest) >= 2
    # Registering again changes nothing.
    again = register_schemas(schema_registry_url)
    assert again.imported == () and sorted(again.present) == sorted(s.id for s in wanted)


@pytest.mark.integration
def test_new_schemas_get_their_fixed_ids_and_a_taken_id_is_refused(schema_registry_url: str) -> None:
    subject = f"test.{uuid.uuid4().hex[:10]}"
    base = 100_000 + zlib.crc32(subject.encode()) % 1_000_000_000  # far from the real ids
    # A schema text of its own: Apicurio stores each distinct text once, under one id.
    v1 = {"type": "record", "name": "T", "namespace": subject, "fields": [{"name": "a", "type": "long"}]}
    v2 = {**v1, "fields": [*v1["fields"], {"name": "b", "type": ["null", "string"], "default": None}]}
    schemas = [RegistrySchema(subject, 1, base, v1), RegistrySchema(subject, 2, base + 1, v2)]
    first = register_schemas(schema_registry_url, schemas)
    assert first.imported == (base, base + 1)
    assert register_schemas(schema_registry_url, schemas).present == (base, base + 1)
    with httpx.Client(timeout=30) as http:
        assert canonical(http.get(f"{schema_registry_url}/schemas/ids/{base + 1}").json()["schema"]) == canonical(v2)
        assert http.get(f"{schema_registry_url}/subjects/{subject}/versions/latest").json()["id"] == base + 1
    with pytest.raises(SchemaRegistryError, match=r"schema id 1101 .* holds a different schema"):
        register_schemas(schema_registry_url, [RegistrySchema(subject, 3, 1101, v1)])


@pytest.mark.integration
def test_confluent_deserializer_decodes_a_v11_1_alert_and_an_event_through_the_registry(
    schema_registry_url: str, kafka_bootstrap: str, unique_name: str
) -> None:
    """Confluent framing with id 1101, decoded the way Fink reads Rubin's stream."""
    doc = alert_schema_document(11, 1)
    parsed = fastavro.parse_schema(doc)
    alert = minimal_record(doc, {})
    alert["diaSourceId"] = 1234567890123
    alert["diaSource"]["diaSourceId"] = 1234567890123
    alert["cutoutDifference"] = b"SIMPLE  =                    T"
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, alert)
    framed = b"\x00" + struct.pack(">I", 1101) + body.getvalue()

    event = DatasetStored(dataset_id=uuid.uuid4(), dataset_type="calexp", run="r", uri="s3://b/k.fits")
    topic = f"alerts.{unique_name}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"1234567890123", value=framed)
    producer.produce(topic, key=b"event", value=encode(event))
    assert producer.flush(30) == 0

    registry = SchemaRegistryClient({"url": schema_registry_url})
    consumer = DeserializingConsumer({
        "bootstrap.servers": kafka_bootstrap, "group.id": unique_name, "auto.offset.reset": "earliest",
        "value.deserializer": AvroDeserializer(registry),
    })
    got = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60  # deadlock guard only
        while len(got) < 2 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
    finally:
        consumer.close()
        registry.close()
    assert len(got) == 2
    decoded_alert, decoded_event = got
    assert decoded_alert == fastavro.schemaless_reader(io.BytesIO(body.getvalue()), parsed)
    assert decoded_alert["diaSourceId"] == 1234567890123
    assert decoded_alert["cutoutDifference"] == b"SIMPLE  =                    T"
    # nightshift's own events carry registry ids too: the manifest id resolves to their schema.
    assert decoded_event["uri"] == "s3://b/k.fits" and decoded_event["dataset_type"] == "calexp"
