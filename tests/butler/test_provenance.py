"""Provenance (REQ-0093..0095) and dataset metadata in the registry (REQ-0091), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from registry_support import CALEXP, COADD, RAW, all_data_ids, make_registry, populate, registry  # noqa: F401

from nightshift.butler import DatasetType
from nightshift.butler.registry import DatasetMetadataError, ProvenanceError, Registry

CALIB_TASK = dict(config_hash="sha256:c0ffee", code_version="nightshift 0.1.0")


def _chain(reg: Registry):
    """raw -> calexp (per visit, detector) -> coadd of one patch from all calexps but one."""
    populate(reg, n_visits=3, n_detectors=2)
    reg.register_skymap({"name": "hpx", "tract_order": 3, "patch_levels": 0, "tracts": [308]})
    reg.register_run("raw")
    reg.register_run("proc")
    for dt in (RAW, CALEXP, COADD):
        reg.register_dataset_type(dt)
    raws = reg.insert_datasets("raw", all_data_ids(n_visits=3, n_detectors=2, key="exposure"), "raw")
    calexps = reg.insert_datasets("calexp", all_data_ids(n_visits=3, n_detectors=2), "proc")
    for raw, calexp in zip(raws, calexps, strict=True):
        reg.record_quantum("isr_calibrate", data_id=calexp.data_id, predicted_inputs=[raw], actual_inputs=[raw],
                           outputs=[calexp], run="proc", **CALIB_TASK)
    (coadd,) = reg.insert_datasets("deepCoadd", [{"skymap": "hpx", "tract": 308, "patch": 0, "band": "g"}], "proc")
    # predicted: all 6 calexps; actually used: 5 (visit 2 detector 1 rejected)
    used = [c for c in calexps if not (c.data_id["visit"] == 2 and c.data_id["detector"] == 1)]
    reg.record_quantum("assembleCoadd", data_id=coadd.data_id, predicted_inputs=calexps, actual_inputs=used,
                       outputs=[coadd], run="proc", config_hash="sha256:abc", code_version="v2")
    return raws, calexps, used, coadd


def test_predicted_and_actual_inputs_are_recorded(registry: Registry) -> None:
    raws, calexps, used, coadd = _chain(registry)
    prov = registry.get_provenance(coadd)
    assert prov is not None
    assert prov.task_label == "assembleCoadd" and prov.config_hash == "sha256:abc" and prov.code_version == "v2"
    assert prov.run == "proc" and prov.data_id == dict(coadd.data_id)
    assert set(prov.predicted_inputs) == set(calexps)
    assert set(prov.actual_inputs) == set(used) and len(prov.actual_inputs) == 5
    assert prov.outputs == (coadd,)
    assert registry.get_provenance(raws[0]) is None


def test_ancestors_down_to_raw_data_ids(registry: Registry) -> None:
    raws, calexps, used, coadd = _chain(registry)
    ancestors = registry.query_ancestors(coadd)
    assert set(ancestors) == set(used) | {r for r in raws if r.data_id["exposure"] != 2 or r.data_id["detector"] != 1}
    roots = registry.query_ancestors(coadd, roots_only=True)
    assert {(r.data_id["exposure"], r.data_id["detector"]) for r in roots} == {
        (e, d) for e in range(3) for d in range(2)
    } - {(2, 1)}
    predicted_roots = registry.query_ancestors(coadd, roots_only=True, actual_only=False)
    assert len(predicted_roots) == 6


def test_descendants_of_a_bad_raw(registry: Registry) -> None:
    """REQ-0094: which coadds used this bad raw?"""
    raws, calexps, used, coadd = _chain(registry)
    bad = next(r for r in raws if r.data_id["exposure"] == 0 and r.data_id["detector"] == 0)
    desc = registry.query_descendants(bad)
    assert {d.dataset_type.name for d in desc} == {"calexp", "deepCoadd"}
    assert registry.query_descendants(bad, dataset_type="deepCoadd") == [coadd]
    rejected = next(r for r in raws if r.data_id["exposure"] == 2 and r.data_id["detector"] == 1)
    assert registry.query_descendants(rejected, dataset_type="deepCoadd") == []
    assert registry.query_descendants(rejected, dataset_type="deepCoadd", actual_only=False) == [coadd]


def test_inconsistent_provenance_is_refused(registry: Registry) -> None:
    raws, calexps, used, coadd = _chain(registry)
    with pytest.raises(ProvenanceError, match="not predicted"):
        registry.record_quantum("t", data_id={}, predicted_inputs=raws[:1], actual_inputs=raws[:2], outputs=[],
                                **CALIB_TASK)
    with pytest.raises(ProvenanceError, match="already has a producer"):
        registry.record_quantum("t", data_id={}, predicted_inputs=raws[:1], actual_inputs=None,
                                outputs=[calexps[0]], **CALIB_TASK)
    with pytest.raises(ProvenanceError, match="non-empty"):
        registry.record_quantum("t", data_id={}, predicted_inputs=[], actual_inputs=None, outputs=[],
                                config_hash="", code_version="x")
    assert registry.get_provenance(calexps[0]).task_label == "isr_calibrate"


def test_dataset_metadata_without_reading_files(registry: Registry) -> None:
    populate(registry, n_visits=1, n_detectors=2)
    registry.register_run("run")
    registry.register_dataset_type(CALEXP)
    a, b = registry.insert_datasets("calexp", all_data_ids(n_visits=1, n_detectors=2), "run",
                                    metadata=[{"psf_fwhm": 0.71, "n_sources": 1200}, None])
    assert registry.get_dataset_metadata(a) == {"psf_fwhm": 0.71, "n_sources": 1200}
    assert registry.get_dataset_metadata(b) == {}
    registry.set_dataset_metadata(b, {"n_sources": 17})
    registry.set_dataset_metadata(b, {"psf_fwhm": 0.9})
    assert registry.get_dataset_metadata(b.id) == {"n_sources": 17, "psf_fwhm": 0.9}
    with pytest.raises(DatasetMetadataError, match="not declared"):
        registry.set_dataset_metadata(a, {"zeropoint": 27.0})
    with pytest.raises(DatasetMetadataError, match="must be int"):
        registry.set_dataset_metadata(a, {"n_sources": "many"})
    with pytest.raises(DatasetMetadataError, match="type 'complex' unknown"):
        registry.register_dataset_type(DatasetType("x", ["instrument"], "S", metadata={"z": "complex"}))
    assert registry.get_dataset_metadata(a)["n_sources"] == 1200
