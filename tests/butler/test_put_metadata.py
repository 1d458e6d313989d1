"""DMS-MWBT-REQ-0091: metadata declared by the dataset type is recorded at put time and read without the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from astropy.table import Table
from test_butler import DID, RUN, files_under, setup_repo
from test_formatters import make_exposure

from nightshift.butler import DatasetType
from nightshift.butler._butler import Butler
from nightshift.butler.datastores import DatasetNotFoundError
from nightshift.butler.registry import DatasetMetadataError

CALEXP_MD = DatasetType("calexp_md", ["instrument", "visit", "detector"], "Exposure",
                        metadata={"exptime": "float", "filter": "str", "psf_fwhm": "float"})
METRIC_MD = DatasetType("metric_md", ["instrument", "visit"], "StructuredDataDict",
                        metadata={"n_sources": "int", "ok": "bool"})
SRC_MD = DatasetType("src_md", ["instrument", "visit", "detector"], "AstropyTable", metadata={"magzero": "float"})
WRONG = DatasetType("calexp_wrong", ["instrument", "visit", "detector"], "Exposure", metadata={"filter": "int"})


@pytest.fixture
def butler(tmp_path: Path) -> Butler:
    Butler.create(tmp_path / "repo").close()
    b = setup_repo(Butler(tmp_path / "repo", run=RUN))
    for dt in (CALEXP_MD, METRIC_MD, SRC_MD, WRONG):
        b.register_dataset_type(dt)
    return b


def test_put_records_declared_metadata_readable_without_the_file(butler: Butler) -> None:
    with butler:
        ref = butler.put(make_exposure((8, 8)), "calexp_md", DID, metadata={"psf_fwhm": 0.71})
        # exptime and filter come from the exposure's FITS header, psf_fwhm from the caller
        assert butler.get_metadata("calexp_md", DID) == {"exptime": 30.0, "filter": "r", "psf_fwhm": 0.71}
        butler.unstore(ref)  # the bytes are gone: only the registry can answer now
        with pytest.raises(DatasetNotFoundError):
            butler.get(ref)
        assert butler.get_metadata(ref) == {"exptime": 30.0, "filter": "r", "psf_fwhm": 0.71}
    with Butler(butler.root, collections=[RUN]) as fresh:  # recorded, not cached in the writer
        assert fresh.get_metadata("calexp_md", DID)["psf_fwhm"] == 0.71


def test_metadata_from_mappings_and_table_meta(butler: Butler) -> None:
    with butler:
        butler.put({"n_sources": 1200, "ok": True, "other": [1, 2]}, "metric_md", instrument="Cam", visit=1)
        butler.put_many([({"n_sources": v}, {"instrument": "Cam", "visit": v}) for v in (2, 3)], "metric_md")
        table = Table({"flux": [1.0, 2.0]}, meta={"magzero": 27.1})
        butler.put(table, "src_md", DID)
        assert butler.get_metadata("metric_md", instrument="Cam", visit=1) == {"n_sources": 1200, "ok": True}
        assert [butler.get_metadata("metric_md", instrument="Cam", visit=v) for v in (2, 3)] == [
            {"n_sources": 2}, {"n_sources": 3}]
        assert butler.get_metadata("src_md", DID) == {"magzero": 27.1}
        butler.put({"v": 0}, "metric", instrument="Cam", visit=0)  # a type declaring nothing records nothing
        assert butler.get_metadata("metric", instrument="Cam", visit=0) == {}


def test_bad_metadata_fails_the_put_and_stores_nothing(butler: Butler) -> None:
    with butler:
        before = files_under(butler.root / "datastore")
        with pytest.raises(DatasetMetadataError, match="'filter' of 'calexp_wrong' must be int"):
            butler.put(make_exposure((8, 8)), "calexp_wrong", DID)  # the header's FILTER is "r"
        with pytest.raises(DatasetMetadataError, match="not declared"):
            butler.put(make_exposure((8, 8)), "calexp_md", DID, metadata={"seeing": 0.8})
        assert files_under(butler.root / "datastore") == before
        assert not butler.exists("calexp_wrong", DID) and not butler.exists("calexp_md", DID)
