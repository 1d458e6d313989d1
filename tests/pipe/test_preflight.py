"""Pre-flight against the real registry (SQLite in tmp_path)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipe_support import COLLECTIONS, INSTRUMENT, make_repo

from nightshift.butler import DatasetRef, DatasetType
from nightshift.butler._butler import Butler
from nightshift.butler.registry import Registry
from nightshift.pipe import (
    Input,
    Output,
    Pipeline,
    PipelineTask,
    PipelineTaskConnections,
    PreflightError,
    PrerequisiteInput,
    Struct,
    UnknownDatasetTypeError,
    build_quantum_graph,
)
from nightshift.pipe.examples import EXAMPLE_PIPELINE

RUN = "u/test/run"


def example() -> Pipeline:
    return Pipeline.from_yaml(EXAMPLE_PIPELINE)


def test_graph_has_one_quantum_per_data_grouping(repo: Butler) -> None:
    graph = build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN)
    assert graph.counts() == {"calibrate": 12, "visit_summary": 3, "survey_summary": 1}
    q = graph.quanta_for("calibrate")[0]
    assert q.data_id == {"instrument": INSTRUMENT, "visit": 0, "detector": 0}
    # inputs resolved, prerequisite (implied input) included with its concrete data ID (REQ-0012)
    assert q.inputs["raw"][0].run == "raw/all"
    assert dict(q.inputs["bias"][0].data_id) == {"instrument": INSTRUMENT, "detector": 0}
    assert q.inputs["bias"][0].run == "calib/bias"
    # predicted outputs have the ids the butler will give them (deterministic uuid5)
    assert q.outputs["calexp"][0].run == RUN
    visit = graph.quanta_for("visit_summary")[1]
    assert visit.data_id == {"instrument": INSTRUMENT, "visit": 1}
    assert sorted(r.data_id["detector"] for r in visit.inputs["stats"]) == [0, 1, 2, 3]
    # every quantum comes after the quanta it depends on; N:1 edges
    deps = graph.dependencies()
    assert all(d < i for i, ds in enumerate(deps) for d in ds)
    assert len(deps[visit.index]) == 4
    assert len(deps[graph.quanta_for("survey_summary")[0].index]) == 3
    # each step has its own grouping, so its own parallelism (REQ-0007): the 12 per-detector quanta
    # depend on nothing, each visit's summary waits for its 4 detectors, the survey for the 3 visits
    assert all(not deps[c.index] for c in graph.quanta_for("calibrate"))
    assert [s.data_id for s in graph.quanta_for("survey_summary")] == [{"instrument": INSTRUMENT}]
    assert graph.metadata["pipeline"]["tasks"]["calibrate"]["class"].endswith("CalibrateTask")
    assert graph.explanation is None


def test_where_restricts_inputs(repo: Butler) -> None:
    graph = build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN,
                                where="visit = 1 AND detector IN (0, 2)")
    assert graph.counts() == {"calibrate": 2, "visit_summary": 1, "survey_summary": 1}
    graph = build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN,
                                where="visit.seeing > 0.55")
    assert graph.counts()["visit_summary"] == 2


def test_empty_graph_explains_missing_input(repo: Butler) -> None:
    graph = build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN, where="visit = 99")
    assert len(graph) == 0
    assert "no 'raw' datasets" in graph.explanation and "visit = 99" in graph.explanation
    assert "'visit_summary' has no quanta" in graph.explanation


def test_missing_prerequisite_drops_quanta_and_says_so(tmp_path: Path) -> None:
    butler = make_repo(tmp_path / "repo", with_bias=False)
    try:
        graph = build_quantum_graph(butler.registry, example(), collections=COLLECTIONS, run=RUN)
    finally:
        butler.close()
    assert len(graph) == 0
    assert graph.metadata["dropped"] == {"calibrate: no prerequisite bias": 12}
    assert "calibrate" in graph.explanation


def test_unknown_dataset_type_names_task_and_connection(repo: Butler) -> None:
    pipe = example()
    pipe.add_config_override("calibrate", "connections.raw", "raw_v9")
    with pytest.raises(UnknownDatasetTypeError, match="task 'calibrate', connection 'raw'.*'raw_v9'"):
        build_quantum_graph(repo.registry, pipe, collections=COLLECTIONS, run=RUN)


def test_registered_definition_mismatch(repo: Butler) -> None:
    repo.register_dataset_type(DatasetType("calexp", ["instrument", "visit"], "NumpyArray"))
    with pytest.raises(PreflightError, match="'calexp' is registered with dimensions"):
        build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN)


def test_bad_where_is_a_preflight_error(repo: Butler) -> None:
    with pytest.raises(PreflightError):
        build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN, where="visit ===")


def test_campaign_by_outputs_keeps_minimal_quanta(repo: Butler) -> None:
    # by outputs: only what is needed for visit 2's summary
    graph = build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN,
                                outputs=["visit_summary"], output_where="visit = 2")
    assert graph.counts() == {"calibrate": 4, "visit_summary": 1, "survey_summary": 0}
    assert {q.data_id["visit"] for q in graph.quanta} == {2}
    # by outputs without a restriction: everything upstream of calexp only
    graph = build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN, outputs=["calexp"])
    assert graph.counts() == {"calibrate": 12, "visit_summary": 0, "survey_summary": 0}


def test_campaign_by_inputs_and_outputs_intersects(repo: Butler) -> None:
    graph = build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN,
                                where="detector < 2", outputs=["visit_summary"], output_where="visit IN (0, 1)")
    assert graph.counts() == {"calibrate": 4, "visit_summary": 2, "survey_summary": 0}
    empty = build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN,
                                where="visit = 0", outputs=["visit_summary"], output_where="visit = 2")
    assert len(empty) == 0 and "desired outputs" in empty.explanation
    with pytest.raises(UnknownDatasetTypeError, match="not produced"):
        build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN, outputs=["raw"])


def test_steps_can_be_planned_separately(repo: Butler) -> None:
    graph = build_quantum_graph(repo.registry, example(), collections=COLLECTIONS, run=RUN, steps=["single_frame"])
    assert graph.counts() == {"calibrate": 12}


class TractConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "band")):
    raws = Input("raw", "NumpyArray", ("instrument", "visit", "detector"), multiple=True)
    out = Output("per_band_visit", "StructuredDataDict", ("instrument", "visit", "band"))


class PerBandVisitTask(PipelineTask):
    """Quantum dimensions not covered by any input: joined through the registry (implied band)."""

    ConnectionsClass = TractConnections

    def run(self, raws: list[np.ndarray]) -> Struct:
        return Struct(out={"n": len(raws)})


def test_quantum_dimensions_joined_through_registry(repo: Butler) -> None:
    pipe = Pipeline()
    pipe.add_task("per_band", PerBandVisitTask)
    graph = build_quantum_graph(repo.registry, pipe, collections=COLLECTIONS, run=RUN, where="visit < 2")
    assert [q.data_id for q in graph.quanta] == [
        {"instrument": INSTRUMENT, "band": "r", "visit": 0}, {"instrument": INSTRUMENT, "band": "r", "visit": 1}]
    assert all(len(q.inputs["raws"]) == 4 for q in graph.quanta)


class FlatConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    raw = Input("raw", "NumpyArray", ("instrument", "visit", "detector"))
    flat = PrerequisiteInput("flat", "NumpyArray", ("instrument", "detector"))
    out = Output("flattened", "NumpyArray", ("instrument", "visit", "detector"))


class FlatTask(PipelineTask):
    ConnectionsClass = FlatConnections


def _neighbour_bias(
    registry: Registry, dataset_type: DatasetType, collections: Sequence[str], data_id: dict[str, Any]
) -> list[DatasetRef]:
    """A custom prerequisite lookup: the bias of the next detector (stands in for a spatial shard lookup)."""
    ref = registry.find_dataset("bias", {"instrument": data_id["instrument"], "detector": data_id["detector"] + 1},
                                collections)
    return [ref] if ref is not None else []


class LookupConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    raw = Input("raw", "NumpyArray", ("instrument", "visit", "detector"))
    shard = PrerequisiteInput("bias", "NumpyArray", ("instrument", "detector"), lookup=_neighbour_bias)
    out = Output("shifted", "NumpyArray", ("instrument", "visit", "detector"))


class LookupTask(PipelineTask):
    ConnectionsClass = LookupConnections


def test_calibration_prerequisite_found_by_validity_time(tmp_path: Path) -> None:
    from nightshift.butler.registry import CollectionType, Timespan

    butler = make_repo(tmp_path / "repo", n_visits=2, n_detectors=2, with_bias=False, with_raws=False)
    try:
        reg = butler.registry
        t0 = 1_800_000_000 * 10**9
        # visits 10 and 11 observed a day apart; each night has its own certified flat
        reg.insert_dimension_records("visit", [
            {"instrument": INSTRUMENT, "id": v, "physical_filter": "r_01", "day_obs": 20260101,
             "timespan": Timespan(t0 + k * 86400 * 10**9, t0 + k * 86400 * 10**9 + 30 * 10**9)}
            for k, v in enumerate((10, 11))
        ])
        butler.put_many([(np.zeros((2, 2)), {"instrument": INSTRUMENT, "visit": v, "detector": 0}) for v in (10, 11)],
                        "raw", run="raw/all")
        butler.register_dataset_type(DatasetType("flat", ["instrument", "detector"], "NumpyArray", is_calibration=True))
        night1 = butler.put(np.ones((2, 2)), "flat", {"instrument": INSTRUMENT, "detector": 0}, run="calib/flat/1")
        night2 = butler.put(np.ones((2, 2)), "flat", {"instrument": INSTRUMENT, "detector": 0}, run="calib/flat/2")
        reg.register_collection("calib", CollectionType.CALIBRATION)
        reg.certify("calib", [night1], Timespan(t0 - 10**9, t0 + 3600 * 10**9))
        reg.certify("calib", [night2], Timespan(t0 + 86000 * 10**9, t0 + 90000 * 10**9))
        pipe = Pipeline()
        pipe.add_task("flatten", FlatTask)
        graph = build_quantum_graph(reg, pipe, collections=["raw/all", "calib"], run=RUN, where="visit >= 10")
        flats = {q.data_id["visit"]: q.inputs["flat"][0].id for q in graph.quanta}
        assert flats == {10: night1.id, 11: night2.id}
    finally:
        butler.close()


def test_custom_prerequisite_lookup(repo: Butler) -> None:
    pipe = Pipeline()
    pipe.add_task("shifted", LookupTask)
    graph = build_quantum_graph(repo.registry, pipe, collections=COLLECTIONS, run=RUN, where="visit = 0")
    # detector 3 has no neighbour: its quantum is dropped (and counted), the others get detector + 1
    assert [(q.data_id["detector"], q.inputs["shard"][0].data_id["detector"]) for q in graph.quanta] == \
        [(0, 1), (1, 2), (2, 3)]
    assert graph.metadata["dropped"] == {"shifted: no prerequisite bias": 1}
