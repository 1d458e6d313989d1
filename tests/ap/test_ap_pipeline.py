"""The Alert Production pipeline YAML (``nightshift.ap.AP_PIPELINE``) end to end: butler in, APDB and butler out.

Against the real PostgreSQL server: the APDB preload and store are pipeline steps, so the
association of a later visit sees what an earlier visit stored, through the APDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from ap_repo import INSTRUMENT, ApRepoSpec, make_ap_repo, transient_xy

from nightshift.ap import AP_PIPELINE, StoreApdbTask, StoreApdbTaskConfig
from nightshift.apdb import Apdb, ApdbSettings, Circle, split_source_ids
from nightshift.butler._butler import Butler
from nightshift.pipe import (
    DaskExecutor,
    ExecutionReport,
    Executor,
    InProcessExecutor,
    MultiProcessExecutor,
    Pipeline,
    QuantumStatus,
    build_quantum_graph,
)

COLLECTIONS = ["raw/all", "ap/inputs"]
# the real PostgreSQL holds the APDB; visits of AP are slow on a busy machine
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture
def apdb_schema(pg_dsn: str, unique_name: str) -> Iterator[str]:
    schema = f"apdb_ap_{unique_name}"
    with Apdb(ApdbSettings(dsn=pg_dsn, schema_name=schema, pool_min_size=0)) as apdb:  # type: ignore[arg-type]
        apdb.create(drop=True)
    yield schema
    with Apdb(ApdbSettings(dsn=pg_dsn, schema_name=schema, pool_min_size=0)) as apdb:  # type: ignore[arg-type]
        apdb.drop()


@pytest.fixture(scope="module")
def dask_client(pg_dsn: str):  # the workers start with PG_DSN in their environment
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                                       scheduler_port=0)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def ap_pipeline(spec: ApRepoSpec, schema: str) -> Pipeline:
    pipe = Pipeline.from_yaml(AP_PIPELINE)
    for key, value in spec.isr_config().items():
        pipe.add_config_override("isr", key, value)
    pipe.add_config_override("preload", "apdb_schema", schema)
    pipe.add_config_override("store", "apdb_schema", schema)
    return pipe


def run_visit(butler: Butler, pipe: Pipeline, visit: int, executor: Executor) -> ExecutionReport:
    graph = build_quantum_graph(butler.registry, pipe, collections=COLLECTIONS, run=f"ap/run/v{visit}",
                                where=f"visit = {visit}")
    return executor.run(graph)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["inprocess", "multiprocess", "dask"])
def test_ap_pipeline_yaml_runs_visits_into_the_apdb_and_the_butler(
        tmp_path: Path, apdb_schema: str, pg_dsn: str, executor: str, request: pytest.FixtureRequest) -> None:
    # three visits in process; two through the parallel executors (the suite stays fast)
    spec = ApRepoSpec(visits=(1, 2, 3) if executor == "inprocess" else (1, 2), detectors=(1, 2))
    butler = make_ap_repo(tmp_path / "repo", spec)
    pipe = ap_pipeline(spec, apdb_schema)
    if executor == "inprocess":
        ex: Executor = InProcessExecutor(butler.root)
    elif executor == "multiprocess":
        ex = MultiProcessExecutor(butler.root, processes=2)
    else:
        ex = DaskExecutor(butler.root, client=request.getfixturevalue("dask_client"))
    graph = build_quantum_graph(butler.registry, pipe, collections=COLLECTIONS, run="ap/run/v1", where="visit = 1")
    # the APDB I/O is declared: pre-flight plans the preload (from the visit record alone) and the store
    assert graph.counts() == {"preload": 1, "isr": 2, "characterize": 2, "subtract": 2, "detect": 2,
                              "associate": 2, "store": 2}
    ex.run(graph).raise_for_failures()
    for v in spec.visits[1:]:  # one graph per visit, as Alert Production runs: each preload sees the last store
        run_visit(butler, pipe, v, ex).raise_for_failures()

    tx, ty = transient_xy(spec)
    stored_sources = 0
    object_of_visit = {}
    for v in spec.visits:
        with Butler(butler.root, collections=[f"ap/run/v{v}"]) as out:
            for d in spec.detectors:
                did = {"instrument": INSTRUMENT, "visit": v, "detector": d}
                src = out.get("dia_source", did)
                receipt = out.get("apdb_store", did)
                assert receipt["schema"] == apdb_schema
                assert receipt["n_rows"]["DiaSource"] == src.num_rows
                stored_sources += src.num_rows
                vv, dd, _ = split_source_ids(src["diaSourceId"].to_numpy())
                assert set(vv) <= {v} and set(dd) <= {d}
                if d == 1:
                    j = int(np.argmin(np.hypot(src["x"].to_numpy() - tx, src["y"].to_numpy() - ty)))
                    assert np.hypot(src["x"][j].as_py() - tx, src["y"][j].as_py() - ty) < 0.5
                    object_of_visit[v] = src["diaObjectId"][j].as_py()
                prov = out.registry.get_provenance(out.find("apdb_store", did))
                assert {r.dataset_type.name for r in prov.actual_inputs} == {"dia_source", "dia_object",
                                                                              "dia_forced_source"}
            prov = out.registry.get_provenance(out.find("dia_source", {"instrument": INSTRUMENT, "visit": v,
                                                                       "detector": 1}))
            assert "preloaded_dia_objects" in {r.dataset_type.name for r in prov.actual_inputs}
    # the transient of visit 1 became a DiaObject in the APDB; visits 2 and 3 preloaded it and associated with it
    assert len(set(object_of_visit.values())) == 1
    oid = object_of_visit[1]
    with Apdb(ApdbSettings(dsn=pg_dsn, schema_name=apdb_schema)) as apdb:  # type: ignore[arg-type]
        objs = apdb.get_dia_objects(Circle(150.0, 2.0, 1.0))
        ids = objs["diaObjectId"].to_pylist()
        assert oid in ids
        n_src = objs["nDiaSources"].to_pylist()[ids.index(oid)]
        assert n_src == len(spec.visits)
        hist = apdb.get_dia_sources(ids, 0.0)
        assert hist.num_rows == stored_sources  # every DiaSource of every detector and visit, once
        if executor == "inprocess":
            # re-storing a detector's rows (a re-run quantum) adds nothing: deterministic ids, idempotent store
            with Butler(butler.root, collections=["ap/run/v2"]) as out:
                did = {"instrument": INSTRUMENT, "visit": 2, "detector": 1}
                again = StoreApdbTask(StoreApdbTaskConfig(apdb_schema=apdb_schema)).run(
                    out.get("dia_source", did), out.get("dia_object", did), out.get("dia_forced_source", did))
            assert again.receipt["added"] == {"DiaSource": 0, "DiaObject": 0, "DiaForcedSource": 0}
            assert apdb.get_dia_sources(ids, 0.0).num_rows == stored_sources
    butler.close()


def test_bad_input_fails_only_its_quantum_and_the_rest_of_the_visit_goes_on(tmp_path: Path, apdb_schema: str) -> None:
    """Detector 1 normal; 2 a corrupt amplifier (masked, flagged, goes on); 3 no bias (ISR fails naming it);
    4 a pointing a degree off (astrometry fails with its diagnostics); 5 off the template (empty difference:
    zero DIA sources, stored as such)."""
    spec = ApRepoSpec(visits=(1,), detectors=(1, 2, 3, 4, 5), template_detectors=(1, 2, 3, 4), no_bias=(3,),
                      corrupt_amp={2: 1}, lost_pointing=(4,))
    butler = make_ap_repo(tmp_path / "repo", spec)
    graph = build_quantum_graph(butler.registry, ap_pipeline(spec, apdb_schema), collections=COLLECTIONS,
                                run="ap/run/v1")
    # nothing dropped at pre-flight: the quantum without its bias is planned, and fails when it runs
    assert graph.counts()["isr"] == 5 and not graph.metadata.get("dropped")
    report = InProcessExecutor(butler.root).run(graph)
    status = {(q.task_label, q.data_id.get("detector")): q for q in report.quanta}
    isr3 = status[("isr", 3)]
    assert isr3.status == QuantumStatus.FAILED
    assert "MissingInputError" in isr3.error
    assert "'bias'" in isr3.error and "'detector': 3" in isr3.error
    assert status[("store", 3)].status == QuantumStatus.BLOCKED
    ch4 = status[("characterize", 4)]
    assert ch4.status == QuantumStatus.FAILED and "AstrometryFitError" in ch4.error
    assert "diagnostics: n_sources=" in ch4.error and "n_refs_in_footprint=0" in ch4.error
    for d in (1, 2, 5):
        assert status[("store", d)].status == QuantumStatus.SUCCEEDED, status[("store", d)].error
    assert status[("preload", None)].status == QuantumStatus.SUCCEEDED
    with Butler(butler.root, collections=["ap/run/v1"]) as out:
        calexp2 = out.get("calexp", {"instrument": INSTRUMENT, "visit": 1, "detector": 2})
        assert calexp2.metadata["BADAMPS"] != ""
        receipt5 = out.get("apdb_store", {"instrument": INSTRUMENT, "visit": 1, "detector": 5})
        assert receipt5["n_rows"]["DiaSource"] == 0 and receipt5["added"]["DiaSource"] == 0
        diff5 = out.get("difference", {"instrument": INSTRUMENT, "visit": 1, "detector": 5})
        assert not np.isfinite(diff5.image).any() or np.all(diff5.mask != 0)
    butler.close()


def test_a_missing_template_fails_the_subtraction_naming_it(tmp_path: Path, apdb_schema: str) -> None:
    spec = ApRepoSpec(visits=(1,), detectors=(1,), n_cosmic_rays=0)
    butler = make_ap_repo(tmp_path / "repo", spec)
    butler.remove_datasets([butler.find("ap_template", {"instrument": INSTRUMENT}, collections=["ap/inputs"])])
    graph = build_quantum_graph(butler.registry, ap_pipeline(spec, apdb_schema), collections=COLLECTIONS,
                                run="ap/run/v1")
    assert graph.counts()["subtract"] == 1
    report = InProcessExecutor(butler.root).run(graph)
    sub = next(q for q in report.quanta if q.task_label == "subtract")
    assert sub.status == QuantumStatus.FAILED and "MissingInputError" in sub.error
    assert "'ap_template'" in sub.error and "'instrument': 'Cam'" in sub.error
    assert {q.task_label for q in report.quanta if q.status == QuantumStatus.SUCCEEDED} == {"preload", "isr",
                                                                                          "characterize"}
    butler.close()
