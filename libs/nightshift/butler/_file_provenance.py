"""Provenance carried inside the files a quantum writes (DMS-MWBT-REQ-0093, 0096).

The registry records provenance (``Registry.get_provenance``,
``query_ancestors``); this module puts the same story in the file itself, so
a file copied out of the repository alone still says where it came from, and
reading it back needs no registry:

* FITS (``.fits``): an extra binary-table HDU ``PROVENANCE`` (one row per
  parent and per raw ancestor; the output's own id, type, run, data ID, task
  and quantum as header cards);
* Parquet: the schema metadata key ``nightshift.provenance`` (JSON);
* HDF5: the root attribute ``nightshift_provenance`` (JSON);
* formats with no metadata (JSON, YAML, NumPy ``.npy``, Avro, pickles...): a
  JSON sidecar ``<file>.provenance.json`` next to the file.

What is recorded: the immediate parents (the quantum's *actual* inputs: id,
dataset type, run, data ID) and the roots of the dataset's ancestry, the
datasets no quantum produced (raws, and ingested calibrations or reference
catalogs), whose data IDs are the raw data IDs the dataset descends from.

:func:`read_file_provenance` reads any of these back from a local file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._dataset_ref import DatasetRef

__all__ = [
    "PROVENANCE_EXTNAME",
    "SIDECAR_SUFFIX",
    "FileProvenance",
    "ProvenanceDataset",
    "embed_after_write",
    "read_file_provenance",
]

#: Extension name of the FITS provenance HDU.
PROVENANCE_EXTNAME = "PROVENANCE"
#: Suffix of the JSON sidecar written next to files whose format has no metadata.
SIDECAR_SUFFIX = ".provenance.json"
PARQUET_KEY = b"nightshift.provenance"
HDF5_ATTR = "nightshift_provenance"
_FITS_SUFFIXES = (".fits", ".fit", ".fz", ".fits.gz")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_PARQUET_SUFFIXES = (".parq", ".parquet", ".pq")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ProvenanceDataset:
    """One dataset named in a file's provenance: a parent or a raw ancestor."""

    id: str
    dataset_type: str
    run: str
    data_id: Mapping[str, int | str]

    @classmethod
    def from_ref(cls, ref: DatasetRef) -> ProvenanceDataset:
        """The provenance entry of a resolved ref."""
        return cls(str(ref.id), ref.dataset_type.name, ref.run, dict(ref.data_id))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "dataset_type": self.dataset_type, "run": self.run, "data_id": dict(self.data_id)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProvenanceDataset:
        return cls(str(d["id"]), str(d["dataset_type"]), str(d["run"]), dict(d["data_id"]))


@dataclass(frozen=True)
class FileProvenance:
    """Where a file's dataset came from: its parents and its raw ancestors.

    Attributes
    ----------
    inputs : tuple of ProvenanceDataset
        The immediate parents (the quantum's actual inputs).
    raw_ancestors : tuple of ProvenanceDataset
        The roots of its ancestry: datasets no quantum produced (raws, ingested calibrations).
    task_label, quantum_id : str or None
        The quantum that wrote it.
    output : ProvenanceDataset or None
        The dataset itself (filled in by the datastore when it writes the file).
    """

    inputs: tuple[ProvenanceDataset, ...] = ()
    raw_ancestors: tuple[ProvenanceDataset, ...] = ()
    task_label: str | None = None
    quantum_id: str | None = None
    output: ProvenanceDataset | None = field(default=None)

    @property
    def input_ids(self) -> list[str]:
        """Dataset ids of the immediate parents."""
        return [d.id for d in self.inputs]

    @property
    def raw_data_ids(self) -> list[dict[str, int | str]]:
        """Data IDs of the raw ancestors (the raw data IDs the dataset descends from)."""
        return [dict(d.data_id) for d in self.raw_ancestors]

    @classmethod
    def from_quantum(cls, registry: Any, inputs: Iterable[DatasetRef], *, task_label: str | None = None,
                     quantum_id: str | None = None) -> FileProvenance:
        """Provenance of the outputs of a quantum that read ``inputs``.

        The raw ancestors come from the registry's provenance of each input
        (``query_ancestors(roots_only=True)``); an input no quantum produced
        is a root itself.
        """
        parents = list(dict.fromkeys(inputs))
        roots: dict[str, ProvenanceDataset] = {}
        for ref in parents:
            ancestors = registry.query_ancestors(ref, roots_only=True) or [ref]
            for root in ancestors:
                roots.setdefault(str(root.id), ProvenanceDataset.from_ref(root))
        return cls(tuple(ProvenanceDataset.from_ref(r) for r in parents), tuple(roots.values()),
                   task_label, quantum_id)

    def for_output(self, ref: DatasetRef) -> FileProvenance:
        """This provenance, naming ``ref`` as the dataset it describes."""
        return replace(self, output=ProvenanceDataset.from_ref(ref))

    def to_dict(self) -> dict[str, Any]:
        return {
            "nightshift_provenance": FORMAT_VERSION,
            "output": self.output.to_dict() if self.output else None,
            "task_label": self.task_label, "quantum_id": self.quantum_id,
            "inputs": [d.to_dict() for d in self.inputs],
            "raw_ancestors": [d.to_dict() for d in self.raw_ancestors],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FileProvenance:
        out = d.get("output")
        return cls(tuple(ProvenanceDataset.from_dict(x) for x in d.get("inputs", ())),
                   tuple(ProvenanceDataset.from_dict(x) for x in d.get("raw_ancestors", ())),
                   d.get("task_label"), d.get("quantum_id"),
                   ProvenanceDataset.from_dict(out) if out else None)

    @classmethod
    def from_json(cls, text: str | bytes) -> FileProvenance:
        return cls.from_dict(json.loads(text))


def _suffix_in(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


# -- FITS ----------------------------------------------------------------------------------------
def _fits_hdu(prov: FileProvenance) -> Any:
    from astropy.io import fits
    from astropy.table import Table

    rows = [("input", d) for d in prov.inputs] + [("raw", d) for d in prov.raw_ancestors]
    table = Table(
        {
            "kind": [k for k, _ in rows],
            "dataset_type": [d.dataset_type for _, d in rows],
            "dataset_id": [d.id for _, d in rows],
            "run": [d.run for _, d in rows],
            "data_id": [json.dumps(dict(d.data_id), sort_keys=True) for _, d in rows],
        },
        dtype=[str, str, str, str, str],
    )
    hdu = fits.table_to_hdu(table)
    hdu.name = PROVENANCE_EXTNAME
    h = hdu.header
    h["NSPROV"] = (FORMAT_VERSION, "nightshift provenance format version")
    if prov.output is not None:
        h["HIERARCH NS OUTPUT ID"] = prov.output.id
        h["HIERARCH NS OUTPUT TYPE"] = prov.output.dataset_type
        h["HIERARCH NS OUTPUT RUN"] = prov.output.run
        h["HIERARCH NS OUTPUT DATAID"] = json.dumps(dict(prov.output.data_id), sort_keys=True)
    if prov.task_label is not None:
        h["HIERARCH NS TASK"] = prov.task_label
    if prov.quantum_id is not None:
        h["HIERARCH NS QUANTUM"] = prov.quantum_id
    h["HIERARCH NS NINPUTS"] = (len(prov.inputs), "immediate parents (rows of kind 'input')")
    h["HIERARCH NS NRAWS"] = (len(prov.raw_ancestors), "raw ancestors (rows of kind 'raw')")
    return hdu


def _read_fits(path: Path) -> FileProvenance | None:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        if PROVENANCE_EXTNAME not in hdul:
            return None
        hdu = hdul[PROVENANCE_EXTNAME]
        h = hdu.header
        inputs: list[ProvenanceDataset] = []
        raws: list[ProvenanceDataset] = []
        data = hdu.data
        for i in range(0 if data is None else len(data)):
            row = data[i]
            entry = ProvenanceDataset(str(row["dataset_id"]), str(row["dataset_type"]), str(row["run"]),
                                      json.loads(str(row["data_id"])))
            (inputs if str(row["kind"]) == "input" else raws).append(entry)
        output = None
        if "NS OUTPUT ID" in h:
            output = ProvenanceDataset(str(h["NS OUTPUT ID"]), str(h["NS OUTPUT TYPE"]), str(h["NS OUTPUT RUN"]),
                                       json.loads(str(h["NS OUTPUT DATAID"])))
        return FileProvenance(tuple(inputs), tuple(raws), h.get("NS TASK"), h.get("NS QUANTUM"), output)


# -- embedding and reading -------------------------------------------------------------------------
def embed_after_write(path: Path, provenance: FileProvenance) -> bool:
    """Add ``provenance`` to a file just written, where its format has a place for it.

    FITS: appends the ``PROVENANCE`` HDU (no rewrite of what is there);
    HDF5: sets a root attribute. Returns False for other formats (the
    datastore then writes a sidecar).
    """
    if _suffix_in(path, _FITS_SUFFIXES):
        from astropy.io import fits

        with fits.open(path, mode="append") as hdul:
            hdul.append(_fits_hdu(provenance))
        return True
    if _suffix_in(path, _HDF5_SUFFIXES):
        import h5py

        with h5py.File(path, "a") as f:
            f.attrs[HDF5_ATTR] = provenance.to_json()
        return True
    return False


def read_file_provenance(path: str | Path) -> FileProvenance | None:
    """The provenance a file carries, read from the file alone (no registry, no repository).

    Looks in the file (FITS ``PROVENANCE`` HDU, Parquet schema metadata, HDF5
    root attribute), then in a ``<file>.provenance.json`` sidecar next to it.

    Returns
    -------
    FileProvenance or None
        None when the file carries none (not written by a quantum, or a
        sidecar format copied without its sidecar).

    Raises
    ------
    FileNotFoundError
        No such file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no file at {p}")
    found: FileProvenance | None = None
    if _suffix_in(p, _FITS_SUFFIXES):
        found = _read_fits(p)
    elif _suffix_in(p, _PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        meta = pq.read_schema(p).metadata or {}
        if PARQUET_KEY in meta:
            found = FileProvenance.from_json(meta[PARQUET_KEY])
    elif _suffix_in(p, _HDF5_SUFFIXES):
        import h5py

        with h5py.File(p, "r") as f:
            if HDF5_ATTR in f.attrs:
                value = f.attrs[HDF5_ATTR]
                found = FileProvenance.from_json(value if isinstance(value, (str, bytes)) else str(value))
    if found is None:
        sidecar = p.with_name(p.name + SIDECAR_SUFFIX)
        if sidecar.is_file():
            found = FileProvenance.from_json(sidecar.read_bytes())
    return found
