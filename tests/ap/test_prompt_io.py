"""The prompt quantum's I/O helpers that need no server: the POSIX object store, staged encodings, inputs."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.table import Table

from nightshift.ap import ApInputError, PromptConfig
from nightshift.ap._prompt_io import ObjectStore, _midpoint, _refcat, encode_dataset, sha256
from nightshift.butler import DatasetType
from nightshift.events import QuantumPlanned


def test_posix_store_puts_atomically_and_reads_back(tmp_path: Path) -> None:
    store = ObjectStore(f"file://{tmp_path}/stage")
    uri = store.put("run/calexp/1/a.fits", b"first")
    assert uri == str(tmp_path / "stage" / "run/calexp/1/a.fits") and store.get("run/calexp/1/a.fits") == b"first"
    store.put("run/calexp/1/a.fits", b"second")  # a replay overwrites with the same (here: new) bytes
    assert store.get("run/calexp/1/a.fits") == b"second"
    assert store.get("no/such/key") is None
    assert not list((tmp_path / "stage").rglob("*.tmp"))  # nothing half-written is left behind
    assert ObjectStore("s3://bucket/prefix/").uri("x/y.arrow") == "s3://bucket/prefix/x/y.arrow"


def test_tables_are_staged_as_parquet_with_a_stable_checksum() -> None:
    table = pa.table({"diaSourceId": pa.array([3, 1, 2], pa.int64()), "ra": [1.0, 2.0, 3.0]})
    dt = DatasetType("dia_source", ("instrument", "visit", "detector"), "ArrowTable")
    data, ext = encode_dataset(table, dt)
    again, _ = encode_dataset(table, dt)
    assert ext == ".parq" and pq.read_table(io.BytesIO(data)).equals(table)
    assert sha256(data) == sha256(again)  # a replay stages the same bytes: the datastore-writer sees the same file


def _plan(**kw: object) -> QuantumPlanned:
    fields: dict = dict(quantum_id=uuid.uuid4(), task_label="ap", instrument="LSSTCam-sim", visit=2026120600007,
                        detector=94, data_id={"band": "g"}, inputs=[], outputs=[], config_hash="0" * 16,
                        code_version="t", butler_repo="/repo", run="r", footprint_deg=[0, 0, 1, 0, 1, 1])
    fields.update(kw)
    return QuantumPlanned(**fields)


def test_exposure_midpoint_from_the_header_then_the_plan() -> None:
    mid, exptime = _midpoint({"DATE-BEG": "2026-12-07T03:00:00", "DATE-END": "2026-12-07T03:00:30",
                              "TIMESYS": "TAI", "EXPTIME": 30.0}, _plan())
    assert exptime == 30.0 and mid == pytest.approx(61381.125 + 15 / 86400, abs=1e-9)
    mid, _ = _midpoint({"EXPTIME": 30.0}, _plan(visit_start_mjd_tai=61381.125))
    assert mid == pytest.approx(61381.125 + 15 / 86400, abs=1e-9)
    with pytest.raises(ApInputError, match="exposure's time is unknown"):
        _midpoint({}, _plan())


def test_reference_catalog_prefers_the_band_column_and_names_what_is_missing() -> None:
    cat = Table({"ra": [1.0], "dec": [2.0], "mag": [20.0], "g_mag": [21.0]})
    assert list(_refcat([cat, cat], "g")["mag"]) == [21.0, 21.0]
    with pytest.raises(ApInputError, match="no magnitude column for band r"):
        _refcat([Table({"ra": [1.0], "dec": [2.0], "g_mag": [21.0]})], "r")


def test_config_rejects_an_unknown_crash_point() -> None:
    with pytest.raises(ValueError, match="crash_at"):
        PromptConfig(staging_uri="/s", alert_inputs_uri="/b", crash_at="somewhere")
