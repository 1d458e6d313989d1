"""Demo steps for the butler (PostgreSQL registry + S3 datastore) and a pipeline run."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nightshift.butler import Exposure
    from nightshift.butler.registry import Registry
    from nightshift.pipe import Pipeline

Echo = Callable[[str], None]


def _records(reg: Registry) -> None:
    reg.insert_dimension_records("instrument", [{"name": "Cam"}])
    reg.insert_dimension_records("band", [{"name": "r"}])
    reg.insert_dimension_records("physical_filter", [{"instrument": "Cam", "name": "r_01", "band": "r"}])
    reg.insert_dimension_records("day_obs", [{"instrument": "Cam", "id": 20260101}])
    reg.insert_dimension_records("detector", [{"instrument": "Cam", "id": d} for d in range(3)])
    reg.insert_dimension_records("visit", [
        {"instrument": "Cam", "id": v, "physical_filter": "r_01", "day_obs": 20260101, "seeing": 0.6 + 0.2 * v}
        for v in range(3)
    ])


def _exposure(shape: tuple[int, int]) -> Exposure:
    from astropy.io import fits
    from astropy.wcs import WCS

    from nightshift.butler import Exposure

    rng = np.random.default_rng(7)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [53.1, -28.1]
    wcs.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    header = fits.Header()
    header["EXPTIME"] = 30.0
    return Exposure(
        image=rng.normal(100, 5, shape).astype(np.float32),
        mask=np.zeros(shape, dtype=np.int32),
        variance=np.full(shape, 25.0, dtype=np.float32),
        wcs=wcs,
        psf=np.outer(np.hanning(11), np.hanning(11)),
        metadata=header,
    )


def butler_step(env: dict[str, str], echo: Echo) -> None:
    """A repository with its registry in PostgreSQL and its files in S3: put, query, get parts."""
    import sqlalchemy as sa

    from nightshift.butler import Box, Butler, DatasetType

    tag = "demo_" + uuid.uuid4().hex[:8]
    bucket = "nightshift-demo"
    datastore = {"cls": "s3", "bucket": bucket, "prefix": tag, "endpoint_url": env["S3_ENDPOINT"],
                 "create_bucket": True}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        Butler.create(root, datastore=datastore, registry_db=env["PG_DSN"], registry_schema=tag).close()
        try:
            with Butler(root, run="demo/run") as butler:
                _records(butler.registry)
                butler.register_dataset_type(DatasetType("calexp", ["instrument", "visit", "detector"], "Exposure"))
                t0 = time.perf_counter()
                refs = [butler.put(_exposure((512, 512)), "calexp", {"instrument": "Cam", "visit": v, "detector": d})
                        for v in range(3) for d in range(3)]
                put_s = time.perf_counter() - t0
                found = list(butler.registry.query_datasets(
                    "calexp", collections="demo/run", where="visit.seeing < 0.9 AND detector IN (0, 1)"
                ))
                did: dict[str, int | str] = {"instrument": "Cam", "visit": 1, "detector": 2}
                wcs = butler.get("calexp.wcs", did)
                cut = butler.get("calexp", did, parameters={"bbox": Box(100, 100, 150, 150)})
                echo(f"butler    : repository with its registry in PostgreSQL (schema {tag}) and files in S3 "
                     f"(s3://{bucket}/{tag}): put {len(refs)} calexps (512x512, image+mask+variance+WCS+PSF) "
                     f"in {put_s:.2f} s")
                echo(f"            where 'visit.seeing < 0.9 AND detector IN (0, 1)' found {len(found)} datasets; "
                     f"read calexp.wcs alone (CRVAL {wcs.wcs.crval[0]:.1f}, {wcs.wcs.crval[1]:.1f}) and a "
                     f"{cut.image.shape[1]}x{cut.image.shape[0]} cutout; uri {butler.get_uri(refs[0])}")
        finally:
            engine = sa.create_engine("postgresql+psycopg://" + env["PG_DSN"].split("://", 1)[1])
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
            engine.dispose()
            _delete_prefix(env, bucket, tag + "/")


def _delete_prefix(env: dict[str, str], bucket: str, prefix: str) -> None:
    """Remove the demo's objects. Folder-marker keys (ending in '/') are left alone:
    S3Proxy's filesystem backend takes ~10 s to delete each of them."""
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], config=Config(
        request_checksum_calculation="when_required", response_checksum_validation="when_required"))
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
        if not obj["Key"].endswith("/")
    ]
    for key in keys:  # S3Proxy rejects DeleteObjects' checksum header from current botocore
        s3.delete_object(Bucket=bucket, Key=key)


def pipeline_step(env: dict[str, str], echo: Echo) -> None:
    """The worked example pipeline: pre-flight, a 2-process run, provenance, memoization, the runner fleet."""
    from nightshift.butler import Butler, DatasetType
    from nightshift.pipe import InProcessExecutor, MultiProcessExecutor, Pipeline, QuantumGraph, build_quantum_graph
    from nightshift.pipe.examples import EXAMPLE_PIPELINE

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        with Butler.create(root) as butler:
            _records(butler.registry)
            butler.register_dataset_type(DatasetType("raw", ["instrument", "visit", "detector"], "NumpyArray"))
            butler.register_dataset_type(DatasetType("bias", ["instrument", "detector"], "NumpyArray"))
            rng = np.random.default_rng(0)
            butler.put_many([(rng.normal(100, 1, (64, 64)), {"instrument": "Cam", "visit": v, "detector": d})
                             for v in range(3) for d in range(3)], "raw", run="raw/all")
            butler.put_many([(np.full((64, 64), 10.0), {"instrument": "Cam", "detector": d}) for d in range(3)],
                            "bias", run="calib/bias")
            pipeline = Pipeline.from_yaml(EXAMPLE_PIPELINE)
            pipeline.add_override_string("calibrate:measure.threshold=2.5")
            t0 = time.perf_counter()
            graph = build_quantum_graph(butler.registry, pipeline, collections=["raw/all", "calib/bias"],
                                        run="demo/pipeline", where="visit.seeing < 1.0")
            build_s = time.perf_counter() - t0
            graph.save(root / "demo.qg")
            graph.plot(root / "demo.png")
            t0 = time.perf_counter()
            report = MultiProcessExecutor(root, processes=2).run(QuantumGraph.load(root / "demo.qg"),
                                                                graph_path=root / "demo.qg")
            report.raise_for_failures()
            run_s = time.perf_counter() - t0
            with Butler(root, collections=["demo/pipeline"]) as out:
                summary = out.get("survey_summary", {"instrument": "Cam"})
                visit0 = out.find("visit_summary", {"instrument": "Cam", "visit": 0})
                prov = out.registry.get_provenance(visit0)
                assert prov is not None  # the run just wrote it
            again = InProcessExecutor(root).run(graph)
            echo(f"pipeline  : 3-step example (per detector -> per visit -> survey): pre-flight built "
                 f"{len(graph)} quanta {graph.counts()} in {build_s:.2f} s; ran them in 2 worker processes "
                 f"in {run_s:.2f} s {report.counts()}")
            echo(f"            survey summary over {summary['n_visits']} visits; provenance of visit_summary(visit 0): "
                 f"{len(prov.predicted_inputs)} predicted, {len(prov.actual_inputs)} actual inputs; "
                 f"re-run memoized {again.counts().get('memoized', 0)} of {len(graph)} quanta")
            _fleet_step(env, root, butler.registry, pipeline, echo)


def _fleet_step(env: dict[str, str], root: Path, registry: Registry, pipeline: Pipeline, echo: Echo) -> None:
    """The same pipeline, into another run, on two runner services fed over Kafka."""
    from nightshift.pipe import build_quantum_graph
    from nightshift.pipe.executors import KafkaExecutor

    from .fleet import LocalRunnerFleet

    with LocalRunnerFleet(env["KAFKA_BOOTSTRAP"], log_level="WARNING") as fleet:
        fleet.start(2)
        graph = build_quantum_graph(registry, pipeline, collections=["raw/all", "calib/bias"], run="demo/fleet",
                                    where="visit.seeing < 1.0")
        graph.save(root / "fleet.qg")  # every runner reads the graph from here
        t0 = time.perf_counter()
        report = KafkaExecutor(root, bootstrap=env["KAFKA_BOOTSTRAP"], topics=fleet.topics,
                               quantum_timeout=120).run(graph, graph_path=root / "fleet.qg")
        report.raise_for_failures()
        echo(f"runners   : the same pipeline into run demo/fleet on 2 runner services over Kafka "
             f"(quantum.planned -> quantum.completed) in {time.perf_counter() - t0:.2f} s {report.counts()}; "
             f"quanta ran in {len({q.pid for q in report.quanta})} runner process(es)")


async def _apdb_cycle(env: dict[str, str], echo: Echo) -> None:
    from nightshift.apdb import ApdbSettings, AsyncApdb, SkyField

    schema = "demo_apdb_" + uuid.uuid4().hex[:8]
    sky = SkyField(centres=3, sources_per_visit=2000, forced_per_visit=2000)
    async with AsyncApdb(ApdbSettings(dsn=env["PG_DSN"], schema_name=schema)) as apdb:
        await apdb.create(drop=True)
        try:
            stores, preloads = [], []
            for i in range(4):
                visit = sky.visit(i)
                t0 = time.perf_counter()
                stored = await apdb.store(visit.mjd, visit.objects, visit.sources, visit.forced_sources)
                stores.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                pre = await apdb.preload(sky.region(i + 1), sky.history_start(i + 1))
                preloads.append(time.perf_counter() - t0)
            replay = await apdb.store(visit.mjd, visit.objects, visit.sources, visit.forced_sources)
            echo(f"apdb      : 4 visits of {stored.dia_sources} DIA sources "
                 "(+ objects, forced sources; Rubin apdb.yaml "
                 f"columns) stored by binary COPY in {np.median(stores) * 1000:.0f} ms median; each next field "
                 f"preloaded in {np.median(preloads) * 1000:.0f} ms median ({pre.objects.num_rows} objects, "
                 f"{pre.sources.num_rows} sources, {pre.forced_sources.num_rows} forced sources in the last)")
            echo(f"            replaying the last visit stored {replay.dia_sources} new DIA sources (idempotent)")
        finally:
            await apdb.drop()


def apdb_step(env: dict[str, str], echo: Echo) -> None:
    """An Alert Production visit cycle on the APDB: store a visit, preload the next field."""
    import asyncio

    asyncio.run(_apdb_cycle(env, echo))
