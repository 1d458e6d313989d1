"""Shared helpers of the pipeline tests: a real butler repository with raws and biases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nightshift.butler import DatasetType
from nightshift.butler._butler import Butler

INSTRUMENT = "Cam"
NOTEBOOKS = Path(__file__).parents[2] / "docs" / "notebooks"
RAW = DatasetType("raw", ["instrument", "visit", "detector"], "NumpyArray")
BIAS = DatasetType("bias", ["instrument", "detector"], "NumpyArray")


def insert_dimensions(butler: Butler, n_visits: int, n_detectors: int) -> None:
    reg = butler.registry
    reg.insert_dimension_records("instrument", [{"name": INSTRUMENT, "visit_max": 10**6, "detector_max": 1000}])
    reg.insert_dimension_records("band", [{"name": "r"}], skip_existing=True)
    reg.insert_dimension_records("physical_filter", [{"instrument": INSTRUMENT, "name": "r_01", "band": "r"}])
    reg.insert_dimension_records("day_obs", [{"instrument": INSTRUMENT, "id": 20260101}])
    reg.insert_dimension_records("detector", [
        {"instrument": INSTRUMENT, "id": d, "full_name": f"D{d}", "purpose": "SCIENCE"} for d in range(n_detectors)
    ])
    reg.insert_dimension_records("visit", [
        {"instrument": INSTRUMENT, "id": v, "physical_filter": "r_01", "day_obs": 20260101, "seeing": 0.5 + 0.1 * v}
        for v in range(n_visits)
    ])


def make_repo(root: Path, *, n_visits: int = 3, n_detectors: int = 4, with_bias: bool = True,
              with_raws: bool = True, registry_db: str | None = None, registry_schema: str | None = None) -> Butler:
    """A repository with ``raw`` in RUN ``raw/all`` and ``bias`` in RUN ``calib/bias``.

    The registry is SQLite unless ``registry_db`` names another database.
    """
    # fsync off: the tests check framework logic, not durability (which the datastore tests cover)
    butler = Butler.create(root, datastore={"cls": "posix", "name": "posix", "root": "datastore", "fsync": False},
                           registry_db=registry_db, registry_schema=registry_schema)
    insert_dimensions(butler, n_visits, n_detectors)
    butler.register_dataset_type(RAW)
    butler.register_dataset_type(BIAS)
    rng = np.random.default_rng(1)
    if with_raws:
        items = [(rng.normal(100.0, 1.0, (8, 8)), {"instrument": INSTRUMENT, "visit": v, "detector": d})
                 for v in range(n_visits) for d in range(n_detectors)]
        butler.put_many(items, "raw", run="raw/all")
    butler.registry.register_run("calib/bias")
    if with_bias:
        butler.put_many([(np.full((8, 8), 10.0), {"instrument": INSTRUMENT, "detector": d})
                         for d in range(n_detectors)], "bias", run="calib/bias")
    return butler


COLLECTIONS = ["raw/all", "calib/bias"]


def run_notebook(name: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """Execute a notebook in a fresh python3 kernel (which inherits ``env``); return its last cell's JSON."""
    import nbformat
    from nbclient import NotebookClient

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    result: dict[str, Any] = json.loads(text)
    return result
