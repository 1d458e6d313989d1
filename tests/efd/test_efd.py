"""The EFD on the real PostgreSQL: base and transformed forms, one query interface, dataset association."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nightshift import NightshiftError
from nightshift.butler import DatasetType
from nightshift.butler.registry import DatasetMetadataError, Registry, Timespan
from nightshift.efd import (
    TOPICS,
    Efd,
    EfdInputError,
    EfdSchemaError,
    EfdSettings,
    UnknownTopicError,
    record_dataset_metadata,
    simulate_efd,
    transform_visits,
)

SECOND = 10**9
T0 = 1_700_000_000 * SECOND  # TAI ns
N_VISITS = 4


def _span(v: int) -> tuple[int, int]:
    return T0 + v * 120 * SECOND, T0 + (v * 120 + 30) * SECOND


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry.create(str(tmp_path / "repo"))
    reg.insert_dimension_records("instrument", [{"name": "Cam", "visit_max": 1000, "detector_max": 10}])
    reg.insert_dimension_records("band", [{"name": "r"}])
    reg.insert_dimension_records("physical_filter", [{"instrument": "Cam", "name": "r_01", "band": "r"}])
    reg.insert_dimension_records("detector", [{"instrument": "Cam", "id": 0, "full_name": "S0", "purpose": "SCIENCE"}])
    reg.insert_dimension_records("day_obs", [{"instrument": "Cam", "id": 20231114}])
    reg.insert_dimension_records("group", [{"instrument": "Cam", "name": f"g{v}"} for v in range(N_VISITS)])
    common = [{"instrument": "Cam", "id": v, "physical_filter": "r_01", "day_obs": 20231114,
               "timespan": Timespan.from_ns(*_span(v)), "exposure_time": 30.0} for v in range(N_VISITS)]
    reg.insert_dimension_records("exposure", [{**c, "group": f"g{c['id']}", "observation_type": "science",
                                               "obs_id": f"CA_{c['id']}"} for c in common])
    reg.insert_dimension_records("visit", [{**c, "seeing": 0.6 + 0.15 * c["id"], "boresight_ra": 60.0 + c["id"],
                                            "boresight_dec": -30.0, "sky_angle": 10.0 * c["id"]} for c in common])
    reg.insert_join_rows("visit_definition", [{"instrument": "Cam", "exposure": v, "visit": v}
                                              for v in range(N_VISITS)])
    yield reg
    reg.close()


@pytest.fixture
def efd(pg_dsn: str, unique_name: str) -> Iterator[Efd]:
    db = Efd(EfdSettings(dsn=pg_dsn, schema_name=f"efd_{unique_name}"))
    yield db
    db.drop()
    db.close()


@pytest.fixture
def simulated(efd: Efd, registry: Registry) -> Efd:
    written = simulate_efd(efd, registry, instrument="Cam", seed=7, margin_s=60.0)
    assert set(written) == set(TOPICS) and min(written.values()) > 0
    return efd


def test_base_by_topic_and_window_at_native_rates(simulated: Efd) -> None:
    base = simulated.reader("base")
    begin, end = T0, T0 + 100 * SECOND
    for name, topic in TOPICS.items():
        got = base.query(name, begin, end)
        assert list(got.columns) == ["time", *topic.fields] and got.fields == list(topic.fields)
        times = got.columns["time"]
        assert begin <= times.min() and times.max() < end
        assert np.all(np.diff(times) == round(SECOND / topic.rate_hz))  # the native rate, in time order
        assert len(got) == pytest.approx(100 * topic.rate_hz, abs=1)
    wind = base.query("wind", begin, end, fields=["speed"])
    speed = wind.columns["speed"]
    assert list(wind.columns) == ["time", "speed"] and np.all((speed >= 0) & (speed < 25))
    temp = base.query("temperature", begin, end)
    assert np.all(np.abs(temp.columns["air"]) < 40) and np.all(temp.columns["dome"] > temp.columns["air"])


def test_streams_are_consistent_with_the_visits_seeing(simulated: Efd, registry: Registry) -> None:
    base = simulated.reader("base")
    for rec in registry.query_dimension_records("visit", data_id={"instrument": "Cam"}):
        dimm = base.query_visit(registry, "dimm_seeing", instrument="Cam", visit=rec["id"])
        dome = base.query_visit(registry, "dome_seeing", instrument="Cam", visit=rec["id"])
        assert not dimm.empty and not dome.empty
        total = np.hypot(dimm.mean("fwhm"), dome.mean("fwhm"))
        assert total == pytest.approx(rec["seeing"], rel=0.05)
        rot = base.query_visit(registry, "rotator", instrument="Cam", visit=rec["id"])
        assert rot.mean("angle") == pytest.approx(rec["sky_angle"], abs=0.01)


def test_transform_summarises_each_visit_and_reruns(simulated: Efd, registry: Registry) -> None:
    report = transform_visits(simulated, registry, instrument="Cam")
    assert report.visits == tuple(range(N_VISITS)) and set(report.rows.values()) == {N_VISITS}
    base, transformed = simulated.reader("base"), simulated.reader("transformed")
    for v in range(N_VISITS):
        raw = base.query("wind", *_span(v))
        row = transformed.query_visit(registry, "wind", instrument="Cam", visit=v)
        assert len(row) == 1 and row.columns["n_samples"][0] == len(raw) == 30
        assert row.columns["speed"][0] == pytest.approx(raw.columns["speed"].mean())
        assert row.columns["speed_min"][0] == pytest.approx(raw.columns["speed"].min())
        assert row.columns["speed_max"][0] == pytest.approx(raw.columns["speed"].max())
        assert row.columns["time"][0] == sum(_span(v)) // 2
    before = transformed.query("wind", T0, T0 + 10_000 * SECOND)
    # late samples arrive for visit 0; re-running replaces (never duplicates) the visit's row
    simulated.write("wind", [_span(0)[0] + SECOND // 2], speed=[100.0], direction=[0.0])
    again = transform_visits(simulated, registry, instrument="Cam", topics=["wind"])
    assert again.rows == {"wind": N_VISITS}
    after = transformed.query("wind", T0, T0 + 10_000 * SECOND)
    assert len(after) == len(before) == N_VISITS
    assert after.columns["n_samples"][0] == 31 and after.columns["speed_max"][0] == 100.0
    np.testing.assert_allclose(after.columns["speed"][1:], before.columns["speed"][1:])


def test_one_interface_for_both_forms(simulated: Efd, registry: Registry) -> None:
    transform_visits(simulated, registry, instrument="Cam")
    readers = [simulated.reader("base"), simulated.reader("transformed")]
    results = [r.query_visit(registry, "dome_seeing", instrument="Cam", visit=2, fields=["fwhm"]) for r in readers]
    assert [list(r.columns)[:2] for r in results] == [["time", "fwhm"]] * 2
    assert [r.fields for r in results] == [["fwhm"], ["fwhm"]]
    assert results[1].mean("fwhm") == pytest.approx(results[0].mean("fwhm"))
    windows = [r.query("dimm_seeing", *_span(1)) for r in readers]
    assert windows[1].mean("fwhm") == pytest.approx(windows[0].mean("fwhm"))
    assert readers[0].topics() == readers[1].topics() == sorted(TOPICS)


def test_dataset_association(simulated: Efd, registry: Registry) -> None:
    transform_visits(simulated, registry, instrument="Cam")
    registry.register_run("run")
    registry.register_dataset_type(DatasetType("calexp", ["instrument", "visit", "detector"], "ExposureF",
                                               metadata={"efd_dome_seeing": "float", "efd_wind": "float"}))
    registry.register_dataset_type(DatasetType("raw", ["instrument", "exposure", "detector"], "Exposure"))
    (calexp,) = registry.insert_datasets("calexp", [{"instrument": "Cam", "visit": 3, "detector": 0}], "run")
    (raw,) = registry.insert_datasets("raw", [{"instrument": "Cam", "exposure": 3, "detector": 0}], "run")
    for form in ("base", "transformed"):
        reader = simulated.reader(form)
        by_calexp = reader.query_dataset(registry, calexp, ["dome_seeing", "wind"])
        by_raw = reader.query_dataset(registry, raw, ["dome_seeing", "wind"])
        direct = simulated.reader("base").query("dome_seeing", *_span(3))
        assert by_calexp["dome_seeing"].mean("fwhm") == pytest.approx(direct.mean("fwhm"))
        assert by_raw["wind"].mean("speed") == pytest.approx(by_calexp["wind"].mean("speed"))
    stored = record_dataset_metadata(simulated.reader("transformed"), registry, calexp,
                                     {"efd_dome_seeing": "dome_seeing.fwhm", "efd_wind": "wind.speed"})
    assert registry.get_dataset_metadata(calexp) == stored
    assert stored["efd_dome_seeing"] == pytest.approx(direct.mean("fwhm"))
    with pytest.raises(DatasetMetadataError, match="not declared"):
        record_dataset_metadata(simulated.reader("base"), registry, calexp, {"efd_temp": "temperature.air"})
    with pytest.raises(EfdInputError, match="<topic>.<field>"):
        record_dataset_metadata(simulated.reader("base"), registry, calexp, {"efd_wind": "wind"})


def test_empty_windows_say_so(simulated: Efd, registry: Registry) -> None:
    later = T0 + 10**6 * SECOND
    got = simulated.reader("base").query("wind", later, later + SECOND)
    assert got.empty and len(got) == 0 and "no base samples of 'wind'" in got.message
    assert list(got.columns) == ["time", "speed", "direction"] and got.mean("speed") is None
    not_yet = simulated.reader("transformed").query_visit(registry, "wind", instrument="Cam", visit=1)
    assert not_yet.empty and "run transform_visits" in not_yet.message
    assert simulated.reader("base").query("wind", T0, T0 + SECOND).message == ""


def test_errors_name_what_exists(efd: Efd, simulated: Efd, registry: Registry) -> None:
    with pytest.raises(UnknownTopicError, match="existing topics: dimm_seeing, dome_seeing, rotator") as info:
        simulated.reader("base").query("humidity", T0, T0 + SECOND)
    assert isinstance(info.value, LookupError) and isinstance(info.value, NightshiftError)
    with pytest.raises(UnknownTopicError):
        simulated.write("humidity", [T0], value=[1.0])
    with pytest.raises(EfdInputError, match="has fields"):
        simulated.reader("transformed").query("wind", T0, T0 + SECOND, fields=["gust"])
    with pytest.raises(EfdInputError, match="end > begin"):
        simulated.reader("base").query("wind", T0, T0)
    with pytest.raises(EfdInputError, match="no visit Cam/99"):
        simulated.reader("base").query_visit(registry, "wind", instrument="Cam", visit=99)
    with pytest.raises(EfdInputError, match="form is one of"):
        simulated.reader("raw")  # type: ignore[arg-type]  # deliberately not a form
    with pytest.raises(EfdInputError, match="3 values for 2 times"):
        simulated.write("rotator", [T0, T0 + 1], angle=[1.0, 2.0, 3.0])


def test_missing_tables_are_a_clear_error(pg_dsn: str, unique_name: str) -> None:
    with Efd(EfdSettings(dsn=pg_dsn, schema_name=f"efd_none_{unique_name}")) as db, \
            pytest.raises(EfdSchemaError, match=r"call Efd.create\(\)"):
        db.reader("base").query("wind", T0, T0 + SECOND)


def test_settings_mask_the_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_EFD_DSN", "postgresql://u:hunter2@db:5432/x")
    settings = EfdSettings()
    assert "hunter2" not in repr(settings) and settings.url().startswith("postgresql+psycopg://")
    with pytest.raises(ValueError, match="identifier"):
        EfdSettings(dsn="postgresql://x", schema_name="Robert'); DROP")
