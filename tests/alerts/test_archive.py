"""The archive on the real S3 server: container files lsst-alert-packet reads, fetch by visit and by id."""

from __future__ import annotations

import io

import boto3
import fastavro
import pytest
from lsst.alert.packet import Schema

from nightshift.alerts import AlertArchive, AlertBatch, AlertEncoder, ArchiveError, container_file
from nightshift.apdb import SkyField

pytestmark = pytest.mark.integration


def batch() -> AlertBatch:
    sky = SkyField(centres=1, density=300, sources_per_visit=60, forced_per_visit=60)
    v0, v = sky.visit(0), sky.visit(3)
    return AlertEncoder().build(v.sources, v.objects, preload=(None, v0.sources, v0.forced_sources))


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_container_files_read_with_lsst_alert_packet(codec: str) -> None:
    b = batch()
    data, offsets, lengths = container_file(b.schema, b.payloads, codec)
    schema = Schema.from_file()  # lsst-alert-packet's latest schema, its own reader
    _, records = schema.retrieve_alerts(io.BytesIO(data))
    records = list(records)
    expected = [fastavro.schemaless_reader(io.BytesIO(p), b.schema.parsed) for p in b.payloads]
    assert records == expected
    assert len(offsets) == len(lengths) == len(b)


def test_archive_round_trip_by_visit_and_by_id(s3_endpoint: str, unique_name: str) -> None:
    b = batch()
    archive = AlertArchive(f"alerts-{unique_name}", endpoint_url=s3_endpoint)
    files = archive.store(b)
    assert sum(f.alerts for f in files) == len(b)
    assert len(files) == len(set(zip(b.visits.tolist(), b.detectors.tolist(), strict=True)))
    visit = int(b.visits[0])
    assert sorted(archive.visit(visit)) == sorted(b.payloads)
    for i in (0, len(b) // 2, len(b) - 1):
        assert archive.fetch(int(b.dia_source_ids[i])) == b.payloads[i]
    # Each file is a complete container file by itself.
    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    body = s3.get_object(Bucket=f"alerts-{unique_name}", Key=files[0].key)["Body"].read()
    assert len(list(fastavro.reader(io.BytesIO(body)))) == files[0].alerts
    with pytest.raises(ArchiveError, match="no archive index"):
        archive.fetch(int(b.dia_source_ids[0]) + (1 << 31) * 5)
