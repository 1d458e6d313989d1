"""Several instruments and sky maps in one repository; new repositories with improved records.

REQ-0020, REQ-0021, REQ-0022, REQ-0023, REQ-0059; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from registry_support import CALEXP, COADD, RegistryFactory, all_data_ids, make_registry, populate, registry  # noqa: F401

from nightshift.butler import DatasetType
from nightshift.butler.registry import ConflictingDefinitionError, Registry
from nightshift.sky import HealpixSkyMap, point_pixel


def test_several_instruments_in_one_repository(registry: Registry) -> None:
    populate(registry, instrument="LSSTCam", n_visits=3, n_detectors=3)
    populate(registry, instrument="LATISS", n_visits=2, n_detectors=1)
    registry.register_run("run")
    registry.register_dataset_type(CALEXP)
    registry.insert_datasets("calexp", all_data_ids("LSSTCam", 3, 3), "run")
    registry.insert_datasets("calexp", all_data_ids("LATISS", 2, 1), "run")
    assert len(registry.query_datasets("calexp", "run", where="instrument = 'LATISS'")) == 2
    assert len(registry.query_datasets("calexp", "run", where="instrument = 'LSSTCam' AND visit = 1")) == 3
    ids = registry.query_data_ids(["visit", "detector"], where="visit = 1")
    assert sorted((d["instrument"], d["detector"]) for d in ids) == [
        ("LATISS", 0), ("LSSTCam", 0), ("LSSTCam", 1), ("LSSTCam", 2)
    ]
    # the same visit id in two instruments are two different visits
    recs = registry.query_dimension_records("visit", where="visit = 1")
    assert {r.instrument for r in recs} == {"LATISS", "LSSTCam"}


def test_sky_maps_added_from_config_and_object(registry: Registry) -> None:
    """REQ-0020 (config file or code object) and REQ-0021 (two tilings at once)."""
    tract = point_pixel(10.5, 10.5, 3)
    assert registry.register_skymap({"name": "coarse", "kind": "healpix", "tract_order": 3, "patch_levels": 1,
                                     "tracts": [tract]})
    fine = HealpixSkyMap("fine", tract_order=4, patch_levels=2, tracts=(point_pixel(10.5, 10.5, 4),))
    assert registry.register_skymap(fine)
    assert registry.register_skymap(fine) is False  # idempotent
    with pytest.raises(ConflictingDefinitionError, match="another geometry"):
        registry.register_skymap(HealpixSkyMap("fine", tract_order=5, patch_levels=1, tracts=(0,)))
    assert len(registry.query_dimension_records("patch", where="skymap = 'coarse'")) == 4
    assert len(registry.query_dimension_records("patch", where="skymap = 'fine'")) == 16
    registry.register_run("run")
    registry.register_dataset_type(COADD)
    registry.insert_dimension_records("band", [{"name": "r"}])
    registry.insert_datasets("deepCoadd", [{"skymap": "coarse", "tract": tract, "patch": 0, "band": "r"},
                                           {"skymap": "fine", "tract": fine.tracts[0], "patch": 5, "band": "r"}],
                             "run")
    refs = registry.query_datasets("deepCoadd", "run")
    assert {r.data_id["skymap"] for r in refs} == {"coarse", "fine"}
    hits = registry.query_data_ids(["patch"], where="patch.region OVERLAPS POINT(10.5, 10.5)")
    assert {d["skymap"] for d in hits} == {"coarse", "fine"}


def test_sky_map_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown sky map kind 'rings'"):
        HealpixSkyMap.from_config({"name": "x", "kind": "rings"})
    with pytest.raises(ValueError, match="unknown sky map config key"):
        HealpixSkyMap.from_config({"name": "x", "tract_size": 3})


def test_new_repository_with_improved_records(make_registry: RegistryFactory) -> None:
    """REQ-0023: records improved by processing go to a new repository; the original is unchanged."""
    original = make_registry.create()
    populate(original, n_visits=3, n_detectors=2)
    improved = make_registry.create()
    psf = {0: 0.61, 2: 0.93}  # e.g. measured by processing in the original repository

    def improve(rec):
        if rec.element == "visit" and rec.id in psf:
            return {"psf_size": psf[rec.id], "seeing": psf[rec.id]}
        return None

    counts = improved.copy_dimension_records_from(original, improve=improve)
    assert counts["visit"] == 3 and counts["detector"] == 2
    assert improved.get_dimension_record("visit", {"instrument": "Cam", "visit": 2}).psf_size == 0.93
    assert improved.get_dimension_record("visit", {"instrument": "Cam", "visit": 1}).psf_size is None
    assert original.get_dimension_record("visit", {"instrument": "Cam", "visit": 2}).psf_size is None
    assert original.get_dimension_record("visit", {"instrument": "Cam", "visit": 2}).seeing == pytest.approx(0.7)
    assert len(improved.query_join_rows("visit_definition")) == 3
    # the copy is a working repository: regions, joins and queries on the improved values
    assert [d["visit"] for d in improved.query_data_ids(["visit"], where="visit.psf_size > 0.9")] == [2]
    assert improved.query_data_ids(["exposure", "visit"], where="visit = 1") == [
        {"instrument": "Cam", "exposure": 1, "visit": 1}
    ]
    # copying again changes nothing
    assert improved.copy_dimension_records_from(original)["visit"] == 0


def test_dataset_types_registered_programmatically(registry: Registry) -> None:
    """REQ-0059 (programmatic half): a new dataset type can be registered at any time and used at once.

    The pre-flight half is ``tests/pipe/test_preflight_registration.py``."""
    populate(registry, n_visits=1, n_detectors=1)
    registry.register_run("run")
    registry.register_dataset_type(CALEXP)
    registry.insert_datasets("calexp", all_data_ids(n_visits=1, n_detectors=1), "run")
    new = DatasetType("isr_metadata", ["instrument", "exposure", "detector"], "TaskMetadata")
    assert registry.register_dataset_type(new)
    (ref,) = registry.insert_datasets(new, [{"instrument": "Cam", "exposure": 0, "detector": 0}], "run")
    assert registry.query_datasets("isr_metadata", "run") == [ref]
