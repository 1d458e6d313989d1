"""DMS-MWBT-REQ-0056: named selections (aliases) on catalogs, read without duplicating data.

Selections are defined in ``butler.yaml`` or registered through the API, and
read with ``butler.get("src", data_id, parameters={"selection": name})``. The
rows must equal a brute-force numpy selection and no file may be written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from astropy.table import Table
from registry_support import populate

from nightshift.butler import Butler, DatasetType
from nightshift.butler.external import (
    Selection,
    SelectionColumnError,
    SelectionError,
    SelectionExpressionError,
    SelectionNotFoundError,
)

RUN = "u/tester/sel"
SRC = DatasetType("src", ["instrument", "visit", "detector"], "AstropyTable")
SRC_ARROW = DatasetType("src_arrow", ["instrument", "visit", "detector"], "ArrowTable")
OTHER = DatasetType("other_cat", ["instrument", "visit", "detector"], "AstropyTable")
DID = {"instrument": "Cam", "visit": 1, "detector": 2}
SELECTIONS = {
    "bright_stars": {
        "dataset_type": "src",
        "where": "psf_flux / psf_flux_err > 50 AND NOT flag_saturated AND extendedness < 0.5",
        "columns": ["id", "ra", "dec", "psf_flux"],
        "doc": "PSF stars for astrometry",
    },
    "gr_band_range": {"dataset_type": "src", "where": "band IN ('g', 'r') AND id IN (100..900:3)"},
}


def make_catalog(n: int = 2000, seed: int = 7) -> Table:
    rng = np.random.default_rng(seed)
    flux = rng.lognormal(6.0, 1.5, n)
    return Table({
        "id": np.arange(n, dtype=np.int64),
        "ra": rng.uniform(10, 11, n),
        "dec": rng.uniform(-1, 1, n),
        "psf_flux": flux,
        "psf_flux_err": rng.uniform(5.0, 30.0, n),
        "extendedness": rng.uniform(0.0, 1.0, n),
        "flag_saturated": rng.uniform(size=n) < 0.1,
        "band": rng.choice(np.array(["g", "r", "i"]), n),
    })


def files_under(root: Path) -> dict[str, int]:
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = os.stat(p).st_mtime_ns
    return out


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    Butler.create(root).close()
    config = yaml.safe_load((root / "butler.yaml").read_text())
    config["selections"] = SELECTIONS
    (root / "butler.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


@pytest.fixture
def butler(repo: Path) -> Iterator[tuple[Butler, Table]]:
    with Butler(repo, run=RUN) as b:
        populate(b.registry)
        for dt in (SRC, SRC_ARROW, OTHER):
            b.register_dataset_type(dt)
        catalog = make_catalog()
        b.put(catalog, "src", DID)
        b.put(pa.table({n: np.asarray(catalog[n]) for n in catalog.colnames}), "src_arrow", DID)
        b.put(catalog, "other_cat", DID)
        yield b, catalog


def test_selection_from_butler_yaml_matches_brute_force_and_writes_nothing(butler: tuple[Butler, Table]) -> None:
    b, catalog = butler
    before = files_under(b.root)
    got = b.get("src", DID, parameters={"selection": "bright_stars"})
    keep = (catalog["psf_flux"] / catalog["psf_flux_err"] > 50) & ~catalog["flag_saturated"] & (
        catalog["extendedness"] < 0.5)
    assert 0 < keep.sum() < len(catalog)
    assert got.colnames == ["id", "ra", "dec", "psf_flux"]
    np.testing.assert_array_equal(got["id"], catalog["id"][keep])
    np.testing.assert_array_equal(got["psf_flux"], catalog["psf_flux"][keep])
    # IN with strings and a strided range; no column list: every column
    got2 = b.get("src", DID, parameters={"selection": "gr_band_range"})
    ids = catalog["id"]
    keep2 = np.isin(catalog["band"], ["g", "r"]) & (ids >= 100) & (ids <= 900) & ((ids - 100) % 3 == 0)
    assert got2.colnames == catalog.colnames
    np.testing.assert_array_equal(got2["id"], ids[keep2])
    # a narrower column list of the selection's own columns
    only_ids = b.get("src", DID, parameters={"selection": "bright_stars", "columns": ["id"]})
    assert only_ids.colnames == ["id"]
    np.testing.assert_array_equal(only_ids["id"], catalog["id"][keep])
    # the stored catalog is untouched and served whole as before; no file was written or rewritten
    assert len(b.get("src", DID)) == len(catalog)
    assert files_under(b.root) == before


def test_registered_selection_on_arrow_tables(butler: tuple[Butler, Table]) -> None:
    b, catalog = butler
    before = files_under(b.root)
    sel = b.selections.register("faint_red", "src_arrow", "band = 'r' AND -2.5 * psf_flux > -1000 OR id < 3",
                                columns=["id", "band"])
    assert b.selections["faint_red"] is sel and "faint_red" in b.selections
    got = b.get("src_arrow", DID, parameters={"selection": "faint_red"})
    assert isinstance(got, pa.Table) and got.column_names == ["id", "band"]
    keep = ((catalog["band"] == "r") & (-2.5 * catalog["psf_flux"] > -1000)) | (catalog["id"] < 3)
    np.testing.assert_array_equal(got.column("id").to_numpy(), catalog["id"][keep])
    # read as another storage class, the same subset
    as_astropy = b.get("src_arrow", DID, parameters={"selection": "faint_red"}, storage_class="AstropyTable")
    np.testing.assert_array_equal(as_astropy["id"], catalog["id"][keep])
    # registering an identical definition again is fine; a different one under the same name is not
    b.selections.register("faint_red", "src_arrow", "band = 'r' AND -2.5 * psf_flux > -1000 OR id < 3",
                          columns=["id", "band"])
    with pytest.raises(SelectionError, match="already defined"):
        b.selections.register("faint_red", "src_arrow", "band = 'g'")
    with pytest.raises(SelectionError, match="already defined"):
        b.selections.register("bright_stars", "src", "id > 0")
    assert files_under(b.root) == before


def test_persisted_selection_is_seen_by_another_butler(butler: tuple[Butler, Table], repo: Path) -> None:
    b, catalog = butler
    datastore_before = files_under(b.root / "datastore")
    b.selections.register("first_ten", "src", "id < 10", doc="smoke tests", persist=True)
    assert files_under(b.root / "datastore") == datastore_before  # only butler.yaml changed
    with Butler(repo, collections=[RUN]) as other:
        assert other.selections["first_ten"] == Selection("first_ten", "src", "id < 10", doc="smoke tests")
        assert [s.name for s in other.selections.for_dataset_type("src")] == [
            "bright_stars", "first_ten", "gr_band_range"]
        got = other.get("src", DID, parameters={"selection": "first_ten"})
        np.testing.assert_array_equal(got["id"], np.arange(10))
        assert sorted(other.selections) == ["bright_stars", "first_ten", "gr_band_range"]


def test_unknown_columns_are_named(butler: tuple[Butler, Table]) -> None:
    b, _ = butler
    b.selections.register("typo", "src", "psf_flx > 10")
    with pytest.raises(SelectionColumnError, match=r"selection 'typo' filters on column 'psf_flx'"):
        b.get("src", DID, parameters={"selection": "typo"})
    b.selections.register("typo_cols", "src", "id > 10", columns=["id", "magnitude"])
    with pytest.raises(SelectionColumnError, match=r"selection 'typo_cols' uses column\(s\) \['magnitude'\]"):
        b.get("src", DID, parameters={"selection": "typo_cols"})
    b.selections.register("typo_filter_listed", "src", "mag > 10", columns=["id"])
    with pytest.raises(SelectionColumnError, match=r"'typo_filter_listed' uses column\(s\) \['mag'\]"):
        b.get("src", DID, parameters={"selection": "typo_filter_listed"})
    with pytest.raises(SelectionColumnError, match="not part of selection 'bright_stars'"):
        b.get("src", DID, parameters={"selection": "bright_stars", "columns": ["band"]})


def test_selection_misuse(butler: tuple[Butler, Table]) -> None:
    b, _ = butler
    with pytest.raises(SelectionNotFoundError, match="no selection called 'nope'"):
        b.get("src", DID, parameters={"selection": "nope"})
    with pytest.raises(SelectionError, match="defined on dataset type 'src', not 'other_cat'"):
        b.get("other_cat", DID, parameters={"selection": "bright_stars"})
    b.selections.register("bad_types", "src", "band > 3")
    with pytest.raises(SelectionExpressionError, match="cannot compare a string with a number"):
        b.get("src", DID, parameters={"selection": "bad_types"})
    b.selections.register("not_a_condition", "src", "psf_flux * 2")
    with pytest.raises(SelectionExpressionError, match="must be a condition"):
        b.get("src", DID, parameters={"selection": "not_a_condition"})


@pytest.mark.parametrize("where, message", [
    ("__import__('os').system('touch /tmp/x')", "expected AND, OR or the end"),
    ("psf_flux > 1; DROP TABLE src", "unexpected character ';'"),
    ("psf_flux >", "expected a value"),
    ("src.psf_flux > 1", "plain names"),
    ("POINT(1, 2) OVERLAPS psf_flux", "not supported on catalog rows"),
    ("psf_flux ** 2 > 1", "expected a value"),
])
def test_filters_are_parsed_never_evaluated_as_python(where: str, message: str) -> None:
    with pytest.raises(SelectionExpressionError, match=message):
        Selection("x", "src", where)


def test_bad_selection_in_butler_yaml_is_reported_with_its_name(repo: Path) -> None:
    config = yaml.safe_load((repo / "butler.yaml").read_text())
    config["selections"]["broken"] = {"dataset_type": "src", "where": "id >> 3"}
    (repo / "butler.yaml").write_text(yaml.safe_dump(config))
    with Butler(repo) as b, pytest.raises(SelectionExpressionError, match="selection 'broken'"):
        b.selections["bright_stars"]
    config["selections"]["broken"] = {"dataset": "src", "where": "id > 3"}
    (repo / "butler.yaml").write_text(yaml.safe_dump(config))
    with Butler(repo) as b, pytest.raises(SelectionError, match="selections.broken needs dataset_type and where"):
        b.selections["bright_stars"]
