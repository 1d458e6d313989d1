"""Shared fixtures of the registry conformance suite: every test runs on SQLite and on the real PostgreSQL.

Imported by the ``test_registry_*``, ``test_query*``, ``test_provenance*`` modules.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from nightshift.butler import DatasetType
from nightshift.butler.registry import Registry, Timespan

BACKENDS = ["sqlite", "postgresql"]


def pg_url(dsn: str) -> str:
    return "postgresql+psycopg://" + dsn.split("://", 1)[1]


def drop_schema(dsn: str, schema: str) -> None:
    engine = sa.create_engine(pg_url(dsn))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


class RegistryFactory:
    """Creates fresh registries on one backend and cleans them up."""

    def __init__(self, backend: str, tmp: Path, dsn: str | None) -> None:
        self.backend = backend
        self.tmp = tmp
        self.dsn = dsn
        self._created: list[tuple[Registry, str | None]] = []

    def location(self) -> tuple[str, str | None]:
        name = "t" + uuid.uuid4().hex[:10]
        if self.backend == "sqlite":
            return str(self.tmp / name), None
        return self.dsn or "", name

    def create(self) -> Registry:
        loc, schema = self.location()
        reg = Registry.create(loc, schema=schema)
        self._created.append((reg, schema))
        return reg

    def open(self, reg: Registry) -> Registry:
        """A second, independent handle on the same repository."""
        schema = next(s for r, s in self._created if r is reg)
        other = Registry(reg.url, schema=schema)
        self._created.append((other, None))
        return other

    def close(self) -> None:
        for reg, schema in reversed(self._created):
            reg.close()
            if schema is not None and self.dsn is not None:
                drop_schema(self.dsn, schema)


@pytest.fixture(params=BACKENDS)
def make_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryFactory]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    factory = RegistryFactory(request.param, tmp_path, dsn)
    yield factory
    factory.close()


@pytest.fixture
def registry(make_registry: RegistryFactory) -> Registry:
    return make_registry.create()


CALEXP = DatasetType("calexp", ["instrument", "visit", "detector"], "ExposureF",
                     metadata={"psf_fwhm": "float", "n_sources": "int"})
RAW = DatasetType("raw", ["instrument", "exposure", "detector"], "Exposure")
BIAS = DatasetType("bias", ["instrument", "detector"], "ExposureF", is_calibration=True)
COADD = DatasetType("deepCoadd", ["skymap", "tract", "patch", "band"], "ExposureF")

T0 = 1_700_000_000 * 10**9  # an instant in TAI ns
SECOND = 10**9


def visit_region(v: int) -> list[tuple[float, float]]:
    ra = 10.0 + 0.6 * v
    return [(ra, 10.0), (ra + 0.5, 10.0), (ra + 0.5, 10.5), (ra, 10.5)]


def populate(reg: Registry, *, instrument: str = "Cam", n_visits: int = 6, n_detectors: int = 4) -> None:
    """Instrument, filters, detectors, exposures = visits (1:1) with records and regions."""
    reg.insert_dimension_records("instrument", [{"name": instrument, "visit_max": 10**6, "detector_max": 100}])
    reg.insert_dimension_records("band", [{"name": "g"}, {"name": "r"}], skip_existing=True)
    reg.insert_dimension_records("physical_filter", [
        {"instrument": instrument, "name": "g_01", "band": "g"},
        {"instrument": instrument, "name": "r_01", "band": "r"},
    ])
    reg.insert_dimension_records("detector", [
        {"instrument": instrument, "id": d, "full_name": f"R00_S{d}", "purpose": "SCIENCE"} for d in range(n_detectors)
    ])
    reg.insert_dimension_records("day_obs", [{"instrument": instrument, "id": 20250101}])
    reg.insert_dimension_records("group", [{"instrument": instrument, "name": f"g{v}"} for v in range(n_visits)])
    common = lambda v: {  # noqa: E731
        "instrument": instrument, "id": v, "physical_filter": "r_01" if v % 2 else "g_01", "day_obs": 20250101,
        "timespan": Timespan(T0 + v * 100 * SECOND, T0 + (v * 100 + 30) * SECOND), "exposure_time": 30.0,
    }
    reg.insert_dimension_records("exposure", [
        {**common(v), "group": f"g{v}", "observation_type": "science", "obs_id": f"CA_{v:05d}"}
        for v in range(n_visits)
    ])
    reg.insert_dimension_records("visit", [
        {**common(v), "seeing": 0.5 + 0.1 * v, "airmass": 1.0 + 0.05 * v, "region": visit_region(v),
         "boresight_ra": 10.25 + 0.6 * v, "boresight_dec": 10.25}
        for v in range(n_visits)
    ])
    reg.insert_join_rows("visit_definition", [
        {"instrument": instrument, "exposure": v, "visit": v} for v in range(n_visits)
    ])


def all_data_ids(instrument: str = "Cam", n_visits: int = 6, n_detectors: int = 4, key: str = "visit") -> list[dict]:
    return [{"instrument": instrument, key: v, "detector": d} for v in range(n_visits) for d in range(n_detectors)]


Factory = Callable[[], Registry]


@pytest.fixture(scope="module", params=BACKENDS)
def populated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A read-mostly repository shared by one module's query tests, per backend.

    Instrument ``Cam`` (6 visits = exposures, 4 detectors), sky map ``hpx`` covering the
    visits, run ``run`` with ``raw`` and ``calexp`` for every (visit, detector).
    """
    from nightshift.sky import point_pixel

    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    factory = RegistryFactory(request.param, tmp_path_factory.mktemp("populated"), dsn)
    reg = factory.create()
    populate(reg)
    tracts = sorted({point_pixel(ra, dec, 3) for v in range(6) for ra, dec in visit_region(v)})
    reg.register_skymap({"name": "hpx", "tract_order": 3, "patch_levels": 2, "tracts": tracts})
    reg.register_run("run")
    for dt in (CALEXP, RAW, COADD):
        reg.register_dataset_type(dt)
    reg.insert_datasets("calexp", all_data_ids(), "run")
    reg.insert_datasets("raw", all_data_ids(key="exposure"), "run")
    yield reg
    factory.close()


def concurrent_writer(url: str, schema: str | None, worker: int, n_batches: int) -> int:
    """Body of one writer process: races on a shared collection, then writes its own datasets."""
    reg = Registry(url, schema=schema)
    try:
        reg.register_run("shared")
        reg.register_run(f"w{worker}")
        n = 0
        for b in range(n_batches):
            with reg.transaction():
                reg.insert_datasets("calexp", [{"instrument": "Cam", "visit": b % 6, "detector": d}
                                               for d in range(4)], f"w{worker}", skip_existing=True)
                reg.insert_datasets("calexp", [{"instrument": "Cam", "visit": b % 6, "detector": worker}],
                                    "shared", skip_existing=True)
            n += 4
        return n
    finally:
        reg.close()
