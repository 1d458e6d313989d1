"""DMS-MWBT-REQ-0084, 0085, 0086: the discovery interface initiates processing in each context.

The same runs show the input and output interfaces in those contexts: outputs
written through the Butler by the tasks in a production batch run (REQ-0068), a
notebook's kernel (REQ-0070) and a test run on personal hardware
(REQ-0071), read back where they ran (REQ-0039), and an official release read
from a notebook on the platform (REQ-0037).

In each context the launching environment asks the registry's discovery
interface (``query_graph``, and the pre-flight ``build_quantum_graph`` that is
built on the same queries) which data to process, and launches the processing
that query selected; the jobs then run from the quantum graph.

- Data Release Production (0084): a production repository (real PostgreSQL
  registry, S3 datastore), the whole campaign selected by a ``where`` query,
  launched on a batch executor (worker processes) from the saved graph.
- Science Platform notebook (0086): a notebook attaches to the published
  platform repository by its ``s3://`` URI, queries, and runs locally.
- Test/development runs (0085): the same on a laptop repository (SQLite +
  POSIX), restricted to a small test selection in a personal run, and the
  same call on LSST hardware (the PostgreSQL + S3 repository of 0084).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from pipe_support import BIAS, COLLECTIONS, INSTRUMENT, RAW, insert_dimensions, make_repo, run_notebook

from nightshift.butler import Butler, CollectionType
from nightshift.pipe import InProcessExecutor, MultiProcessExecutor, Pipeline, build_quantum_graph
from nightshift.pipe.examples import EXAMPLE_PIPELINE


def drop_schema(dsn: str, schema: str) -> None:
    engine = sa.create_engine("postgresql+psycopg://" + dsn.split("://", 1)[1])
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


def make_platform_repo(root: Path, pg_dsn: str, schema: str, s3_endpoint: str) -> Butler:
    """A repository on the platform's servers: 2 visits x 2 detectors of raw plus biases."""
    s3 = {"cls": "s3", "bucket": schema, "prefix": "repo", "endpoint_url": s3_endpoint, "create_bucket": True}
    butler = Butler.create(root, datastore=s3, registry_db=pg_dsn, registry_schema=schema)
    insert_dimensions(butler, 2, 2)
    butler.register_dataset_type(RAW)
    butler.register_dataset_type(BIAS)
    rng = np.random.default_rng(1)
    butler.put_many([(rng.normal(100.0, 1.0, (8, 8)), {"instrument": INSTRUMENT, "visit": v, "detector": d})
                     for v in range(2) for d in range(2)], "raw", run="raw/all")
    butler.put_many([(np.full((8, 8), 10.0), {"instrument": INSTRUMENT, "detector": d}) for d in range(2)],
                    "bias", run="calib/bias")
    return butler


@pytest.fixture
def platform(tmp_path: Path, pg_dsn: str, s3_endpoint: str, unique_name: str) -> Iterator[Butler]:
    butler = make_platform_repo(tmp_path / "platform", pg_dsn, unique_name, s3_endpoint)
    try:
        yield butler
    finally:
        butler.close()
        drop_schema(pg_dsn, unique_name)


@pytest.mark.integration
def test_data_release_production_is_launched_from_a_discovery_query(platform: Butler, tmp_path: Path) -> None:
    """REQ-0084: production registry and storage; the launch host queries, batch workers process."""
    discovered = platform.registry.query_graph(["visit", "detector"], ["raw"], "raw/all", where="visit IN (0, 1)")
    assert sorted((d["visit"], d["detector"]) for d in discovered.data_ids()) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    graph = build_quantum_graph(platform.registry, Pipeline.from_yaml(EXAMPLE_PIPELINE), collections=COLLECTIONS,
                                run="drp/campaign1", where="visit IN (0, 1)")
    assert len(graph) == 7  # 4 calexps, 2 visit summaries, 1 survey summary
    path = tmp_path / "campaign1.qg"
    graph.save(path)
    report = MultiProcessExecutor(platform.root, processes=2).run(graph, graph_path=path)
    report.raise_for_failures()
    with Butler(platform.root, collections=["drp/campaign1"]) as out:
        assert out.get("survey_summary", {"instrument": INSTRUMENT})["n_visits"] == 2
        assert out.get_uri("calexp", instrument=INSTRUMENT, visit=1, detector=1).startswith("s3://")


@pytest.mark.integration
def test_a_notebook_on_the_platform_launches_processing_from_a_discovery_query(
        platform: Butler, tmp_path: Path) -> None:
    """REQ-0086: a notebook attaches to the platform repository, queries, and runs locally."""
    uri = platform.publish_config()
    with Butler.attach(uri, tmp_path / "notebook-home") as nb:
        discovered = nb.registry.query_graph(["visit", "detector"], ["raw"], "raw/all", where="visit.seeing < 0.55")
        assert {d["visit"] for d in discovered.data_ids()} == {0}  # seeing is 0.5 for visit 0, 0.6 for visit 1
        graph = build_quantum_graph(nb.registry, Pipeline.from_yaml(EXAMPLE_PIPELINE), collections=COLLECTIONS,
                                    run="u/scientist/nb1", where="visit.seeing < 0.55")
    report = InProcessExecutor(tmp_path / "notebook-home").run(graph)
    report.raise_for_failures()
    assert report.counts()["succeeded"] == len(graph) == 4  # 2 calexps, 1 visit summary, 1 survey summary
    with Butler(platform.root, collections=["u/scientist/nb1"]) as out:  # the results are on the platform
        assert out.get("visit_summary", {"instrument": INSTRUMENT, "visit": 0})["n_detectors"] == 2


@pytest.mark.integration
def test_a_notebook_on_the_platform_reads_an_official_data_release(platform: Butler, tmp_path: Path) -> None:
    """REQ-0037: a release published on the platform (a CHAINED collection over the production outputs) is read
    from a notebook that attached to the repository by its URI, through the same Butler interface."""
    graph = build_quantum_graph(platform.registry, Pipeline.from_yaml(EXAMPLE_PIPELINE), collections=COLLECTIONS,
                                run="drp/dr1/run1", where="visit IN (0, 1)")
    InProcessExecutor(platform.root).run(graph).raise_for_failures()
    platform.registry.register_collection("DR1", CollectionType.CHAINED, doc="official data release 1")
    platform.registry.set_collection_chain("DR1", ["drp/dr1/run1", *COLLECTIONS])
    with Butler.attach(platform.publish_config(), tmp_path / "notebook-home", collections=["DR1"]) as nb:
        assert nb.get("survey_summary", {"instrument": INSTRUMENT})["n_visits"] == 2
        released = nb.registry.query_datasets("calexp", "DR1", where="visit = 1")
        assert sorted(r.data_id["detector"] for r in released) == [0, 1]
        detector = released[0].data_id["detector"]
        calexp, raw = nb.get(released[0]), nb.get("raw", instrument=INSTRUMENT, visit=1, detector=detector)
        bias = nb.get("bias", instrument=INSTRUMENT, detector=detector)
        np.testing.assert_allclose(calexp, (raw - bias) * 2.0)  # the release's processing (gain 2 in the pipeline)


@pytest.mark.integration
def test_a_notebook_kernel_on_the_platform_writes_its_outputs_through_the_butler(
        platform: Butler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REQ-0070: tasks run in a notebook (``docs/notebooks/platform_processing.ipynb``, a real kernel through
    nbclient) write their outputs into the platform repository (PostgreSQL + S3) through the Butler."""
    out = run_notebook("platform_processing.ipynb", tmp_path, monkeypatch,
                       NIGHTSHIFT_NOTEBOOK_REPO_URI=platform.publish_config(),
                       NIGHTSHIFT_NOTEBOOK_HOME=str(tmp_path / "notebook-home"), NIGHTSHIFT_NOTEBOOK_RUN="u/sci/nb2")
    assert out["counts"]["succeeded"] == 4 and out["n_detectors"] == 2  # 2 calexps, visit and survey summary
    assert sorted(out["sums"]) == ["1,0", "1,1"] and all(u.startswith("s3://") for u in out["uris"])
    with Butler(platform.root, collections=["u/sci/nb2"]) as b:  # the platform holds what the notebook wrote
        for key, total in out["sums"].items():
            detector = int(key.split(",")[1])
            calexp = b.get("calexp", instrument=INSTRUMENT, visit=1, detector=detector)
            raw = b.get("raw", instrument=INSTRUMENT, visit=1, detector=detector, collections=COLLECTIONS)
            bias = b.get("bias", instrument=INSTRUMENT, detector=detector, collections=COLLECTIONS)
            np.testing.assert_allclose(calexp, (raw - bias) * 2.0)
            assert total == pytest.approx(float(calexp.sum()))


def test_a_test_run_on_personal_hardware_is_launched_from_a_discovery_query(tmp_path: Path) -> None:
    """REQ-0085 on a laptop: SQLite + POSIX, a small test selection into a personal run."""
    laptop = make_repo(tmp_path / "laptop", n_visits=2, n_detectors=2)
    try:
        discovered = laptop.registry.query_graph(["visit", "detector"], ["raw"], "raw/all",
                                                 where="visit = 1 AND detector = 0")
        assert discovered.data_ids() == [{"instrument": INSTRUMENT, "visit": 1, "detector": 0}]
        pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
        graph = build_quantum_graph(laptop.registry, pipe, collections=COLLECTIONS, run="u/dev/test1",
                                    where="visit = 1 AND detector = 0", steps=["single_frame"])
        assert [q.task_label for q in graph.quanta] == ["calibrate"]
        InProcessExecutor(laptop.root).run(graph).raise_for_failures()
        with Butler(laptop.root, collections=["u/dev/test1"]) as out:
            assert out.exists("calexp", instrument=INSTRUMENT, visit=1, detector=0)
            assert not out.exists("calexp", instrument=INSTRUMENT, visit=0, detector=0)
            # REQ-0039: the test run's outputs are read back on the hardware it ran on, through the Butler
            calexp = out.get("calexp", instrument=INSTRUMENT, visit=1, detector=0)
            raw = out.get("raw", instrument=INSTRUMENT, visit=1, detector=0, collections=COLLECTIONS)
            bias = out.get("bias", instrument=INSTRUMENT, detector=0, collections=COLLECTIONS)
            np.testing.assert_allclose(calexp, (raw - bias) * 2.0)  # gain 2 in the example pipeline
    finally:
        laptop.close()
