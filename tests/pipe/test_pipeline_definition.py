"""Tasks, connections, configs and pipelines (no butler needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightshift.pipe import (
    ConfigOverrideError,
    Input,
    Output,
    Pipeline,
    PipelineDefinitionError,
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    PrerequisiteInput,
    Struct,
    parse_override,
)
from nightshift.pipe.examples import EXAMPLE_PIPELINE, CalibrateConfig, CalibrateTask, VisitSummaryTask


class AConnections(PipelineTaskConnections, dimensions=("instrument", "visit")):
    inp = Input("b_out", "StructuredDataDict", ("instrument", "visit"))
    out = Output("a_out", "StructuredDataDict", ("instrument", "visit"))


class ATask(PipelineTask):
    ConnectionsClass = AConnections

    def run(self, inp: dict) -> Struct:
        return Struct(out=inp)


class BConnections(PipelineTaskConnections, dimensions=("instrument", "visit")):
    inp = Input("a_out", "StructuredDataDict", ("instrument", "visit"))
    out = Output("b_out", "StructuredDataDict", ("instrument", "visit"))


class BTask(PipelineTask):
    ConnectionsClass = BConnections


class BadOutputConnections(PipelineTaskConnections, dimensions=("instrument", "visit")):
    out = Output("x", "StructuredDataDict", ("instrument", "visit", "detector"))


class BadOutputTask(PipelineTask):
    ConnectionsClass = BadOutputConnections


class OtherCalexpConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    calexp = Input("calexp", "StructuredDataDict", ("instrument", "visit", "detector"))
    out = Output("other", "StructuredDataDict", ("instrument", "visit", "detector"))


class OtherCalexpTask(PipelineTask):
    ConnectionsClass = OtherCalexpConnections


def test_connections_are_collected_with_kinds_and_dimensions() -> None:
    conns = CalibrateTask.ConnectionsClass
    assert conns.dimensions == ("instrument", "visit", "detector")
    kinds = {name: c.kind for name, c in conns.connections.items()}
    assert kinds == {"raw": "input", "bias": "prerequisite", "calexp": "output", "stats": "output"}
    assert isinstance(conns.connections["bias"], PrerequisiteInput)


def test_dataset_type_names_come_from_config_not_code() -> None:
    pipe = Pipeline()
    pipe.add_task("calibrate", CalibrateTask, config={"connections": {"calexp": "calexp_v2"}})
    (node,) = pipe.resolve()
    assert node.connections["calexp"].dataset_type.name == "calexp_v2"
    assert node.connections["raw"].dataset_type.name == "raw"


def test_nested_subtask_config_and_overrides_recorded() -> None:
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_override_string("calibrate:measure.threshold=7.5")
    pipe.add_config_override("calibrate", "gain", 3.0)
    node = next(n for n in pipe.resolve() if n.label == "calibrate")
    assert isinstance(node.config, CalibrateConfig)
    assert node.config.measure.threshold == 7.5 and node.config.gain == 3.0
    task = CalibrateTask(node.config)
    assert task.measure.config.threshold == 7.5
    assert [(o.key, o.source) for o in node.overrides] == [("measure.threshold", "command line"), ("gain", "python")]
    snapshot = node.config_snapshot()
    assert snapshot["config"]["measure"]["threshold"] == 7.5
    assert snapshot["overrides"][0]["value"] == 7.5
    # recorded in the pipeline document too (what the graph's metadata keeps)
    assert pipe.to_dict()["tasks"]["calibrate"]["overrides"][0]["key"] == "measure.threshold"


def test_override_file(tmp_path: Path) -> None:
    f = tmp_path / "cal.yaml"
    f.write_text("measure:\n  statistic: median\ngain: 1.5\n")
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_config_file("calibrate", f)
    node = next(n for n in pipe.resolve() if n.label == "calibrate")
    assert node.config.measure.statistic == "median" and node.config.gain == 1.5
    assert node.overrides[0].source == f"file {f}"


@pytest.mark.parametrize("override, match", [
    ("calibrate:measure.thresold=3", "no field 'thresold'"),
    ("calibrate:nope=3", "no field 'nope'"),
    ("calibrate:gain=abc", "gain"),
    ("calibrate:gain.x=1", "has no sub-fields"),
    ("calibrate:connections.nothere=foo", "unknown connection"),
])
def test_bad_override_names_task_and_field(override: str, match: str) -> None:
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_override_string(override)
    with pytest.raises(ConfigOverrideError, match=match) as info:
        pipe.resolve()
    assert "calibrate" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_override_syntax_errors() -> None:
    with pytest.raises(ConfigOverrideError):
        parse_override("novalue")
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    with pytest.raises(ConfigOverrideError, match="label:field"):
        pipe.add_override_string("gain=3")
    with pytest.raises(PipelineDefinitionError, match="no task labelled"):
        pipe.add_override_string("missing:gain=3")


def test_yaml_and_python_api_are_equivalent() -> None:
    from_yaml = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    py = Pipeline(from_yaml.description)
    py.add_task("calibrate", CalibrateTask, config={"gain": 2.0, "measure": {"threshold": 3.0}})
    py.add_task("visit_summary", VisitSummaryTask)
    py.add_task("survey_summary", "nightshift.pipe.examples:SurveySummaryTask")
    py.add_step("single_frame", ["calibrate"], ["instrument", "visit", "detector"])
    py.add_step("per_visit", ["visit_summary"], ["instrument", "visit"])
    py.add_step("survey", ["survey_summary"], ["instrument"])
    a, b = from_yaml.resolve(), py.resolve()
    assert [(n.label, n.config_hash, n.dimensions, n.step) for n in a] == \
        [(n.label, n.config_hash, n.dimensions, n.step) for n in b]
    again = Pipeline.from_yaml(py.to_yaml())
    assert [n.config_hash for n in again.resolve()] == [n.config_hash for n in b]


def test_order_follows_data_flow_not_declaration() -> None:
    pipe = Pipeline()
    pipe.add_task("survey_summary", "nightshift.pipe.examples:SurveySummaryTask")
    pipe.add_task("visit_summary", VisitSummaryTask)
    pipe.add_task("calibrate", CalibrateTask)
    assert [n.label for n in pipe.resolve()] == ["calibrate", "visit_summary", "survey_summary"]


def test_cycle_is_detected() -> None:
    pipe = Pipeline()
    pipe.add_task("a", ATask)
    pipe.add_task("b", BTask)
    with pytest.raises(PipelineDefinitionError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
        pipe.resolve()


def test_output_dimensions_must_be_within_quantum_dimensions() -> None:
    pipe = Pipeline()
    pipe.add_task("bad", BadOutputTask)
    with pytest.raises(PipelineDefinitionError, match="not all among the quantum dimensions"):
        pipe.resolve()


def test_dimension_mismatch_between_connections() -> None:
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.insert_task("other", OtherCalexpTask, after="calibrate", step="single_frame")
    with pytest.raises(PipelineDefinitionError, match="'calexp' is defined two ways"):
        pipe.resolve()


def test_unknown_dimension_and_class() -> None:
    pipe = Pipeline()
    pipe.add_task("calibrate", CalibrateTask)
    with pytest.raises(PipelineDefinitionError, match="unknown"):
        pipe.resolve(known_dimensions=["instrument", "visit"])
    bad = Pipeline()
    bad.add_task("x", "nightshift.pipe.examples:NoSuchTask")
    with pytest.raises(PipelineDefinitionError, match="cannot import"):
        bad.resolve()


def test_programmatic_insertion_is_recorded() -> None:
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.insert_task("qa", "nightshift.pipe.examples:NoopVisitTask", after="visit_summary", step="per_visit",
                     config={"connections": {"inputs": "calexp_stats", "out": "qa_visit"}})
    nodes = pipe.resolve()
    assert "qa" in [n.label for n in nodes]
    doc = pipe.to_dict()
    assert doc["tasks"]["qa"]["inserted"] is True
    assert doc["history"][-1]["action"] == "insert_task" and doc["history"][-1]["label"] == "qa"
    assert list(doc["tasks"]).index("qa") == list(doc["tasks"]).index("visit_summary") + 1
    assert Pipeline.from_yaml(pipe.to_yaml()).to_dict()["history"] == doc["history"]


def test_steps_are_validated() -> None:
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.insert_task("late", CalibrateTask, config={"connections": {"calexp": "c2", "stats": "s2"}})
    with pytest.raises(PipelineDefinitionError, match="in no step"):
        pipe.resolve()
    wrong = Pipeline()
    wrong.add_task("calibrate", CalibrateTask)
    wrong.add_task("visit_summary", VisitSummaryTask)
    wrong.add_step("first", ["visit_summary"], ["instrument", "visit"])
    wrong.add_step("second", ["calibrate"], ["instrument", "visit", "detector"])
    with pytest.raises(PipelineDefinitionError, match="later step"):
        wrong.resolve()
    sharded = Pipeline()
    sharded.add_task("visit_summary", VisitSummaryTask)
    sharded.add_step("s", ["visit_summary"], ["instrument", "detector"])
    with pytest.raises(PipelineDefinitionError, match="cannot be in step"):
        sharded.resolve()


def test_bad_yaml_documents() -> None:
    with pytest.raises(PipelineDefinitionError, match="unknown pipeline keys"):
        Pipeline.from_yaml("tasks: {}\nbogus: 1\n")
    with pytest.raises(PipelineDefinitionError, match="needs a 'class'"):
        Pipeline.from_yaml("tasks:\n  a: {config: {}}\n")
    with pytest.raises(PipelineDefinitionError, match="no tasks"):
        Pipeline.from_yaml("description: empty\n").resolve()
    with pytest.raises(PipelineDefinitionError, match="already has a task"):
        p = Pipeline()
        p.add_task("a", ATask)
        p.add_task("a", BTask)


def test_config_rejects_unknown_fields_directly() -> None:
    with pytest.raises(ValueError):
        PipelineTaskConfig(nonsense=1)  # type: ignore[call-arg]  # deliberately an unknown field
