"""Notebooks on a repository on WebDAV (DMS-MWBT-REQ-0029, 0038), executed for real with nbclient + ipykernel.

Rubin's Science Platform serves users' files over WebDAV (VOSpace is on its
roadmap, not in service). These tests run the notebooks in ``docs/notebooks``
in a Jupyter kernel against the local stack's wsgidav server:

- ``webdav_cutout.ipynb`` opens a repository whose files are on the WebDAV
  store through the ordinary ``Butler`` API and reads a cutout, pulling only
  the bytes it needs;
- a batch pipeline run (the multi-process executor, two worker processes)
  writes its outputs to that store, and ``webdav_batch_outputs.ipynb`` reads
  them back, with the provenance a copied-out file carries.

Each notebook prints one JSON line as its last output; the test checks it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pipe_support import COLLECTIONS, INSTRUMENT, insert_dimensions, run_notebook

from nightshift.butler import DatasetType, Exposure
from nightshift.butler._butler import Butler
from nightshift.pipe import MultiProcessExecutor, Pipeline, build_quantum_graph
from nightshift.pipe.examples import EXAMPLE_PIPELINE

pytestmark = pytest.mark.integration


def _calexp(shape: tuple[int, int]) -> Exposure:
    rng = np.random.default_rng(7)
    return Exposure(image=rng.normal(100, 5, shape).astype(np.float32),
                    mask=rng.integers(0, 4, shape).astype(np.int32),
                    variance=np.full(shape, 25.0, dtype=np.float32))


def test_notebook_reads_a_cutout_from_a_repository_on_webdav(tmp_path: Path, dav_endpoint: str, unique_name: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """REQ-0029/0038: a notebook opens the repository with ``Butler(repo)`` and gets a cutout by byte ranges."""
    url = f"{dav_endpoint}/{unique_name}/repo"
    with Butler.create(tmp_path / "repo", datastore={"cls": "dav", "url": url}) as b:
        insert_dimensions(b, 2, 2)
        b.register_dataset_type(DatasetType("calexp", ["instrument", "visit", "detector"], "Exposure"))
        exp = _calexp((1024, 1024))
        ref = b.put(exp, "calexp", instrument=INSTRUMENT, visit=1, detector=1, run="u/alice/cal")
        size = b.datastore.record(ref).size
    out = run_notebook("webdav_cutout.ipynb", tmp_path, monkeypatch, NIGHTSHIFT_NOTEBOOK_REPO=str(tmp_path / "repo"),
                       NIGHTSHIFT_NOTEBOOK_COLLECTION="u/alice/cal")
    assert out["uri"].startswith(url + "/u/alice/cal/calexp/")
    assert out["shape"] == [32, 32] and out["origin"] == [100, 200]
    np.testing.assert_array_equal(np.array(out["image"], dtype=np.float32), exp.image[200:232, 100:132])
    assert 0 < out["bytes_pulled"] < size // 50, f"the cutout pulled {out['bytes_pulled']} of {size} bytes"


def test_batch_run_writes_to_webdav_and_a_notebook_reads_it_back(tmp_path: Path, dav_endpoint: str,
                                                                 unique_name: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """REQ-0038: a multi-process batch run writes to the WebDAV store; a notebook reads the outputs back."""
    url = f"{dav_endpoint}/{unique_name}/release"
    # calexps as FITS images, so each file carries its provenance in a PROVENANCE HDU
    store = {"cls": "dav", "url": url, "formatters": {"dataset_types": {"calexp": "fits_image"}}}
    with Butler.create(tmp_path / "repo", datastore=store) as b:
        insert_dimensions(b, 2, 2)
        raw = DatasetType("raw", ["instrument", "visit", "detector"], "NumpyArray")
        bias = DatasetType("bias", ["instrument", "detector"], "NumpyArray")
        b.register_dataset_type(raw)
        b.register_dataset_type(bias)
        rng = np.random.default_rng(1)
        raws = {(v, d): rng.normal(100.0, 1.0, (8, 8)) for v in range(2) for d in range(2)}
        b.put_many([(a, {"instrument": INSTRUMENT, "visit": v, "detector": d}) for (v, d), a in raws.items()],
                   "raw", run="raw/all")
        b.put_many([(np.full((8, 8), 10.0), {"instrument": INSTRUMENT, "detector": d}) for d in range(2)],
                   "bias", run="calib/bias")
        graph = build_quantum_graph(b.registry, Pipeline.from_yaml(EXAMPLE_PIPELINE), collections=COLLECTIONS,
                                    run="drp/dav")
    report = MultiProcessExecutor(tmp_path / "repo", processes=2).run(graph)
    report.raise_for_failures()
    assert report.executor == "multiprocess"
    out = run_notebook("webdav_batch_outputs.ipynb", tmp_path, monkeypatch,
                       NIGHTSHIFT_NOTEBOOK_REPO=str(tmp_path / "repo"), NIGHTSHIFT_NOTEBOOK_COLLECTION="drp/dav")
    assert out["n_calexps"] == 4 and out["summary"]["n_visits"] == 2
    assert all(u.startswith(url + "/drp/dav/calexp/") and u.endswith(".fits") for u in out["uris"])
    with Butler(tmp_path / "repo", collections=["drp/dav"]) as b:  # the same values as read here
        for key, total in out["sums"].items():
            v, d = map(int, key.split(","))
            assert total == pytest.approx(float(b.get("calexp", instrument=INSTRUMENT, visit=v, detector=d).sum()))
        first = b.registry.query_datasets("calexp", "drp/dav")[0]
        prov = b.registry.get_provenance(first)
    got = out["provenance"]
    assert got["output"]["id"] == str(first.id) and got["task"] == prov.task_label
    assert sorted(tuple(x) for x in got["inputs"]) == sorted((r.dataset_type.name, str(r.id))
                                                             for r in prov.actual_inputs)
    assert {"instrument": INSTRUMENT, "visit": first.data_id["visit"], "detector": first.data_id["detector"]} \
        in got["raw_data_ids"]
