"""Files written by quanta carry their parents and raw data IDs (DMS-MWBT-REQ-0093, 0096).

The format-by-format checks are in ``tests/butler/test_file_provenance.py``;
here the example pipeline writes the files and the registry's provenance is
the reference the files must agree with, read after the repository is gone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipe_support import COLLECTIONS, make_repo

from nightshift.butler import read_file_provenance
from nightshift.butler._butler import Butler
from nightshift.pipe import InProcessExecutor, Pipeline, build_quantum_graph
from nightshift.pipe.examples import EXAMPLE_PIPELINE


def test_pipeline_outputs_carry_parents_and_raw_data_ids(tmp_path: Path) -> None:
    """REQ-0093/0096: files written by quanta name their inputs and the raws behind them, as the registry does."""
    repo = make_repo(tmp_path / "repo", n_visits=2, n_detectors=2)
    graph = build_quantum_graph(repo.registry, Pipeline.from_yaml(EXAMPLE_PIPELINE), collections=COLLECTIONS,
                                run="drp/prov")
    InProcessExecutor(repo.root).run(graph).raise_for_failures()
    with Butler(repo.root, collections=["drp/prov"]) as b:
        summary = b.registry.query_datasets("survey_summary", "drp/prov")[0]
        calexp = b.registry.query_datasets("calexp", "drp/prov", data_id={"visit": 1, "detector": 0})[0]
        expected = {}
        for ref in (summary, calexp):
            prov = b.registry.get_provenance(ref)
            roots = b.registry.query_ancestors(ref, roots_only=True)
            expected[ref.dataset_type.name] = (
                sorted((str(r.id), r.dataset_type.name) for r in prov.actual_inputs),
                sorted((r.dataset_type.name, sorted(r.data_id.items())) for r in roots),
                prov.task_label,
            )
        out = tmp_path / "copied"
        files = b.retrieve_files([summary, calexp], out)
    shutil.rmtree(repo.root)  # no registry, no datastore left
    for path, name in zip(files, ("survey_summary", "calexp"), strict=True):
        got = read_file_provenance(path)
        assert got is not None and got.output is not None and got.output.dataset_type == name
        parents, roots, task = expected[name]
        assert sorted((d.id, d.dataset_type) for d in got.inputs) == parents
        assert sorted((d.dataset_type, sorted(d.data_id.items())) for d in got.raw_ancestors) == roots
        assert got.task_label == task
    raws = {(d["visit"], d["detector"]) for d in read_file_provenance(files[0]).raw_data_ids  # type: ignore[union-attr]  # the file has provenance: asserted above
            if "visit" in d}
    assert raws == {(0, 0), (0, 1), (1, 0), (1, 1)}  # the survey summary descends from every raw
