"""DMS-MWBT-REQ-0059: new dataset types are registered at pre-flight time, and datasets of them added thereafter.

The repository knows only ``raw`` and ``bias``. The pipeline's outputs
(``calexp``, the summaries, each task's config and metadata) are new: the
pre-flight plans them without their being registered, and initializing the
run (before any quantum runs) registers them with the definitions the tasks
declare. Datasets of those types can then be added, by the pipeline and by
anyone else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pipe_support import COLLECTIONS, INSTRUMENT, make_repo

from nightshift.butler._butler import Butler
from nightshift.butler.registry import MissingDatasetTypeError
from nightshift.pipe import InProcessExecutor, Pipeline, build_quantum_graph, initialize_run
from nightshift.pipe.examples import EXAMPLE_PIPELINE

RUN = "u/dev/newtypes"


def test_new_output_types_are_registered_at_preflight_and_usable_thereafter(tmp_path: Path) -> None:
    with make_repo(tmp_path / "repo", n_visits=1, n_detectors=2) as butler:
        assert {dt.name for dt in butler.registry.query_dataset_types()} == {"raw", "bias"}
        pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
        graph = build_quantum_graph(butler.registry, pipe, collections=COLLECTIONS, run=RUN)
        with pytest.raises(MissingDatasetTypeError):  # planned, not yet registered
            butler.registry.get_dataset_type("calexp")
        initialize_run(graph, butler)  # what every executor does before the first quantum
        declared = {c.dataset_type for node in graph.tasks.values() for c in node.of_kind("output", "init_output")}
        declared |= {node.config_dataset_type for node in graph.tasks.values()}
        declared |= {node.metadata_dataset_type for node in graph.tasks.values()}
        for dt in declared:
            assert butler.registry.get_dataset_type(dt.name) == dt  # as the task declares it
        assert butler.registry.query_datasets("calexp", RUN) == []  # registered before any quantum ran
        # thereafter: a dataset of a new type added programmatically...
        butler.put(np.zeros((8, 8)), "calexp", instrument=INSTRUMENT, visit=0, detector=1, run="u/dev/by-hand")
    # ... and by the pipeline itself
    InProcessExecutor(tmp_path / "repo").run(graph).raise_for_failures()
    with Butler(tmp_path / "repo", collections=[RUN]) as out:
        assert len(out.registry.query_datasets("calexp", RUN)) == 2
        assert out.get("survey_summary", {"instrument": INSTRUMENT})["n_visits"] == 1
        assert out.exists("calexp", instrument=INSTRUMENT, visit=0, detector=1, collections=["u/dev/by-hand"])
