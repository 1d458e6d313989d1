"""Executors: one conformance suite every specialization runs (in-process, multi-process, Dask, Kafka fleet)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka_fleet import RunnerFleet
from pipe_support import COLLECTIONS, INSTRUMENT

from nightshift.butler._butler import Butler
from nightshift.pipe import (
    ButlerSpec,
    DaskExecutor,
    ExecutionFailedError,
    Executor,
    InitInput,
    InitOutput,
    InProcessExecutor,
    Input,
    MultiProcessExecutor,
    Output,
    OutputExistsError,
    Pipeline,
    PipelineTask,
    PipelineTaskConnections,
    QuantumButlerFactory,
    QuantumGraph,
    QuantumReport,
    QuantumRunner,
    QuantumStatus,
    Struct,
    build_quantum_graph,
    configure_logging,
    initialize_run,
)
from nightshift.pipe.examples import EXAMPLE_PIPELINE
from nightshift.pipe.executors import KafkaExecutor

RUN = "u/exec/run"
MakeExecutor = Callable[..., Executor]


@pytest.fixture(scope="module")
def dask_client() -> Iterator[object]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                                       scheduler_port=0)  # ports of its own: another cluster may hold 8787
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def runner_fleet(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerFleet]:
    """Two real runner services in one consumer group, on topics of their own."""
    fleet = RunnerFleet(kafka_bootstrap, tmp_path_factory.mktemp("runners")).start(2)
    yield fleet
    fleet.stop()


@pytest.fixture(params=["inprocess", "multiprocess", "dask", "kafka"])
def make_executor(request: pytest.FixtureRequest) -> MakeExecutor:
    if request.param == "inprocess":
        return lambda repo, **kw: InProcessExecutor(repo, **kw)
    if request.param == "multiprocess":
        return lambda repo, **kw: MultiProcessExecutor(repo, processes=2, **kw)
    if request.param == "kafka":
        fleet = request.getfixturevalue("runner_fleet")
        return lambda repo, **kw: KafkaExecutor(repo, bootstrap=fleet.bootstrap, topics=fleet.topics,
                                                quantum_timeout=120, **kw)
    client = request.getfixturevalue("dask_client")
    return lambda repo, **kw: DaskExecutor(repo, client=client, **kw)


def build(repo: Butler, pipe: Pipeline | None = None, run: str = RUN, **kw: Any) -> QuantumGraph:
    return build_quantum_graph(repo.registry, pipe or Pipeline.from_yaml(EXAMPLE_PIPELINE), collections=COLLECTIONS,
                               run=run, **kw)


def test_runs_in_dependency_order_with_butler_io_and_provenance(repo: Butler, make_executor: MakeExecutor,
                                                                tmp_path: Path) -> None:
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_config_override("visit_summary", "skip_detectors", [3])
    graph = build(repo, pipe)
    path = tmp_path / "g.qg"
    graph.save(path)
    seen: list[QuantumStatus] = []
    report = make_executor(repo.root, progress=lambda r: seen.append(r.status)).run(graph, graph_path=path)
    report.raise_for_failures()
    assert report.counts()["succeeded"] == 16 and len(seen) == 16
    assert all(q.seconds is not None and q.host and q.pid for q in report.quanta)
    by_index = {q.index: q for q in report.quanta}
    for i, deps in enumerate(graph.dependencies()):  # a quantum starts after its dependencies ended
        assert all(by_index[d].end <= by_index[i].start for d in deps)
    out = Butler(repo.root, collections=[RUN])
    try:
        assert out.get("survey_summary", {"instrument": INSTRUMENT})["n_visits"] == 3
        assert out.get("visit_summary", {"instrument": INSTRUMENT, "visit": 1})["n_detectors"] == 3
        # provenance: actual inputs (3 detectors read) are a subset of the predicted (4)
        ref = out.find("visit_summary", {"instrument": INSTRUMENT, "visit": 1})
        prov = out.registry.get_provenance(ref)
        assert prov is not None and prov.task_label == "visit_summary"
        assert report.execution_id and prov.execution_id == report.execution_id  # this execution wrote it
        assert len(prov.predicted_inputs) == 4 and len(prov.actual_inputs) == 3
        assert prov.config_hash == graph.tasks["visit_summary"].config_hash
        meta = out.get("visit_summary_metadata", {"instrument": INSTRUMENT, "visit": 1})
        assert meta["host"] and meta["code_version"] == graph.tasks["visit_summary"].code_version
        assert len(meta["actual_inputs"]) == 3
        config = out.get("visit_summary_config", {})
        assert config["config"]["skip_detectors"] == [3] and config["overrides"][0]["key"] == "skip_detectors"
        calexp = out.find("calexp", {"instrument": INSTRUMENT, "visit": 0, "detector": 0})
        raws = out.registry.query_ancestors(calexp)
        assert {r.dataset_type.name for r in raws} == {"raw", "bias"}
    finally:
        out.close()


def test_failure_blocks_descendants_keeps_outputs_and_resumes(repo: Butler, make_executor: MakeExecutor,
                                                              tmp_path: Path) -> None:
    marker = tmp_path / "fail-now"
    marker.write_text("x")
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_config_override("calibrate", "fail_detectors", [2])
    pipe.add_config_override("calibrate", "fail_marker", str(marker))
    graph = build(repo, pipe, where="visit IN (0, 1)")
    report = make_executor(repo.root).run(graph)
    counts = report.counts()
    assert counts["failed"] == 2 and counts["succeeded"] == 6 and counts["blocked"] == 3
    failure = report.failures()[0]
    assert failure.task_label == "calibrate" and failure.data_id["detector"] == 2
    assert "configured to fail" in failure.error and failure.error_type == "quantum_execution"
    assert "RuntimeError" in failure.traceback
    blocked = [q for q in report.quanta if q.status is QuantumStatus.BLOCKED]
    assert {q.task_label for q in blocked} == {"visit_summary", "survey_summary"}
    assert all(q.blocked_by is not None for q in blocked)
    with pytest.raises(ExecutionFailedError, match=r"calibrate \{.*'detector': 2"):
        report.raise_for_failures()
    # outputs of successful quanta are kept ...
    with Butler(repo.root, collections=[RUN]) as out:
        assert out.exists("calexp", {"instrument": INSTRUMENT, "visit": 0, "detector": 1})
        assert not out.exists("calexp", {"instrument": INSTRUMENT, "visit": 0, "detector": 2})
    # ... and rerunning resumes: finished quanta are memoized, the rest runs
    marker.unlink()
    again = make_executor(repo.root).run(graph)
    assert again.counts() == {"pending": 0, "succeeded": 5, "memoized": 6, "failed": 0, "blocked": 0}


def test_memoization_and_memoize_off(repo: Butler, make_executor: MakeExecutor) -> None:
    graph = build(repo, where="visit = 0")
    first = make_executor(repo.root).run(graph)
    first.raise_for_failures()
    again = make_executor(repo.root).run(graph)
    assert again.counts()["memoized"] == len(graph) and again.ok
    assert again.execution_id != first.execution_id  # MEMOIZED: outputs of an earlier execution
    with Butler(repo.root, collections=[RUN]) as out:
        ref = out.find("survey_summary", {"instrument": INSTRUMENT})
        prov = out.registry.get_provenance(ref)
        assert prov is not None and prov.execution_id == first.execution_id  # reuse records nothing new
    off = make_executor(repo.root, memoize=False).run(graph)
    assert off.counts()["failed"] == 4 and off.counts()["blocked"] == 2  # outputs exist: failed, rest blocked
    assert {q.error_type for q in off.failures()} == {"output_exists"}
    assert "memoization is off" in off.failures()[0].error


def test_a_quantum_already_done_in_this_execution_is_succeeded_not_memoized(repo: Butler) -> None:
    """A second attempt of a quantum in the same execution (a redelivered event after its runner died, a Dask
    task retried after its worker was lost) finds the outputs its first attempt committed: SUCCEEDED, even with
    memoization off. MEMOIZED and "memoization is off" are about outputs of an *earlier* execution."""
    graph = build(repo, where="visit = 0 AND detector = 0")
    calibrate = next(q.index for q in graph.quanta if q.task_label == "calibrate")
    spec = ButlerSpec.for_graph(repo.root, graph)
    factory = QuantumButlerFactory(spec)
    try:
        initialize_run(graph, factory.make())
    finally:
        factory.close()

    def attempt(execution_id: str, *, memoize: bool = True) -> QuantumReport:
        runner = QuantumRunner(graph, spec, memoize=memoize, execution_id=execution_id)
        try:
            return runner.run(calibrate)
        finally:
            runner.close()

    first = attempt("exec-1")
    assert first.status is QuantumStatus.SUCCEEDED and first.n_actual_inputs == 2
    for again in (attempt("exec-1"), attempt("exec-1", memoize=False)):
        assert again.status is QuantumStatus.SUCCEEDED, (again.error_type, again.error)
        assert again.n_actual_inputs == 2 and again.n_outputs == first.n_outputs
    assert attempt("exec-2").status is QuantumStatus.MEMOIZED
    off = attempt("exec-2", memoize=False)
    assert off.status is QuantumStatus.FAILED and off.error_type == "output_exists"
    with Butler(repo.root, collections=[RUN]) as out:  # written once, by the first attempt
        refs = out.registry.query_datasets("calexp", RUN)
        assert len(refs) == 1
        prov = out.registry.get_provenance(refs[0])
        assert prov is not None and prov.execution_id == "exec-1"


def test_a_dask_worker_lost_mid_batch_is_retried_and_every_quantum_succeeds(repo: Butler, tmp_path: Path,
                                                                           dask_client: object) -> None:
    """A worker dies (os._exit) once: Dask reruns its task (a batch of quanta) elsewhere. Quanta of that batch that
    had committed their outputs find them written by this execution: SUCCEEDED, not MEMOIZED, not run twice."""
    marker = tmp_path / "crash-once"
    marker.write_text("x")
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_config_override("calibrate", "crash_detectors", [2])  # after detectors 0, 1 of its batch
    pipe.add_config_override("calibrate", "crash_once_marker", str(marker))
    graph = build(repo, pipe)
    report = DaskExecutor(repo.root, client=dask_client, batch=4).run(graph)
    assert not marker.exists(), "no worker ran a crashing quantum"
    report.raise_for_failures()
    assert report.counts()["succeeded"] == len(graph) == 16
    with Butler(repo.root, collections=[RUN]) as out:
        for name, n in {"calexp": 12, "visit_summary": 3, "survey_summary": 1}.items():
            refs = out.registry.query_datasets(name, RUN)
            assert len(refs) == n
            assert all(p.execution_id == report.execution_id for p in out.registry.get_provenances(refs))
            assert len(out.registry.get_provenances(refs)) == n  # one producing quantum each


def test_staged_run_uses_node_local_scratch(repo: Butler, make_executor: MakeExecutor, tmp_path: Path) -> None:
    """REQ-0052/0079: inputs copied to scratch, quanta run there, outputs moved to the shared repository."""
    graph = build(repo, where="visit IN (0, 1)")
    scratch = tmp_path / "node-local"
    report = make_executor(repo.root, stage_dir=scratch).run(graph)
    report.raise_for_failures()
    assert report.extra["staged_in"] == 8 + 4  # 2 visits x 4 raws, 4 biases
    assert report.extra["staged_out"] > 0
    assert list(scratch.iterdir()) == []  # the scratch repository is removed after staging out
    with Butler(repo.root, collections=[RUN]) as out:
        assert out.get("survey_summary", {"instrument": INSTRUMENT})["n_visits"] == 2
        uri = out.get_uri("calexp", {"instrument": INSTRUMENT, "visit": 0, "detector": 0})
        assert str(repo.root) in uri and "node-local" not in uri
        ref = out.find("visit_summary", {"instrument": INSTRUMENT, "visit": 1})
        assert out.registry.get_provenance(ref) is not None  # provenance travels with the outputs
    again = make_executor(repo.root, stage_dir=scratch).run(graph)  # memoization sees the staged-in outputs
    assert again.counts()["memoized"] == len(graph)


def test_staged_run_refused_before_it_starts_leaves_no_scratch(repo: Butler, tmp_path: Path) -> None:
    graph = build(repo, where="visit = 0")
    InProcessExecutor(repo.root).run(graph).raise_for_failures()
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_config_override("calibrate", "gain", 3.0)
    scratch = tmp_path / "node-local"
    with pytest.raises(OutputExistsError, match="another config"):  # the staged-in snapshot is checked
        InProcessExecutor(repo.root, stage_dir=scratch).run(build(repo, pipe, where="visit = 0"))
    assert list(scratch.iterdir()) == []


def test_changed_config_in_same_run_is_refused(repo: Butler) -> None:
    graph = build(repo, where="visit = 0")
    InProcessExecutor(repo.root).run(graph).raise_for_failures()
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_config_override("calibrate", "gain", 9.0)
    changed = build(repo, pipe, where="visit = 0")
    with pytest.raises(OutputExistsError, match="another config"):
        InProcessExecutor(repo.root).run(changed)
    InProcessExecutor(repo.root).run(build(repo, pipe, run="u/exec/run2", where="visit = 0")).raise_for_failures()


def test_no_io_mode_runs_tasks_without_butler(repo: Butler) -> None:
    graph = build_quantum_graph(repo.registry, Pipeline.from_yaml(
        Path(EXAMPLE_PIPELINE).with_name("noop_pipeline.yaml")), collections=COLLECTIONS, run=RUN)
    report = InProcessExecutor(None).run(graph)
    assert report.ok and report.counts()["succeeded"] == 16


class RecordingButler(Butler):
    """A caller's own butler that notes what goes through it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, str]] = []

    def get(self, dataset_type: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("get", str(getattr(dataset_type, "id", dataset_type))))
        return super().get(dataset_type, *args, **kwargs)

    def put(self, obj: Any, dataset_type: Any, *args: Any, **kwargs: Any) -> Any:
        ref = super().put(obj, dataset_type, *args, **kwargs)
        self.calls.append(("put", str(ref.id)))
        return ref


def test_one_quantum_runs_with_the_callers_butler(repo: Butler) -> None:
    """REQ-0009: the single-step API (QuantumRunner.run of one quantum) takes the caller's Butler instance."""
    graph = build(repo, where="visit = 0 AND detector = 1")
    mine = RecordingButler(repo.root, collections=[RUN, *COLLECTIONS], run=RUN)
    try:
        initialize_run(graph, mine)
        mine.calls.clear()
        runner = QuantumRunner(graph, mine)
        quantum = graph.quanta_for("calibrate")[0]
        report = runner.run(quantum.index)
        runner.close()
        assert report.status is QuantumStatus.SUCCEEDED, report.error
        # the step read its inputs and wrote its outputs through the caller's instance
        inputs = {str(r.id) for refs in quantum.inputs.values() for r in refs}
        assert {ref for op, ref in mine.calls if op == "get"} == inputs and len(inputs) == 2  # raw + bias
        assert {ref for op, ref in mine.calls if op == "put"} == {str(r.id) for r in quantum.output_refs()}
        # ... recorded its provenance there, and left the butler open for the caller
        calexp = mine.find("calexp", quantum.data_id)
        prov = mine.registry.get_provenance(calexp)
        assert prov is not None and prov.task_label == "calibrate"
        assert {str(r.id) for r in prov.actual_inputs} == inputs
        assert mine.get(calexp).shape == (8, 8)
    finally:
        mine.close()


def _logger_state() -> tuple[object, ...]:
    logger = logging.getLogger("nightshift.pipe")
    return logger.level, logger.propagate, tuple(logger.handlers)


@pytest.mark.parametrize("kind", ["inprocess", "multiprocess"])
def test_framework_sets_up_standard_logging_for_preflight_and_run(repo: Butler, tmp_path: Path, kind: str) -> None:
    """REQ-0025: given a level, pre-flight and the executor set up the standard logging themselves, in
    workers too, and leave the caller's logging as it was."""
    log_file = tmp_path / "run.log"
    before = _logger_state()
    settings = {"log_level": "DEBUG", "log_format": "json", "log_file": log_file}
    executor = InProcessExecutor(repo.root, **settings) if kind == "inprocess" else \
        MultiProcessExecutor(repo.root, processes=2, **settings)
    assert _logger_state() == before  # constructing an executor configures nothing
    graph = build(repo, where="visit = 0", **settings)
    assert _logger_state() == before
    report = executor.run(graph)
    report.raise_for_failures()
    assert _logger_state() == before  # the caller's logging is restored after the run
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    # pre-flight phase, in this process, not inside a quantum
    assert any(r["logger"] == "nightshift.pipe.preflight" and r["quantum"] == "-" and r["pid"] == os.getpid()
               for r in records)
    # run phase: each task's line carries its quantum, from the process that ran it
    task_lines = {(r["quantum"], r["pid"]) for r in records
                  if r["logger"] == "nightshift.pipe.tasks.calibrate" and r["message"].startswith("measured")}
    calibrate = {q.describe() for q in graph.quanta_for("calibrate")}
    assert {quantum for quantum, _ in task_lines} == calibrate and len(calibrate) == 4
    run_pids = {q.pid for q in report.quanta}
    assert {pid for _, pid in task_lines} <= run_pids
    if kind == "multiprocess":
        assert os.getpid() not in run_pids  # so the workers were configured by the framework too
    assert any(r["logger"] == "nightshift.pipe.executor" and r["message"].startswith("run finished") for r in records)


def test_json_logging(tmp_path: Path) -> None:
    log_file = tmp_path / "j.log"
    logger = configure_logging("INFO", fmt="json", file=log_file)
    try:
        logger.getChild("x").info("hello %s", "world")
    finally:
        for h in list(logger.handlers):
            logger.removeHandler(h)
            h.close()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    line = json.loads(log_file.read_text().splitlines()[0])
    assert line["message"] == "hello world" and line["quantum"] == "-" and line["level"] == "INFO"


def test_argument_validation() -> None:
    with pytest.raises(ValueError):
        MultiProcessExecutor(None, processes=0)


def test_worker_crash_fails_its_quanta_and_the_run_goes_on(repo: Butler, tmp_path: Path) -> None:
    """One worker dies (os._exit) once: the quanta in flight in that pool fail, the rest run in its replacement.

    Which quanta were in flight when the worker died depends on scheduling; what does not: the dying quantum
    failed, no more than ``max_in_flight`` quanta failed with it, every other calibrate quantum ran, and exactly
    the descendants of the failed ones are blocked.
    """
    marker = tmp_path / "crash-once"
    marker.write_text("x")
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_config_override("calibrate", "crash_detectors", [3])
    pipe.add_config_override("calibrate", "crash_once_marker", str(marker))  # exactly one of the two crashes
    graph = build(repo, pipe, where="visit IN (0, 1)")
    executor = MultiProcessExecutor(repo.root, processes=2, batch=1)
    report = executor.run(graph)
    assert not marker.exists(), "no worker ran a crashing quantum"
    failed = report.failures()
    assert failed and all("BrokenProcessPool" in (q.error or "") for q in failed)
    assert any(q.task_label == "calibrate" and q.data_id["detector"] == 3 for q in failed)
    assert len(failed) <= executor.max_in_flight
    downstream = set().union(*(graph.descendants(q.index) for q in failed))
    for q in report.quanta:  # the failed ones, blocked exactly their descendants, every other quantum ran
        expected = QuantumStatus.FAILED if q in failed else \
            QuantumStatus.BLOCKED if q.index in downstream else QuantumStatus.SUCCEEDED
        assert q.status is expected, (q.task_label, q.data_id, q.status, q.error)


@pytest.mark.integration
def test_runs_on_a_postgresql_registry(tmp_path: Path, pg_dsn: str, unique_name: str) -> None:
    import sqlalchemy as sa
    from pipe_support import make_repo

    butler = make_repo(tmp_path / "repo", n_visits=2, n_detectors=2, registry_db=pg_dsn, registry_schema=unique_name)
    try:
        graph = build(butler)
        report = MultiProcessExecutor(butler.root, processes=2).run(graph)
        report.raise_for_failures()
        again = InProcessExecutor(butler.root).run(graph)
        assert again.counts()["memoized"] == len(graph) == 7
        with Butler(butler.root, collections=[RUN]) as out:
            assert out.get("survey_summary", {"instrument": INSTRUMENT})["n_visits"] == 2
    finally:
        butler.close()
        engine = sa.create_engine("postgresql+psycopg://" + pg_dsn.split("://", 1)[1])
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')
        engine.dispose()


def _cooperating() -> Pipeline:
    from nightshift.pipe.examples import AssociateTask, PreloadTask

    pipe = Pipeline("AP-like: preload objects while processing the image")
    pipe.add_task("preload", PreloadTask, config={"seconds": 2.0})
    pipe.add_task("associate", AssociateTask, config={"work_seconds": 0.2})
    return pipe


def test_cooperating_tasks_run_in_parallel(repo: Butler, tmp_path: Path) -> None:
    """REQ-0030: the consumer starts while the preload still runs and waits for its deferred input.

    The preload lasts until the consumer announces that it is about to wait for the objects (a file), so
    the overlap is guaranteed by the handshake, not by a preload long enough to outlast a busy machine.
    """
    waiting = tmp_path / "associate-is-waiting"
    pipe = _cooperating()
    pipe.add_config_override("preload", "until_file", str(waiting))
    pipe.add_config_override("preload", "seconds", 240.0)  # deadlock guard only
    pipe.add_config_override("associate", "announce_file", str(waiting))
    graph = build(repo, pipe, where="visit = 0 AND detector = 0")
    assert graph.counts() == {"preload": 1, "associate": 1}
    assert graph.dependencies() == [[], [0]] and graph.start_dependencies() == [[], []]
    report = MultiProcessExecutor(repo.root, processes=2).run(graph)
    report.raise_for_failures()
    preload, associate = report.quanta
    assert associate.start < preload.end  # started while the preload was still fetching (REQ-0030)
    assert associate.end >= preload.end   # and finished only with the preload's output
    with Butler(repo.root, collections=[RUN]) as out:
        result = out.get("associations", {"instrument": INSTRUMENT, "visit": 0, "detector": 0})
        assert result["n_objects"] == 5 and result["pixels"] == 64
        prov = out.registry.get_provenance(out.find("associations", {"instrument": INSTRUMENT, "visit": 0,
                                                                      "detector": 0}))
        assert {r.dataset_type.name for r in prov.actual_inputs} == {"raw", "preloaded_objects"}


def test_failed_producer_of_a_deferred_input(repo: Butler) -> None:
    pipe = _cooperating()
    pipe.add_config_override("preload", "seconds", -1.0)  # time.sleep(-1) raises ValueError
    graph = build(repo, pipe, where="visit = 0 AND detector = 0")
    # serially the consumer has not started yet: it is blocked
    report = InProcessExecutor(repo.root).run(graph)
    assert [q.status for q in report.quanta] == [QuantumStatus.FAILED, QuantumStatus.BLOCKED]
    # in parallel it was already waiting: it gives up after the deferred timeout, naming the missing input
    report = MultiProcessExecutor(repo.root, processes=2, deferred_timeout=1.0, memoize=False).run(graph)
    assert [q.status for q in report.quanta] == [QuantumStatus.FAILED, QuantumStatus.FAILED]
    assert "did not appear within 1.0 s" in (report.quanta[1].error or "")


def test_empty_graph_runs_nothing(repo: Butler) -> None:
    graph = build(repo, where="visit = 77")
    report = MultiProcessExecutor(repo.root, processes=2).run(graph)
    assert report.quanta == [] and report.ok


class MakerConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    raw = Input("raw", "NumpyArray", ("instrument", "visit", "detector"))
    schema = InitOutput("maker_schema", "StructuredDataDict")
    out = Output("made", "StructuredDataDict", ("instrument", "visit", "detector"))


class MakerTask(PipelineTask):
    ConnectionsClass = MakerConnections

    def init_outputs(self) -> dict[str, object]:
        return {"schema": {"columns": ["a", "b"]}}

    def run(self, raw: object) -> Struct:
        return Struct(out={"a": 1, "b": 2})


class UserConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    schema = InitInput("maker_schema", "StructuredDataDict")
    made = Input("made", "StructuredDataDict", ("instrument", "visit", "detector"))
    out = Output("used", "StructuredDataDict", ("instrument", "visit", "detector"))


class UserTask(PipelineTask):
    ConnectionsClass = UserConnections

    def run(self, made: dict) -> Struct:
        return Struct(out={c: made[c] for c in self.init_inputs["schema"]["columns"]})


def test_init_outputs_are_written_once_and_read_as_init_inputs(repo: Butler) -> None:
    pipe = Pipeline()
    pipe.add_task("maker", MakerTask)
    pipe.add_task("user", UserTask)
    graph = build(repo, pipe, where="visit = 0")
    assert graph.init_inputs["user"]["schema"] == graph.init_outputs["maker"]["schema"]
    InProcessExecutor(repo.root).run(graph).raise_for_failures()
    with Butler(repo.root, collections=[RUN]) as out:
        assert out.get("maker_schema", {}) == {"columns": ["a", "b"]}
        assert out.get("used", {"instrument": INSTRUMENT, "visit": 0, "detector": 1}) == {"a": 1, "b": 2}
