"""DMS-MWBT-REQ-0048: a third-party catalog sharded by HEALPix cell, ingested in place, read with Butler.get.

A synthetic catalog (numpy random, a few thousand rows over ~30 order-5 cells)
is written by an "outside provider" as one file per cell -- Parquet and FITS
mixed -- then ingested without copying, read shard by shard with
``butler.get("gaia_dr3", healpix5=...)`` and by region with
``load_reference_catalog``, which must return exactly the rows a brute-force
selection over the whole catalog returns. Runs on a SQLite and on the real
PostgreSQL registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import astropy.units as u
import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import Latitude, Longitude, SkyCoord
from astropy.table import Table
from cdshealpix.nested import lonlat_to_healpix
from registry_support import drop_schema

from nightshift.butler import Butler
from nightshift.butler.datastores import DatasetCorruptError, DatastoreError
from nightshift.butler.external import (
    ReferenceCatalogError,
    ingest_reference_catalog,
    load_reference_catalog,
)
from nightshift.butler.formatters import FormatterError
from nightshift.sky import Circle, ConvexPolygon

RUN = "refcats/gaia_dr3"
N_ROWS = 4000


def make_catalog(seed: int = 20481) -> Table:
    """Uniform points on the sphere in ra 40..50, dec -5..5 (degrees)."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(40.0, 50.0, N_ROWS)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-5.0)), np.sin(np.radians(5.0)), N_ROWS)))
    return Table({
        "source_id": np.arange(N_ROWS, dtype=np.int64) + 10**12,
        "ra": ra,
        "dec": dec,
        "g_mag": rng.uniform(8.0, 21.0, N_ROWS),
        "parallax": rng.normal(1.0, 0.5, N_ROWS),
    })


def write_shards(catalog: Table, directory: Path, order: int = 5) -> dict[int, Path]:
    """The provider's layout: <pixel>.parquet for even pixels, <pixel>.fits for odd ones."""
    directory.mkdir(parents=True)
    pix = np.asarray(lonlat_to_healpix(Longitude(catalog["ra"], u.deg), Latitude(catalog["dec"], u.deg), order))
    files = {}
    for p in np.unique(pix):
        shard = catalog[pix == p]
        path = directory / (f"{p}.parquet" if p % 2 == 0 else f"{p}.fits")
        shard.write(path, format="parquet" if p % 2 == 0 else "fits")
        files[int(p)] = path
    return files


@pytest.fixture(params=["sqlite", "postgresql"])
def butler(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[Butler]:
    if request.param == "postgresql":
        dsn = request.getfixturevalue("pg_dsn")
        Butler.create(tmp_path / "repo", registry_db=dsn, registry_schema=unique_name).close()
    else:
        Butler.create(tmp_path / "repo").close()
    with Butler(tmp_path / "repo", run=RUN) as b:
        yield b
    if request.param == "postgresql":
        drop_schema(request.getfixturevalue("pg_dsn"), unique_name)


@pytest.fixture
def provider(tmp_path: Path) -> tuple[Table, dict[int, Path]]:
    catalog = make_catalog()
    return catalog, write_shards(catalog, tmp_path / "provider" / "gaia_dr3" / "hpx5")


def read_shard(path: Path) -> Table:
    """The provider's file read directly (pyarrow for Parquet: astropy's reader would need pandas)."""
    if path.suffix == ".parquet":
        arrow = pq.read_table(path)
        return Table({n: arrow.column(n).to_numpy() for n in arrow.column_names})
    return Table.read(path)


def regular_files(root: Path) -> list[Path]:
    out = []
    for d, _, fs in os.walk(root):
        for f in fs:
            p = Path(d) / f
            if not p.is_symlink() and "_records" not in p.parts:
                out.append(p)
    return out


def test_ingest_in_place_and_get_each_shard(butler: Butler, provider: tuple[Table, dict[int, Path]]) -> None:
    catalog, files = provider
    assert len(files) >= 10  # "several shards"
    stamps = {p: (f.stat().st_size, f.stat().st_mtime_ns) for p, f in files.items()}
    refs = ingest_reference_catalog(butler, "gaia_dr3", files[min(files)].parent, order=5)
    assert sorted(int(r.data_id["healpix5"]) for r in refs) == sorted(files)
    # in place: the datastore holds links and records, no copy of any byte of the catalog
    assert regular_files(butler.root / "datastore") == []
    for ref in refs:
        uri = butler.get_uri(ref)
        assert uri is not None
        assert Path(url2pathname(urlparse(uri).path)).resolve() == files[int(ref.data_id["healpix5"])].resolve()
    assert {p: (f.stat().st_size, f.stat().st_mtime_ns) for p, f in files.items()} == stamps
    # the same API as first-class datasets: butler.get(<type>, <data ID>) for FITS and Parquet shards alike
    sample = [next(p for p in sorted(files) if files[p].suffix == ext) for ext in (".parquet", ".fits")]
    for pixel in sample:
        shard = butler.get("gaia_dr3", healpix5=pixel)
        expected = read_shard(files[pixel])
        assert isinstance(shard, Table) and shard.colnames == expected.colnames
        np.testing.assert_array_equal(shard["source_id"], expected["source_id"])
        np.testing.assert_allclose(shard["ra"], expected["ra"])
        cols = butler.get("gaia_dr3", healpix5=pixel, parameters={"columns": ["g_mag"]})
        assert cols.colnames == ["g_mag"] and len(cols) == len(expected)
    # the shards are also ordinary registry datasets with a sky region
    total = sum(len(butler.get(r)) for r in refs)
    assert total == N_ROWS
    point_pixel = int(lonlat_to_healpix(Longitude([45.0], u.deg), Latitude([0.5], u.deg), 5)[0])
    found = butler.registry.query_datasets("gaia_dr3", RUN, where="healpix5.region OVERLAPS POINT(45.0, 0.5)")
    assert point_pixel in {int(r.data_id["healpix5"]) for r in found}


def test_cone_and_polygon_match_brute_force(butler: Butler, provider: tuple[Table, dict[int, Path]]) -> None:
    catalog, files = provider
    ingest_reference_catalog(butler, "gaia_dr3", files[min(files)].parent, order=5, run=RUN)
    all_coords = SkyCoord(catalog["ra"], catalog["dec"], unit="deg")
    for ra, dec, radius in [(45.0, 0.5, 2.0), (41.0, -4.0, 1.2), (49.3, 3.7, 0.4)]:
        got = load_reference_catalog(butler, "gaia_dr3", (ra, dec, radius), collections=RUN)
        brute = catalog[all_coords.separation(SkyCoord(ra, dec, unit="deg")).deg <= radius]
        assert len(brute) > 0
        assert sorted(got["source_id"]) == sorted(brute["source_id"])
        assert got.colnames == catalog.colnames
    # only the requested columns come back, in the order asked
    subset = load_reference_catalog(butler, "gaia_dr3", Circle(45.0, 0.5, 2.0), columns=["g_mag", "source_id"],
                                    collections=[RUN])
    assert subset.colnames == ["g_mag", "source_id"]
    brute = catalog[all_coords.separation(SkyCoord(45.0, 0.5, unit="deg")).deg <= 2.0]
    assert sorted(subset["source_id"]) == sorted(brute["source_id"])
    by_id = {int(s): g for s, g in zip(catalog["source_id"], catalog["g_mag"], strict=True)}
    assert all(by_id[int(s)] == g for s, g in zip(subset["source_id"], subset["g_mag"], strict=True))
    # a convex polygon with great-circle edges: the equator and the meridians 42 and 46 meeting at the pole
    tri = [(42.0, 0.0), (46.0, 0.0), (44.0, 90.0)]
    got = load_reference_catalog(butler, "gaia_dr3", tri, columns=["source_id"], collections=RUN)
    inside = (catalog["ra"] >= 42.0) & (catalog["ra"] <= 46.0) & (catalog["dec"] >= 0.0)
    assert inside.sum() > 100
    assert sorted(got["source_id"]) == sorted(catalog["source_id"][inside])
    # a quadrilateral given clockwise works the same as counter-clockwise
    quad = ConvexPolygon(((43.0, -2.0), (43.0, 2.0), (47.0, 2.0), (47.0, -2.0)))
    quad_rev = ConvexPolygon(tuple(reversed(quad.vertices)))
    a = load_reference_catalog(butler, "gaia_dr3", quad, columns=["source_id"], collections=RUN)
    b = load_reference_catalog(butler, "gaia_dr3", quad_rev, columns=["source_id"], collections=RUN)
    assert len(a) > 100 and sorted(a["source_id"]) == sorted(b["source_id"])
    # a region with no shards: an empty table with the requested columns
    empty = load_reference_catalog(butler, "gaia_dr3", (200.0, 60.0, 1.0), columns=["source_id"], collections=RUN)
    assert len(empty) == 0 and empty.colnames == ["source_id"]


def test_removing_a_shard_keeps_the_providers_file(butler: Butler,
                                                   provider: tuple[Table, dict[int, Path]]) -> None:
    _, files = provider
    refs = ingest_reference_catalog(butler, "gaia_dr3", files[min(files)].parent, order=5)
    victim = refs[0]
    source = files[int(victim.data_id["healpix5"])]
    assert butler.remove_datasets([victim]) == 1
    assert source.is_file() and len(read_shard(source)) > 0
    assert not butler.exists(victim)


def test_provider_changing_a_shard_is_detected(butler: Butler, provider: tuple[Table, dict[int, Path]]) -> None:
    catalog, files = provider
    ingest_reference_catalog(butler, "gaia_dr3", files[min(files)].parent, order=5)
    pixel = next(p for p, f in files.items() if f.suffix == ".parquet")
    Table({"source_id": [1], "ra": [45.0], "dec": [0.0], "g_mag": [1.0], "parallax": [0.0]}).write(
        files[pixel], format="parquet", overwrite=True)
    with pytest.raises(DatasetCorruptError):
        butler.get("gaia_dr3", healpix5=pixel)


def test_ingest_errors(butler: Butler, tmp_path: Path, provider: tuple[Table, dict[int, Path]]) -> None:
    _, files = provider
    directory = files[min(files)].parent
    with pytest.raises(ReferenceCatalogError, match="healpix6"):
        ingest_reference_catalog(butler, "gaia_dr3", directory, order=6)
    with pytest.raises(ReferenceCatalogError, match="no shard files"):
        ingest_reference_catalog(butler, "gaia_dr3", tmp_path, order=5)
    bad = tmp_path / "bad"
    bad.mkdir()
    Table({"ra": [1.0], "dec": [1.0]}).write(bad / "99999.parquet")
    with pytest.raises(ReferenceCatalogError, match="pixel 99999 does not exist at HEALPix order 5"):
        ingest_reference_catalog(butler, "other_cat", bad, order=5)
    # a file that is neither FITS nor Parquet: nothing of the catalog is registered
    junk = tmp_path / "junk"
    junk.mkdir()
    Table({"ra": [1.0], "dec": [1.0]}).write(junk / "10.parquet")
    (junk / "11.fits").write_bytes(b"this is not a table")
    with pytest.raises(FormatterError, match="neither a FITS file nor a Parquet file"):
        ingest_reference_catalog(butler, "junk_cat", junk, order=5, run="refcats/junk")
    assert butler.registry.query_datasets("junk_cat", "refcats/junk") == []
    assert regular_files(butler.root / "datastore") == []
    # reading with coordinate columns the catalog does not have names them
    ingest_reference_catalog(butler, "gaia_dr3", directory, order=5)
    with pytest.raises(ReferenceCatalogError, match="RA_ICRS"):
        load_reference_catalog(butler, "gaia_dr3", (45.0, 0.5, 1.0), collections=RUN, ra_column="RA_ICRS")
    with pytest.raises(ReferenceCatalogError, match="RA_ICRS"):
        load_reference_catalog(butler, "gaia_dr3", (45.0, 0.5, 1.0), columns=["g_mag"], collections=RUN,
                               ra_column="RA_ICRS")


def test_in_place_ingest_refused_by_remote_datastore(tmp_path: Path, s3_endpoint: str, unique_name: str) -> None:
    cfg = {"cls": "s3", "bucket": unique_name, "endpoint_url": s3_endpoint, "create_bucket": True}
    Butler.create(tmp_path / "r", datastore=cfg).close()
    catalog = make_catalog()
    files = write_shards(catalog[:50], tmp_path / "prov")
    with Butler(tmp_path / "r", run=RUN) as b:
        with pytest.raises(DatastoreError, match="cannot ingest in place"):
            ingest_reference_catalog(b, "gaia_dr3", next(iter(files.values())).parent, order=5)
        refs = ingest_reference_catalog(b, "gaia_dr3", next(iter(files.values())).parent, order=5, transfer="copy")
        assert sum(len(b.get(r)) for r in refs) == 50


@pytest.mark.parametrize("region, message", [
    ((45.0, 95.0, 1.0), "not a valid position"),
    ((45.0, 0.0, 0.0), "0 < radius < 180"),
    ([(0.0, 0.0), (1.0, 0.0)], "a region is a Circle"),
    ([(0.0, 0.0), (2.0, 0.0), (1.0, 0.2), (2.0, 2.0), (0.0, 2.0)], "not convex"),
    ("north", "a region is a Circle"),
])
def test_regions_are_validated(tmp_path: Path, region: object, message: str) -> None:
    Butler.create(tmp_path / "repo").close()
    with Butler(tmp_path / "repo", run=RUN) as b, pytest.raises(ReferenceCatalogError, match=message):
        load_reference_catalog(b, "gaia_dr3", region, collections=RUN)  # type: ignore[arg-type]  # deliberately not a region


def test_load_needs_a_sky_pixel_catalog(butler: Butler) -> None:
    from nightshift.butler import DatasetType

    butler.registry.insert_dimension_records("instrument", [{"name": "Cam"}])
    butler.register_dataset_type(DatasetType("not_sharded", ["instrument"], "AstropyTable"))
    with pytest.raises(ReferenceCatalogError, match="exactly one sky-pixel dimension"):
        load_reference_catalog(butler, "not_sharded", (45.0, 0.0, 1.0), collections=RUN)
