"""``nightshift alerts``: stream to the real broker, tail, fetch and show what was streamed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest
from astropy.nddata import CCDData
from click.testing import CliRunner

from nightshift.alerts import AlertStream
from nightshift.cli import cli

pytestmark = pytest.mark.integration


def test_stream_tail_fetch_show(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    topic = f"alerts-{unique_name}"
    runner = CliRunner()
    streamed = runner.invoke(cli, ["alerts", "stream", "--bootstrap", kafka_bootstrap, "--topic", topic,
                                   "--alerts-per-visit", "40", "--visits", "4", "--cadence", "0s", "--partitions", "2"])
    assert streamed.exit_code == 0, streamed.output
    lines = [x for x in streamed.output.splitlines() if x.startswith("visit ")]
    assert len(lines) == 4 and all("40/40 alerts acknowledged" in x for x in lines)

    tailed = runner.invoke(cli, ["alerts", "tail", "--bootstrap", kafka_bootstrap, "--topic", topic,
                                 "--from-beginning", "--max", "160", "--idle-timeout", "60"])
    assert tailed.exit_code == 0, tailed.output
    rows = tailed.output.splitlines()
    assert len(rows) == 160
    assert all("ra=" in r and "S/N=" in r and "age=" in r for r in rows)
    first_id = int(rows[0].split()[0])

    out = tmp_path / "fetched"
    fetched = runner.invoke(cli, ["alerts", "fetch", "--dia-source-id", str(first_id), "--bootstrap",
                                  kafka_bootstrap, "--topic", topic, "--out", str(out)])
    assert fetched.exit_code == 0, fetched.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{first_id}.avro", f"{first_id}.json", f"{first_id}.cutoutDifference.fits",
                            f"{first_id}.cutoutScience.fits", f"{first_id}.cutoutTemplate.fits"])
    assert json.loads((out / f"{first_id}.json").read_text())["diaSourceId"] == first_id
    assert len(list(fastavro.reader(io.BytesIO((out / f"{first_id}.avro").read_bytes())))) == 1
    ccd = CCDData.read(out / f"{first_id}.cutoutScience.fits")
    assert ccd.data.shape[0] >= 30

    png = tmp_path / "c.png"
    shown = runner.invoke(cli, ["alerts", "show", str(out / f"{first_id}.avro"), "--png", str(png)])
    assert shown.exit_code == 0, shown.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f'"diaSourceId": {first_id}' in shown.output


def test_the_stream_has_coherent_histories() -> None:
    stream = AlertStream("127.0.0.1:1", alerts_per_visit=60, cadence=35.0)
    batches = [stream.build(i) for i in range(7)]
    last = batches[-1]
    records = [fastavro.schemaless_reader(io.BytesIO(p), last.schema.parsed) for p in last.payloads]
    with_history = [r for r in records if r["prvDiaSources"]]
    assert with_history, "visit 6 revisits objects of visits 0 and 3"
    for r in with_history:
        prv = r["prvDiaSources"]
        assert all(p["diaObjectId"] == r["diaSource"]["diaObjectId"] for p in prv)
        assert all(p["midpointMjdTai"] < r["diaSource"]["midpointMjdTai"] for p in prv)
    assert all(r["cutoutDifference"] and r["cutoutScience"] and r["cutoutTemplate"] for r in records)
