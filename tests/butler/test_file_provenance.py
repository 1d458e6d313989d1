"""Provenance inside files (DMS-MWBT-REQ-0093, 0096): a file copied out alone still tells its history.

Each format carries the immediate parents (ids, dataset types) and the raw
data IDs the dataset descends from: FITS in a ``PROVENANCE`` HDU, Parquet in
its schema metadata, HDF5 in a root attribute, formats without metadata in a
JSON sidecar. :func:`read_file_provenance` reads it from the file alone, with
no registry and no repository left.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.table import Table
from test_formatters import make_exposure

from nightshift.butler import DatasetRef, DatasetType, FileProvenance, ProvenanceDataset, read_file_provenance
from nightshift.butler._file_provenance import SIDECAR_SUFFIX
from nightshift.butler.datastores import FileDatastore, PosixBackend
from nightshift.butler.formatters import FormatterFactory

RUN = "proc"
RAW = DatasetType("raw", ["instrument", "exposure", "detector"], "NumpyArray")


def _parents() -> FileProvenance:
    raws = [DatasetRef(RAW, {"instrument": "Cam", "exposure": e, "detector": 4}, "raw/all") for e in (7, 8)]
    bias = DatasetRef(DatasetType("bias", ["instrument", "detector"], "NumpyArray"),
                      {"instrument": "Cam", "detector": 4}, "calib")
    return FileProvenance(tuple(ProvenanceDataset.from_ref(r) for r in [*raws, bias]),
                          tuple(ProvenanceDataset.from_ref(r) for r in [*raws, bias]), "isr", "q-123")


CASES: list[tuple[str, str, str | None, Any]] = [
    # dataset type, storage class, formatter override, object
    ("calexp", "Exposure", None, lambda: make_exposure((16, 20))),
    ("calexp_h5", "Exposure", "hdf5_exposure", lambda: make_exposure((16, 20))),
    ("image", "NumpyArray", "fits_image", lambda: np.arange(12.0).reshape(3, 4)),
    ("src", "AstropyTable", "fits_table", lambda: Table({"a": np.arange(3), "b": np.ones(3)})),
    ("src_parq", "AstropyTable", "parquet", lambda: Table({"a": np.arange(3), "b": np.ones(3)})),
    ("metric", "StructuredDataDict", None, lambda: {"v": 1.5}),
    ("array", "NumpyArray", None, lambda: np.arange(5)),
]
SIDECAR_TYPES = {"metric", "array"}


@pytest.mark.parametrize(("name", "storage_class", "formatter", "make"), CASES, ids=[c[0] for c in CASES])
def test_each_format_carries_its_provenance(tmp_path: Path, name: str, storage_class: str, formatter: str | None,
                                            make: Any) -> None:
    formatters = FormatterFactory({"dataset_types": {name: formatter}} if formatter else None)
    ds = FileDatastore(PosixBackend(tmp_path / "repo"), formatters=formatters)
    ref = DatasetRef(DatasetType(name, ["instrument", "visit", "detector"], storage_class),
                     {"instrument": "Cam", "visit": 3, "detector": 4}, RUN)
    obj = make()
    prov = _parents()
    ds.put(obj, ref, provenance=prov)
    back = ds.get(ref)  # the dataset reads back as before, checksum verified
    if isinstance(obj, np.ndarray):
        np.testing.assert_array_equal(back, obj)
    elif isinstance(obj, Table):
        assert back.colnames == obj.colnames
    elif isinstance(obj, dict):
        assert back == obj
    else:
        np.testing.assert_array_equal(back.image, obj.image)
    # copy the file out alone, then remove the repository: nothing else is left to ask
    stored = ds.backend.local_path(ds.record(ref).path)
    alone = tmp_path / "elsewhere" / stored.name
    alone.parent.mkdir()
    shutil.copyfile(stored, alone)
    sidecar = Path(str(stored) + SIDECAR_SUFFIX)
    if name in SIDECAR_TYPES:
        assert sidecar.is_file()
        assert read_file_provenance(alone) is None  # no metadata in the format: the sidecar must come along
        shutil.copyfile(sidecar, str(alone) + SIDECAR_SUFFIX)
    else:
        assert not sidecar.exists()
    shutil.rmtree(tmp_path / "repo")
    got = read_file_provenance(alone)
    assert got is not None
    assert got == prov.for_output(ref)
    assert got.output == ProvenanceDataset(str(ref.id), name, RUN, {"instrument": "Cam", "visit": 3, "detector": 4})
    assert [(d.id, d.dataset_type) for d in got.inputs] == [(d.id, d.dataset_type) for d in prov.inputs]
    assert {"instrument": "Cam", "exposure": 7, "detector": 4} in got.raw_data_ids
    assert got.task_label == "isr" and got.quantum_id == "q-123"


def test_without_provenance_nothing_is_added(tmp_path: Path) -> None:
    ds = FileDatastore(PosixBackend(tmp_path / "repo"))
    ref = DatasetRef(DatasetType("calexp", ["instrument", "visit", "detector"], "Exposure"),
                     {"instrument": "Cam", "visit": 3, "detector": 4}, RUN)
    ds.put(make_exposure((8, 8)), ref)
    assert read_file_provenance(ds.backend.local_path(ds.record(ref).path)) is None
    with pytest.raises(FileNotFoundError):
        read_file_provenance(tmp_path / "nope.fits")


def test_sidecar_goes_with_the_dataset(tmp_path: Path) -> None:
    """A removed dataset leaves no sidecar; a failed put leaves none either."""
    ds = FileDatastore(PosixBackend(tmp_path / "repo"))
    ref = DatasetRef(DatasetType("metric", ["instrument", "visit"], "StructuredDataDict"),
                     {"instrument": "Cam", "visit": 1}, RUN)
    ds.put({"v": 1}, ref, provenance=_parents())
    path = ds.backend.local_path(ds.record(ref).path)
    assert Path(str(path) + SIDECAR_SUFFIX).is_file()
    ds.remove(ref)
    assert not any(p.is_file() for p in (tmp_path / "repo").rglob("*"))
    with pytest.raises(Exception):  # noqa: B017, PT011 - any formatter error; the point is what is left
        ds.put({"v": object()}, ref, provenance=_parents())
    assert not any(p.is_file() for p in (tmp_path / "repo").rglob("*"))


def test_transfer_carries_the_sidecar(tmp_path: Path) -> None:
    """A dataset copied to another repository's datastore keeps its provenance, sidecar included."""
    from nightshift.butler.datastores import transfer_dataset

    src = FileDatastore(PosixBackend(tmp_path / "a"))
    dst = FileDatastore(PosixBackend(tmp_path / "b"))
    ref = DatasetRef(DatasetType("metric", ["instrument", "visit"], "StructuredDataDict"),
                     {"instrument": "Cam", "visit": 1}, RUN)
    src.put({"v": 1}, ref, provenance=_parents())
    transfer_dataset(src, dst, ref)
    got = read_file_provenance(dst.backend.local_path(dst.record(ref).path))
    assert got == _parents().for_output(ref)
    dst.remove(ref)
    assert not any(p.is_file() for p in (tmp_path / "b").rglob("*"))
