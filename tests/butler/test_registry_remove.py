"""Registry.remove_datasets: all-or-nothing removal that keeps provenance honest, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from registry_support import BIAS, SECOND, T0, make_registry, registry  # noqa: F401
from test_provenance import _chain

from nightshift.butler.registry import (
    CollectionType,
    DatasetInUseError,
    MissingDatasetError,
    Registry,
    Timespan,
)


def _count(reg: Registry, table: sa.Table) -> int:
    with reg._db.reading() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_remove_takes_associations_metadata_and_flags_along(registry: Registry) -> None:
    raws, calexps, used, coadd = _chain(registry)
    registry.remove_datasets([coadd])  # an output nothing depends on: allowed, and its quantum goes
    target = calexps[0]
    registry.register_collection("tagged", CollectionType.TAGGED)
    registry.associate("tagged", calexps[:2])
    registry.set_dataset_metadata(target, {"psf_fwhm": 0.7})
    registry.flag_datasets([target], "bad", "streak")
    registry.remove_datasets([target, calexps[1]])  # both calexps are outputs, not inputs of anything left
    assert registry.get_dataset(target.id) is None
    assert registry.find_dataset("calexp", target.data_id, "proc") is None
    assert registry.query_datasets("calexp", "tagged") == []
    assert registry.get_dataset_metadata(target) == {}
    assert registry.get_dataset_flags(target) == {}
    assert registry.get_provenance(target) is None
    assert registry.get_dataset(calexps[2].id) == calexps[2]  # untouched
    assert registry.get_provenance(calexps[2]) is not None
    assert _count(registry, registry._storage.tables.quantum) == 4  # 6 isr quanta - 2; the coadd quantum went with it
    assert registry.get_dataset(raws[0].id) == raws[0]
    assert registry.query_descendants(raws[0]) == []  # its only descendant is gone


def test_input_of_an_existing_output_is_refused_unless_forced(registry: Registry) -> None:
    raws, calexps, used, coadd = _chain(registry)
    before = _count(registry, registry._storage.tables.dataset)
    with pytest.raises(DatasetInUseError) as info:
        registry.remove_datasets([calexps[-1]])  # predicted, not used, by the coadd
    msg = str(info.value)
    assert "deepCoadd" in msg and "predicted input" in msg and str(calexps[-1].id) in msg and "force=True" in msg
    assert info.value.dataset_id == calexps[-1].id and info.value.used_by == coadd.id
    assert _count(registry, registry._storage.tables.dataset) == before  # nothing was removed
    with pytest.raises(DatasetInUseError, match="actual input of calexp"):
        registry.remove_datasets([coadd, raws[0]])  # the raw's calexp stays
    assert registry.get_dataset(coadd.id) == coadd and registry.get_dataset(raws[0].id) == raws[0]
    # the whole lineage at once is fine: nothing left loses an input
    registry.remove_datasets([coadd, *calexps, *raws])
    assert _count(registry, registry._storage.tables.dataset) == before - 13
    assert _count(registry, registry._storage.tables.quantum) == 0
    assert _count(registry, registry._storage.tables.quantum_input) == 0


def test_force_drops_the_link_and_keeps_the_output(registry: Registry) -> None:
    raws, calexps, used, coadd = _chain(registry)
    registry.remove_datasets([used[0]], force=True)
    prov = registry.get_provenance(coadd)
    assert prov is not None and used[0] not in prov.actual_inputs and len(prov.actual_inputs) == 4
    assert used[0] not in registry.query_ancestors(coadd)


def test_unknown_dataset_removes_nothing(registry: Registry) -> None:
    raws, calexps, used, coadd = _chain(registry)
    with pytest.raises(MissingDatasetError, match="not in the registry"):
        registry.remove_datasets([coadd, uuid.uuid4()])
    assert registry.get_dataset(coadd.id) == coadd
    assert registry.remove_datasets([]) == 0


def test_certified_calibration_is_removed_from_its_collection(registry: Registry) -> None:
    _chain(registry)
    registry.register_dataset_type(BIAS)
    registry.register_run("calib/run")
    registry.register_collection("calib", CollectionType.CALIBRATION)
    (bias,) = registry.insert_datasets("bias", [{"instrument": "Cam", "detector": 0}], "calib/run")
    registry.certify("calib", [bias], Timespan(T0, T0 + 1000 * SECOND))
    assert registry.remove_datasets([bias]) == 1
    assert registry.find_dataset("bias", {"instrument": "Cam", "detector": 0}, "calib", time=T0 + SECOND) is None
    assert _count(registry, registry._storage.tables.dataset_calib) == 0


def test_removal_inside_a_failed_transaction_is_rolled_back(registry: Registry) -> None:
    raws, calexps, used, coadd = _chain(registry)
    with pytest.raises(RuntimeError, match="injected"), registry.transaction():
        registry.remove_datasets([coadd])
        raise RuntimeError("injected")
    assert registry.get_dataset(coadd.id) == coadd
    assert registry.get_provenance(coadd) is not None
    # and the same data ID can be written again after a committed removal
    registry.remove_datasets([coadd])
    (again,) = registry.insert_datasets("deepCoadd", [dict(coadd.data_id)], "proc")
    assert again.id == coadd.id and registry.get_provenance(again) is None
