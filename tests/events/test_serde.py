"""Wire format: round trips, schema evolution, and a specific error for every kind of bad input."""

from __future__ import annotations

import io
import json
import struct
import uuid
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import pytest

from nightshift.events import (
    DecodeError,
    DiaResults,
    EventValidationError,
    NextVisit,
    QuantumPlanned,
    RawArrived,
    SchemaCatalog,
    UnknownSchemaError,
    decode,
    default_catalog,
    encode,
    schema_id_of,
    schemas_dir,
)


def next_visit(**overrides: object) -> NextVisit:
    fields = dict(
        instrument="LSSTCam", group_id="2026-11-25T01:02:03", visit=2026112500001, day_obs=20261124,
        survey="BLOCK-1", ra_deg=150.1, dec_deg=-30.2, rotation_deg=12.0, physical_filter="r_57",
        exposure_time_s=30.0, n_snaps=1, detectors=list(range(189)),
    )
    fields.update(overrides)
    return NextVisit(**fields)


def test_round_trip_keeps_every_field() -> None:
    event = QuantumPlanned(
        quantum_id=uuid.uuid4(), task_label="isr", instrument="LSSTCam", visit=1, detector=94,
        data_id={"instrument": "LSSTCam", "visit": "1", "detector": "94"},
        inputs=[uuid.uuid4(), uuid.uuid4()], outputs=[uuid.uuid4()], config_hash="a" * 64, code_version="0.1.0",
    )
    data = encode(event)
    assert data[0] == 0 and schema_id_of(data) == default_catalog().latest("quantum.planned").id
    back = decode(data, expected_subject="quantum.planned")
    assert back == event
    assert back.planned_at.tzinfo is not None


def test_a_v1_quantum_planned_event_still_decodes() -> None:
    """Events written by a v1 producer (visit/detector required, no graph pointer) read as v2."""
    v1 = default_catalog().versions("quantum.planned")[0]
    assert v1.version == 1
    record = {
        "event_id": str(uuid.uuid4()), "quantum_id": str(uuid.uuid4()), "task_label": "isr",
        "instrument": "LSSTCam", "visit": 7, "detector": 94, "data_id": {"visit": "7"},
        "inputs": [], "outputs": [], "config_hash": "b" * 64, "code_version": "0.1.0",
        "planned_at": datetime(2026, 11, 25, tzinfo=UTC),
    }
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, v1.id))
    fastavro.schemaless_writer(out, v1.parsed, record)
    event = decode(out.getvalue(), expected_subject="quantum.planned")
    assert isinstance(event, QuantumPlanned)
    assert (event.visit, event.detector, event.graph_uri, event.memoize, event.collections) == (7, 94, None, True, [])


def test_quantum_planned_graph_pointer_must_be_complete() -> None:
    with pytest.raises(ValueError, match="graph_uri and quantum_index"):
        QuantumPlanned(quantum_id=uuid.uuid4(), task_label="t", data_id={}, inputs=[], outputs=[],
                       config_hash="a" * 64, code_version="1", graph_uri="/g.qg")


def test_truncated_body_is_a_decode_error() -> None:
    data = encode(next_visit())
    with pytest.raises(DecodeError, match="corrupt"):
        decode(data[:-7])


def test_trailing_garbage_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="trailing bytes"):
        decode(encode(next_visit()) + b"\x01\x02")


@pytest.mark.parametrize("data", [b"", b"\x00\x00", b"{\"json\": true}", b"\x01\x00\x00\x00\x01abc"])
def test_not_wire_format(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_unknown_schema_id() -> None:
    with pytest.raises(UnknownSchemaError, match="schema id 99999 is not in"):
        decode(struct.pack(">bI", 0, 99999) + b"\x00")


def test_wrong_subject_for_topic() -> None:
    with pytest.raises(DecodeError, match="carries a 'nextVisit' event"):
        decode(encode(next_visit()), expected_subject="raw.arrived")


def test_impossible_content_is_rejected_at_construction_and_on_decode() -> None:
    with pytest.raises(ValueError, match="dec_deg"):
        next_visit(dec_deg=100.0)
    # Bytes that are schema-valid but carry impossible content (written by a buggy peer).
    forged = next_visit().model_copy(update={"dec_deg": 123.0})  # model_copy skips validation
    data = encode(forged)
    with pytest.raises(EventValidationError, match=r"dec_deg: Input should be less than or equal to 90"):
        decode(data)


def test_counts_must_agree() -> None:
    with pytest.raises(ValueError, match="n_dia_sources=3 but 2 dia_source_ids"):
        DiaResults(
            instrument="LSSTCam", visit=1, detector=2, visit_time_mjd_tai=61000.5, n_dia_sources=3,
            n_dia_objects=1, dia_source_ids=[1, 2], results_uri="s3://b/k",
        )


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RawArrived(
            instrument="LSSTCam", group_id="g", visit=1, detector=1, snap=0, uri="s3://b/k", size_bytes=1,
            checksum="0" * 64, observed_at=datetime(2026, 11, 25, 1, 0, 0),
        )


def test_old_version_resolves_to_new(tmp_path: Path) -> None:
    """v1 bytes of ``dataset.stored`` (a producer that predates v2) read as v2 with the added fields'
    defaults (Avro schema evolution)."""
    manifest = json.loads((schemas_dir() / "manifest.json").read_text())
    (tmp_path / "events").mkdir()
    for s in manifest["subjects"].values():
        for v in s["versions"]:
            (tmp_path / v["file"]).write_text((schemas_dir() / v["file"]).read_text())
    versions = manifest["subjects"]["dataset.stored"]["versions"]
    assert [v["version"] for v in versions][:2] == [1, 2]
    manifest["subjects"]["dataset.stored"]["versions"] = versions[:1]  # the old producer's catalog
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    old_catalog = SchemaCatalog(tmp_path)
    from nightshift.events import DatasetStored

    v1_event = DatasetStored(dataset_id=uuid.uuid4(), dataset_type="calexp", run="r", uri="s3://b/k",
                             stored_at=datetime.now(UTC))
    v1_bytes = encode(v1_event, catalog=old_catalog)
    assert schema_id_of(v1_bytes) == versions[0]["id"]
    v2_bytes = encode(v1_event.model_copy(update={"data_id": {"visit": "7"}, "size_bytes": 12}))
    assert schema_id_of(v2_bytes) == versions[1]["id"]
    # The default catalog resolves the writer's v1 to the reader's newest: the added fields take their defaults.
    read = decode(v1_bytes)
    assert isinstance(read, DatasetStored)
    assert read.dataset_id == v1_event.dataset_id and read.uri == "s3://b/k"
    assert read.data_id == {} and read.size_bytes is None and read.checksum is None
    read2 = decode(v2_bytes)
    assert isinstance(read2, DatasetStored) and read2.data_id == {"visit": "7"} and read2.size_bytes == 12
