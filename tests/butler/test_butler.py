"""The Butler: registry + datastore, put/get, components, parameters, all-or-nothing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.table import Table
from registry_support import populate
from test_formatters import make_exposure, make_wcs

from nightshift.butler import DatasetType
from nightshift.butler._butler import Butler
from nightshift.butler.datastores import DatasetNotFoundError
from nightshift.butler.formatters import Box, FormatterError
from nightshift.butler.registry import ConflictingDefinitionError, DataIdError

CALEXP = DatasetType("calexp", ["instrument", "visit", "detector"], "Exposure")
METRIC = DatasetType("metric", ["instrument", "visit"], "StructuredDataDict")
WCS_FIX = DatasetType("calexp_wcs_fix", ["instrument", "visit", "detector"], "Wcs")
SRC = DatasetType("src", ["instrument", "visit", "detector"], "AstropyTable")
RUN = "u/tester/run"
DID = {"instrument": "Cam", "visit": 1, "detector": 2}


def setup_repo(butler: Butler) -> Butler:
    populate(butler.registry)
    for dt in (CALEXP, METRIC, WCS_FIX, SRC):
        butler.register_dataset_type(dt)
    return butler


@pytest.fixture
def butler(tmp_path: Path) -> Iterator[Butler]:
    Butler.create(tmp_path / "repo").close()
    with Butler(tmp_path / "repo", run=RUN) as b:
        yield setup_repo(b)


def files_under(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_put_returns_full_ref_and_get_round_trips(butler: Butler) -> None:
    exp = make_exposure((40, 50))
    ref = butler.put(exp, "calexp", DID)
    assert ref.run == RUN and ref.dataset_type == CALEXP and dict(ref.data_id) == DID and ref.id is not None
    found = butler.find("calexp", DID)
    assert found == ref  # REQ-0075: the ref discovers what was written
    back = butler.get("calexp", DID)
    np.testing.assert_array_equal(back.image, exp.image)
    assert butler.get(ref).metadata["FILTER"] == "r"


def test_component_and_parameter_reads(butler: Butler) -> None:
    exp = make_exposure((40, 50))
    butler.put(exp, "calexp", DID)
    wcs = butler.get("calexp.wcs", DID)
    np.testing.assert_allclose(wcs.wcs.crval, exp.wcs.wcs.crval)
    np.testing.assert_array_equal(butler.get("calexp.psf", DID), exp.psf)
    cut = butler.get("calexp", DID, parameters={"bbox": Box(10, 5, 30, 25)})
    np.testing.assert_array_equal(cut.image, exp.image[5:25, 10:30])
    np.testing.assert_array_equal(butler.get("calexp.mask", DID, parameters={"bbox": (0, 0, 4, 4)}), exp.mask[:4, :4])


def test_missing_and_mismatched(butler: Butler) -> None:
    with pytest.raises(DatasetNotFoundError):
        butler.get("calexp", DID)
    with pytest.raises(LookupError):
        butler.get("no_such_type", DID)
    with pytest.raises((DataIdError, ValueError)):
        butler.put(make_exposure((4, 4)), "calexp", {"instrument": "Cam", "visit": 1})  # no detector


def test_no_clobber(butler: Butler) -> None:
    """REQ-0074: a second put of the same dataset is an error and changes nothing."""
    butler.put({"v": 1}, "metric", instrument="Cam", visit=1)
    before = files_under(butler.root)
    with pytest.raises(ConflictingDefinitionError):
        butler.put({"v": 2}, "metric", instrument="Cam", visit=1)
    assert butler.get("metric", instrument="Cam", visit=1) == {"v": 1}
    assert files_under(butler.root) - {"registry.sqlite3-wal", "registry.sqlite3-shm"} == before - {
        "registry.sqlite3-wal", "registry.sqlite3-shm"}


def _datasets(butler: Butler) -> list[Any]:
    return sorted(str(r.id) for r in butler.registry.query_datasets("metric", [RUN]))


def test_datastore_failure_leaves_no_row_and_no_file(butler: Butler) -> None:
    """REQ-0076: the formatter fails → no registry row, no file."""
    butler.put({"v": 0}, "metric", instrument="Cam", visit=0)
    before_files = files_under(butler.root / "datastore")
    before_rows = _datasets(butler)
    with pytest.raises(FormatterError):
        butler.put({"v": object()}, "metric", instrument="Cam", visit=1)
    assert _datasets(butler) == before_rows
    assert files_under(butler.root / "datastore") == before_files


def test_registry_failure_leaves_no_file(butler: Butler) -> None:
    before = files_under(butler.root / "datastore")
    with pytest.raises(DataIdError):
        butler.put({"v": 1}, "metric", instrument="Cam", visit=999)  # no such visit record
    assert files_under(butler.root / "datastore") == before


def fail_commit(butler: Butler, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the butler's registry transactions fail at commit, after their body ran."""
    real = butler.registry.transaction

    @contextlib.contextmanager
    def failing_commit() -> Iterator[None]:
        with real():
            yield
            raise RuntimeError("database went away at commit (injected)")

    monkeypatch.setattr(butler.registry, "transaction", failing_commit)


def test_commit_failure_removes_the_written_file(butler: Butler, monkeypatch: pytest.MonkeyPatch) -> None:
    """REQ-0076: the registry commit fails after the file is written → the file is removed."""
    butler.put({"v": 0}, "metric", instrument="Cam", visit=0)
    before_files = files_under(butler.root / "datastore")
    fail_commit(butler, monkeypatch)
    with pytest.raises(RuntimeError):
        butler.put({"v": 1}, "metric", instrument="Cam", visit=1)
    monkeypatch.undo()
    assert files_under(butler.root / "datastore") == before_files
    assert not butler.exists("metric", instrument="Cam", visit=1)


def test_commit_and_cleanup_failure_keeps_the_original_error(butler: Butler,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """REQ-0076: when removing the written file fails too, the commit error is raised with a note naming it."""

    def failing_remove(ref: Any) -> None:
        raise OSError("disk went read-only (injected)")

    fail_commit(butler, monkeypatch)
    monkeypatch.setattr(butler.datastore, "remove", failing_remove)
    with pytest.raises(RuntimeError, match="at commit") as info:
        butler.put({"v": 1}, "metric", instrument="Cam", visit=1)
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 1
    assert "metric" in notes[0] and "disk went read-only" in notes[0] and "by hand" in notes[0]


def test_append_in_later_process_and_relocation(tmp_path: Path) -> None:
    """REQ-0064 (append to an existing repository) and REQ-0001 (relocate by moving the root)."""
    Butler.create(tmp_path / "a").close()
    with Butler(tmp_path / "a", run="r1") as b:
        setup_repo(b)
        b.put({"v": 1}, "metric", instrument="Cam", visit=1)
    with Butler(tmp_path / "a", run="r2", collections=["r2", "r1"]) as b:
        b.put({"v": 2}, "metric", instrument="Cam", visit=2)
        assert b.get("metric", instrument="Cam", visit=1) == {"v": 1}
    (tmp_path / "a").rename(tmp_path / "moved")
    with Butler(tmp_path / "moved", collections=["r2", "r1"]) as b:
        assert b.get("metric", instrument="Cam", visit=2) == {"v": 2}
        assert b.get_uri("metric", instrument="Cam", visit=2).startswith((tmp_path / "moved").as_uri())


def test_component_override(butler: Butler) -> None:
    """REQ-0051: a WCS stored separately replaces the composite's WCS on read."""
    exp = make_exposure((20, 20))
    butler.put(exp, "calexp", DID)
    newer = make_wcs((20, 20))
    newer.wcs.crval = [151.0, 3.0]
    fix_ref = butler.put(newer, "calexp_wcs_fix", DID)
    merged = butler.get("calexp", DID, component_overrides={"wcs": fix_ref})
    np.testing.assert_allclose(merged.wcs.wcs.crval, [151.0, 3.0])
    np.testing.assert_array_equal(merged.image, exp.image)
    np.testing.assert_allclose(butler.get("calexp.wcs", DID).wcs.crval, [150.0, 2.0])  # stored one unchanged


def test_formats_from_repository_config(tmp_path: Path) -> None:
    """REQ-0025/0060: butler.yaml chooses formats and writer options; the same bytes read as another type."""
    cfg = {"cls": "posix", "root": "store", "formatters": {
        "storage_classes": {"AstropyTable": "parquet"},
        "dataset_types": {
            "calexp": {"formatter": "fits_exposure", "options": {"compression": "GZIP_2", "quantize_level": 0}}
        },
    }}
    Butler.create(tmp_path / "r", datastore=cfg).close()
    with Butler(tmp_path / "r", run=RUN) as b:
        setup_repo(b)
        ref = b.put(Table({"x": [1, 2, 3]}), "src", DID)
        assert b.get_uri(ref).endswith(".parq")
        arrow = b.get("src", DID, storage_class="ArrowTable")
        assert arrow.column("x").to_pylist() == [1, 2, 3]
        exp = make_exposure((64, 64))
        b.put(exp, "calexp", DID)
        np.testing.assert_array_equal(b.get("calexp", DID).image, exp.image)
        from urllib.parse import unquote, urlparse

        from astropy.io import fits

        with fits.open(unquote(urlparse(b.get_uri("calexp", DID)).path)) as hdul:
            assert isinstance(hdul["IMAGE"], fits.CompImageHDU)
        import yaml

        dumped = yaml.safe_load(b.dump_config())  # REQ-0026: active configuration, human-readable
        assert dumped["datastore"]["formatters"]["dataset_types"]["calexp"]["options"]["compression"] == "GZIP_2"
        assert dumped["datastore"]["formatters"]["storage_classes"]["AstropyTable"]["formatter"] == "parquet"
        assert "calexp" not in dumped["datastore"]["templates"] and "default" in dumped["datastore"]["templates"]
        assert dumped["storage_classes"]["Exposure"]["components"]["wcs"] == "Wcs"


@pytest.mark.integration
def test_butler_on_s3_and_postgresql(tmp_path: Path, s3_endpoint: str, pg_dsn: str, unique_name: str) -> None:
    """REQ-0031/0040/0065: a repository whose registry is PostgreSQL and whose bytes are in S3, with a cache."""
    cfg = {"cls": "s3", "bucket": unique_name, "prefix": "repo", "endpoint_url": s3_endpoint, "create_bucket": True,
           "cache": {"directory": "cache", "max_bytes": 10_000_000}}
    Butler.create(tmp_path / "r", datastore=cfg, registry_db=pg_dsn, registry_schema=unique_name).close()
    with Butler(tmp_path / "r", run=RUN) as b:
        setup_repo(b)
        exp = make_exposure((32, 32))
        ref = b.put(exp, "calexp", DID)
        assert b.get_uri(ref).startswith(f"s3://{unique_name}/repo/")
        np.testing.assert_array_equal(b.get("calexp", DID).image, exp.image)
        cutout = b.get("calexp", DID, parameters={"bbox": Box(0, 0, 8, 8)})
        np.testing.assert_array_equal(cutout.image, exp.image[:8, :8])
        assert any((tmp_path / "r" / "cache").rglob("*.fits"))
        with pytest.raises(ConflictingDefinitionError):
            b.put(exp, "calexp", DID)


def test_put_many_is_all_or_nothing(butler: Butler) -> None:
    refs = butler.put_many([({"v": v}, {"instrument": "Cam", "visit": v}) for v in range(3)], "metric")
    assert [butler.get(r) for r in refs] == [{"v": 0}, {"v": 1}, {"v": 2}]
    before_files = files_under(butler.root / "datastore")
    before_rows = _datasets(butler)
    items = [({"v": 3}, {"instrument": "Cam", "visit": 3}), ({"v": object()}, {"instrument": "Cam", "visit": 4})]
    with pytest.raises(FormatterError):
        butler.put_many(items, "metric")
    assert _datasets(butler) == before_rows
    assert files_under(butler.root / "datastore") == before_files


def _two_detector_repo(tmp_path: Path, name: str) -> Butler:
    Butler.create(tmp_path / name).close()
    b = setup_repo(Butler(tmp_path / name, run=RUN))
    for d in range(3):
        b.put({"d": d}, "metric", instrument="Cam", visit=d)
        b.put(make_exposure((8, 8), seed=d), "calexp", instrument="Cam", visit=1, detector=d)
    return b


def test_subset_with_copy(tmp_path: Path) -> None:
    """REQ-0011: a new repository with a copy of a subset, independent of the source."""
    src = _two_detector_repo(tmp_path, "src")
    with src, src.export_subset(tmp_path / "sub", ["calexp"], where="detector IN (0, 1)") as sub:
        sub.collections = [RUN]
        assert sorted(r.data_id["detector"] for r in sub.all_datasets()) == [0, 1]
        with pytest.raises(LookupError):  # the type was not part of the subset
            sub.get("metric", instrument="Cam", visit=0)
        uri = sub.get_uri("calexp", instrument="Cam", visit=1, detector=0)
        assert "/sub/" in uri
        src_files_path = src.root / "datastore"
        import shutil

        shutil.rmtree(src_files_path)  # the copy does not depend on the source
        assert sub.get("calexp.wcs", instrument="Cam", visit=1, detector=1) is not None


def test_subset_as_view_and_garbage_collection(tmp_path: Path) -> None:
    """REQ-0010 (view sharing files), REQ-0005/0006 (remove a repository, keep what others use)."""
    src = _two_detector_repo(tmp_path, "src")
    with src:
        view = src.export_subset(tmp_path / "view", ["calexp"], data_id={"detector": 2}, transfer="symlink")
    with view:
        uri = view.get_uri("calexp", instrument="Cam", visit=1, detector=2, collections=[RUN])
        from urllib.parse import unquote, urlparse

        path = Path(unquote(urlparse(uri).path))
        assert path.is_symlink()  # shares the file: no data transfer
        handed = Butler.remove_repository(tmp_path / "src", known_repositories=[tmp_path / "view"])
        assert handed == 1 and not (tmp_path / "src").exists()
        assert not path.is_symlink()  # the file now lives in the view
        exp = view.get("calexp", instrument="Cam", visit=1, detector=2, collections=[RUN])
        np.testing.assert_array_equal(exp.image, make_exposure((8, 8), seed=2).image)


def test_merge_with_conflict_strategies(tmp_path: Path) -> None:
    """REQ-0007: merging repositories with an explicit conflict strategy."""
    a = _two_detector_repo(tmp_path, "a")
    Butler.create(tmp_path / "b").close()
    b = setup_repo(Butler(tmp_path / "b", run=RUN))
    b.put({"d": "theirs"}, "metric", instrument="Cam", visit=0)  # conflicts with a's visit 0
    b.put({"d": 5}, "metric", instrument="Cam", visit=5)
    with a, b:
        before = sorted(str(r.id) for r in a.all_datasets())
        with pytest.raises(ConflictingDefinitionError):
            a.import_from(b)
        assert sorted(str(r.id) for r in a.all_datasets()) == before  # nothing changed
        added = a.import_from(b, conflict="skip")
        assert [dict(r.data_id) for r in added] == [{"instrument": "Cam", "visit": 5}]
        assert a.get("metric", instrument="Cam", visit=0) == {"d": 0}
        kept = a.import_from(b, [r for r in b.all_datasets() if r.data_id["visit"] == 0], conflict="keep_both")
        assert kept[0].run == f"{RUN}/merged"
        assert a.get("metric", instrument="Cam", visit=0, collections=[f"{RUN}/merged"]) == {"d": "theirs"}


@pytest.mark.integration
def test_upload_subset_to_s3(tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    """REQ-0019: a subset transferred to another storage context (object store)."""
    src = _two_detector_repo(tmp_path, "src")
    s3 = {"cls": "s3", "bucket": unique_name, "endpoint_url": s3_endpoint, "create_bucket": True}
    with src, src.export_subset(tmp_path / "up", ["metric"], datastore=s3) as up:
        assert up.get_uri("metric", instrument="Cam", visit=1, collections=[RUN]).startswith("s3://")
        assert up.get("metric", instrument="Cam", visit=2, collections=[RUN]) == {"d": 2}


def test_s3_repository_relocated_by_copying_objects_and_changing_the_prefix(
        tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    """REQ-0001 on object storage: records hold paths relative to the prefix, so an operator's
    bucket-to-bucket copy plus a one-line config change relocates the repository."""
    import boto3
    import yaml

    s3 = {"cls": "s3", "bucket": unique_name, "prefix": "site-a/repo", "endpoint_url": s3_endpoint,
          "create_bucket": True}
    Butler.create(tmp_path / "r", datastore=s3).close()
    with setup_repo(Butler(tmp_path / "r", run=RUN)) as b:
        for d in range(3):
            b.put({"d": d}, "metric", instrument="Cam", visit=d)
        b.put(make_exposure((8, 8), seed=4), "calexp", DID)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=unique_name, Prefix="site-a/repo/")["Contents"]
            if not o["Key"].endswith("/")]
    client.create_bucket(Bucket=unique_name + "-b")
    for key in keys:  # what `aws s3 sync` would do
        client.copy_object(Bucket=unique_name + "-b", Key="site-b/" + key.removeprefix("site-a/repo/"),
                           CopySource={"Bucket": unique_name, "Key": key})
        client.delete_object(Bucket=unique_name, Key=key)
    config = yaml.safe_load((tmp_path / "r" / "butler.yaml").read_text())
    config["datastore"].update(bucket=unique_name + "-b", prefix="site-b")
    (tmp_path / "r" / "butler.yaml").write_text(yaml.safe_dump(config))
    with Butler(tmp_path / "r", collections=[RUN]) as moved:
        assert moved.get("metric", instrument="Cam", visit=2) == {"d": 2}
        assert moved.get_uri("calexp", DID).startswith(f"s3://{unique_name}-b/site-b/")
        np.testing.assert_array_equal(moved.get("calexp", DID).image, make_exposure((8, 8), seed=4).image)


def test_header_corrections_merge_and_combined_export(butler: Butler, tmp_path: Path) -> None:
    """REQ-0035 (object assembled from file + corrections), REQ-0077 (combined into one file), REQ-0078."""
    from astropy.io import fits

    butler.register_dataset_type(DatasetType("calexp_header_fix", ["instrument", "visit", "detector"], "Header"))
    exp = make_exposure((16, 16))
    ref = butler.put(exp, "calexp", DID)
    fix = fits.Header()
    fix["AIRMASS"] = 1.31
    fix["FILTER"] = "i"
    fix_ref = butler.put(fix, "calexp_header_fix", DID)
    newer = make_wcs((16, 16))
    newer.wcs.crval = [10.0, -5.0]
    wcs_ref = butler.put(newer, "calexp_wcs_fix", DID)
    merged = butler.get(ref, component_updates={"metadata": fix_ref})
    assert merged.metadata["AIRMASS"] == 1.31 and merged.metadata["FILTER"] == "i"
    assert merged.metadata["EXPTIME"] == 30.0  # the rest of the original header stays
    path = butler.export_file(ref, tmp_path / "out", component_overrides={"wcs": wcs_ref},
                              component_updates={"metadata": fix_ref})
    assert path.name == "calexp_detector=2_instrument=Cam_visit=1_u_tester_run.fits"
    from nightshift.butler._storage_class import StorageClassFactory
    from nightshift.butler.formatters import FormatterSpec, default_formatter_registry

    back = default_formatter_registry().create(FormatterSpec("fits_exposure")).read(
        path, StorageClassFactory().get("Exposure"))
    np.testing.assert_allclose(back.wcs.wcs.crval, [10.0, -5.0])
    assert back.metadata["FILTER"] == "i"
    np.testing.assert_array_equal(back.image, exp.image)


def test_metadata_assembled_from_file_and_database(butler: Butler, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """REQ-0035: the exposure from its file, header values from a database row (a query dataset)."""
    import sqlite3

    from nightshift.butler.external import QueryDefinition

    db = tmp_path / "obs.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE visit_info (visit INTEGER PRIMARY KEY, airmass REAL, seeing REAL)")
        conn.executemany("INSERT INTO visit_info VALUES (?, ?, ?)", [(1, 1.42, 0.71), (2, 1.1, 0.9)])
    monkeypatch.setenv("NIGHTSHIFT_TEST_OBS_DB", f"sqlite:///{db}")
    butler.register_dataset_type(DatasetType("visit_header_fix", ["instrument", "visit"], "QueryDefinition"))
    fix = butler.put(QueryDefinition("SELECT airmass AS AIRMASS, seeing AS SEEING FROM visit_info "
                                     "WHERE visit = :visit", "NIGHTSHIFT_TEST_OBS_DB"),
                     "visit_header_fix", instrument="Cam", visit=1)
    ref = butler.put(make_exposure((16, 16)), "calexp", DID)
    merged = butler.get(ref, component_updates={"metadata": fix})
    assert merged.metadata["AIRMASS"] == 1.42 and merged.metadata["SEEING"] == 0.71
    assert merged.metadata["EXPTIME"] == 30.0  # the file's own header values stay
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM visit_info WHERE visit = 1")
    with pytest.raises(ValueError, match="exactly one row"):
        butler.get(ref, component_updates={"metadata": fix})


def test_public_butler_names_are_exported() -> None:
    import nightshift.butler as nb

    mine = {"Box", "Butler", "ButlerConfigError", "DatasetNotFoundError", "DatastoreError", "Exposure", "FileTemplate",
            "FileTemplateError", "FileTemplates", "FormatterError", "StorageClass", "StorageClassError",
            "StorageClassFactory"}
    assert mine <= set(nb.__all__)
    assert all(hasattr(nb, n) for n in nb.__all__)


def test_ingest_external_catalog_and_serve_it(butler: Butler, tmp_path: Path) -> None:
    """REQ-0046/0047: a non-survey FITS catalog is ingested and served like survey datasets."""
    external = tmp_path / "gaia_subset.fits"
    Table({"source_id": np.arange(5, dtype=np.int64), "phot_g_mean_mag": np.linspace(12, 16, 5)}).write(external)
    ref = butler.ingest(external, "src", DID, transfer="copy")
    assert external.exists()
    table = butler.get("src", DID)
    np.testing.assert_array_equal(table["source_id"], np.arange(5))
    assert butler.get("src", DID, parameters={"columns": ["phot_g_mean_mag"]}).colnames == ["phot_g_mean_mag"]
    assert butler.find("src", DID) == ref
    # A file the configured formatter cannot read is refused, leaving nothing behind.
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not fits at all")
    before = files_under(butler.root / "datastore")
    with pytest.raises(FormatterError):
        butler.ingest(junk, "src", {"instrument": "Cam", "visit": 2, "detector": 2})
    assert files_under(butler.root / "datastore") == before
    assert not butler.exists("src", {"instrument": "Cam", "visit": 2, "detector": 2})
    moved = tmp_path / "moved.fits"
    Table({"a": [1]}).write(moved)
    butler.ingest(moved, "src", {"instrument": "Cam", "visit": 3, "detector": 2}, transfer="move")
    assert not moved.exists()
    assert list(butler.get("src", {"instrument": "Cam", "visit": 3, "detector": 2})["a"]) == [1]


def test_stage_in_and_out_of_node_local_scratch(tmp_path: Path) -> None:
    """REQ-0052 (inputs to node-local storage) and REQ-0079 (outputs back to persistent storage)."""
    shared = _two_detector_repo(tmp_path, "shared")
    with shared:
        inputs = shared.all_datasets(["calexp"], where="detector = 1")
        with shared.stage_in(inputs, tmp_path / "node" / "scratch") as local:
            exp = local.get("calexp", instrument="Cam", visit=1, detector=1)  # read from the local disk
            assert "/node/scratch/" in local.get_uri(inputs[0])
            local.run = "u/tester/job42"
            local.put({"n_sources": int(exp.image.size)}, "metric", instrument="Cam", visit=1)
            staged = shared.stage_out(local)
        assert [r.run for r in staged] == ["u/tester/job42"]
        assert shared.get("metric", instrument="Cam", visit=1, collections=["u/tester/job42"]) == {"n_sources": 64}
        assert "/shared/" in shared.get_uri(staged[0])


def test_import_carries_provenance_when_its_datasets_come_along(tmp_path: Path) -> None:
    """Exported outputs keep their producing quantum if its inputs are there too; a partial subset does not lie."""
    src = _two_detector_repo(tmp_path, "src")
    with src:
        inputs = src.all_datasets(["calexp"])
        src.registry.register_run("u/job")
        metric = src.put({"n": 1}, "metric", instrument="Cam", visit=1, run="u/job")
        src.registry.record_quantum("measure", config_hash="c0ffee", code_version="1", data_id={"visit": 1},
                                    predicted_inputs=inputs, actual_inputs=inputs[:1], outputs=[metric], run="u/job")
        full = Butler.create(tmp_path / "full")
        with full:
            full.import_from(src)
            prov = full.registry.get_provenance(metric)
            assert prov is not None and prov.task_label == "measure" and prov.config_hash == "c0ffee"
            assert [r.id for r in prov.actual_inputs] == [inputs[0].id] and len(prov.predicted_inputs) == len(inputs)
        partial = Butler.create(tmp_path / "partial")
        with partial:
            partial.import_from(src, [metric])  # without its inputs: no provenance rather than a broken one
            assert partial.get("metric", instrument="Cam", visit=1, collections=["u/job"]) == {"n": 1}
            assert partial.registry.get_provenance(metric) is None
