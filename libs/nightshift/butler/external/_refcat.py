"""Third-party reference catalogs sharded by sky pixel, read through the butler (DMS-MWBT-REQ-0048).

An outside provider delivers a catalog as one table file per nested HEALPix
cell (``<directory>/<pixel>.parquet`` or ``.fits``; ``ra``/``dec`` in degrees
plus any other columns). :func:`ingest_reference_catalog` registers each file
*in place* (``transfer=None``: nothing is copied) as one dataset with the
sky-pixel dimension ``healpix<order>``; afterwards the shards are ordinary
datasets::

    ingest_reference_catalog(butler, "gaia_dr3", "/provider/gaia_dr3/hpx5", order=5, run="refcats/gaia_dr3")
    shard = butler.get("gaia_dr3", healpix5=1234)                      # the same API as survey datasets
    stars = load_reference_catalog(butler, "gaia_dr3", (45.0, -3.0, 1.5), columns=["source_id", "g_mag"])

:func:`load_reference_catalog` asks the registry for the shards overlapping a
region of :mod:`nightshift.sky` (its HEALPix cover at the shards' order), reads only
the columns needed and keeps the rows inside the region.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._dataset_ref import DatasetRef
from .._dataset_type import DatasetType
from ..formatters import UnsupportedComponentError
from ._exceptions import ReferenceCatalogError

if TYPE_CHECKING:
    from ...sky import Region
    from .._butler import Butler

__all__ = [
    "REFCAT_STORAGE_CLASS",
    "SHARD_FILE_PATTERN",
    "ingest_reference_catalog",
    "load_reference_catalog",
    "skypix_dimension",
]

#: Storage class of reference-catalog shards (astropy Table; FITS or Parquet files).
REFCAT_STORAGE_CLASS = "ReferenceCatalogShard"
#: Default shard file names: the pixel index, then a FITS or Parquet extension.
SHARD_FILE_PATTERN = r"(?P<pixel>\d+)\.(?:parquet|parq|pq|fits|fit|fits\.gz)"
_SKYPIX = re.compile(r"healpix(\d+)")


def skypix_dimension(order: int) -> str:
    """Name of the nested-HEALPix sky-pixel dimension of ``order`` (``healpix5``)."""
    return f"healpix{int(order)}"


def _order_of(dataset_type: DatasetType) -> tuple[str, int]:
    dims = [d for d in dataset_type.dimensions if _SKYPIX.fullmatch(d)]
    if len(dims) != 1 or len(dataset_type.dimensions) != 1:
        raise ReferenceCatalogError(
            f"dataset type {dataset_type.name!r} has dimensions {list(dataset_type.dimensions)}; a sharded "
            "reference catalog has exactly one sky-pixel dimension healpix<order> (see ingest_reference_catalog)"
        )
    match = _SKYPIX.fullmatch(dims[0])
    assert match is not None
    return dims[0], int(match.group(1))


def _find_shards(directory: Path, order: int, pattern: str) -> dict[int, Path]:
    if not directory.is_dir():
        raise ReferenceCatalogError(f"reference catalog directory {directory} does not exist or is not a directory")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ReferenceCatalogError(f"filename_pattern {pattern!r} is not a regular expression: {exc}") from exc
    if "pixel" not in regex.groupindex:
        raise ReferenceCatalogError(f"filename_pattern {pattern!r} needs a named group (?P<pixel>\\d+)")
    n_pixels = 12 * 4**order
    shards: dict[int, Path] = {}
    for path in sorted(directory.iterdir()):
        m = regex.fullmatch(path.name)
        if m is None or not path.is_file():
            continue
        pixel = int(m.group("pixel"))
        if not 0 <= pixel < n_pixels:
            raise ReferenceCatalogError(
                f"{path.name}: pixel {pixel} does not exist at HEALPix order {order} (0 <= pixel < {n_pixels}); "
                "is the catalog sharded at another order?"
            )
        if pixel in shards:
            raise ReferenceCatalogError(f"pixel {pixel} has two shard files: {shards[pixel].name} and {path.name}")
        shards[pixel] = path
    if not shards:
        raise ReferenceCatalogError(
            f"no shard files in {directory} match {pattern!r} (expected names like 1234.parquet or 1234.fits)"
        )
    return shards


def _pixel_records(pixels: Iterable[int], order: int) -> list[dict[str, Any]]:
    from cdshealpix.nested import vertices

    pix = np.fromiter(pixels, dtype=np.uint64)
    lon, lat = vertices(pix, order)
    return [
        {"id": int(p), "region": [(float(a), float(b)) for a, b in zip(lo.deg, la.deg, strict=True)]}
        for p, lo, la in zip(pix, lon, lat, strict=True)
    ]


def ingest_reference_catalog(
    butler: Butler,
    dataset_type: str,
    directory: str | os.PathLike[str],
    *,
    order: int = 5,
    run: str | None = None,
    transfer: str | None = None,
    filename_pattern: str = SHARD_FILE_PATTERN,
) -> list[DatasetRef]:
    """Register an outside provider's sharded catalog: one dataset per HEALPix shard file, all or nothing.

    Parameters
    ----------
    butler : Butler
        The repository.
    dataset_type : str
        Name of the catalog's dataset type (registered with dimension
        ``healpix<order>`` and storage class ``ReferenceCatalogShard`` if new).
    directory : path-like
        The provider's directory of shard files (FITS or Parquet).
    order : int
        HEALPix order of the sharding; the repository's dimension universe
        must have the dimension ``healpix<order>``.
    run : str, optional
        RUN collection (the butler's by default).
    transfer : {None, "direct", "symlink", "copy", "move"}
        ``None``/``"direct"`` (default) leaves the files where they are.
    filename_pattern : str
        Regular expression a shard's file name must match in full, with a
        named group ``pixel``.

    Returns
    -------
    list of DatasetRef
        One per shard, in pixel order.

    Raises
    ------
    ReferenceCatalogError
        No such sky-pixel dimension, no shard files, a file name with an
        impossible pixel, or two files for one pixel.
    FormatterError
        A shard is neither FITS nor Parquet (nothing is registered).
    ConflictingDefinitionError
        The dataset type exists with another definition, or a shard is already ingested in ``run``.
    """
    dim = skypix_dimension(order)
    if dim not in butler.registry.universe:
        available = [d for d in butler.registry.universe.names if _SKYPIX.fullmatch(d)]
        raise ReferenceCatalogError(
            f"this repository's dimension universe (version {butler.registry.universe.version}) has no sky-pixel "
            f"dimension {dim!r} (it has {available or 'none'}); reshard the catalog to one of those orders, or "
            "create the repository with a universe that has it"
        )
    shards = _find_shards(Path(directory).absolute(), order, filename_pattern)
    run = run or butler.run
    if run is None:
        raise ReferenceCatalogError("ingest_reference_catalog needs a run: Butler(repo, run=...) or run=...")
    dt = DatasetType(dataset_type, [dim], REFCAT_STORAGE_CLASS)
    butler.register_dataset_type(dt)
    butler.registry.register_run(run)
    refs: list[DatasetRef] = []
    try:
        with butler.registry.transaction():
            butler.registry.insert_dimension_records(dim, _pixel_records(shards, order), skip_existing=True)
            for pixel, path in shards.items():
                refs.append(butler.ingest(path, dt, {dim: pixel}, run=run, transfer=transfer))
    except BaseException:
        for ref in refs:  # the registry rolled back: drop what the datastore already holds
            with contextlib.suppress(Exception):
                butler.datastore.remove(ref)
        raise
    return refs


def load_reference_catalog(
    butler: Butler,
    dataset_type: str,
    region: Region | Sequence[Any],
    *,
    columns: Sequence[str] | None = None,
    collections: str | Sequence[str] | None = None,
    ra_column: str = "ra",
    dec_column: str = "dec",
) -> Any:
    """The rows of a sharded reference catalog inside a sky region, as one astropy Table.

    Parameters
    ----------
    butler : Butler
        The repository.
    dataset_type : str
        The catalog's dataset type (one ``healpix<order>`` dimension).
    region : nightshift.sky.Region, (ra, dec, radius) or [(ra, dec), ...]
        Degrees: a :class:`~nightshift.sky.Circle`, :class:`~nightshift.sky.ConvexPolygon`,
        :class:`~nightshift.sky.Box` or :class:`~nightshift.sky.UnionRegion`, or the
        values of a circle or a convex polygon.
    columns : sequence of str, optional
        Columns to return (only these plus ra/dec are read); all by default.
    collections : str or sequence of str, optional
        Where to look (the butler's default collections otherwise).
    ra_column, dec_column : str
        The shards' coordinate columns (degrees).

    Returns
    -------
    astropy.table.Table
        Rows inside the region, shard by shard in pixel order; ``columns``
        in the order given. No overlapping shard: an empty table with the
        requested columns.

    Raises
    ------
    ReferenceCatalogError
        Bad region, a dataset type that is not sharded by sky pixel, a missing
        coordinate column, or shards with different columns.
    """
    from astropy.table import Table, vstack

    from ...sky import RegionError, as_region, pixel_ranges

    try:
        shape = as_region(region)
    except RegionError as exc:
        raise ReferenceCatalogError(f"bad reference-catalog region: {exc}") from exc
    dt = butler.registry.get_dataset_type(dataset_type)
    dim, order = _order_of(dt)
    search = [collections] if isinstance(collections, str) else list(collections or butler.collections)
    if not search:
        raise ReferenceCatalogError("no collections to search: pass collections= or set the butler's collections")
    pixels = [p for lo, hi in pixel_ranges(shape, order).tolist() for p in range(lo, hi)]
    refs = butler.registry.query_datasets(dt, search, where=f"{dim} IN (pixels)", bind={"pixels": pixels})
    refs.sort(key=lambda r: int(r.data_id[dim]))
    wanted = list(columns) if columns is not None else None
    read = None if wanted is None else list(dict.fromkeys([*wanted, ra_column, dec_column]))
    pieces = []
    for ref in refs:
        try:
            shard = butler.get(ref, parameters={"columns": read} if read is not None else None)
        except UnsupportedComponentError as exc:
            raise ReferenceCatalogError(
                f"{dataset_type} shard {dim}={ref.data_id[dim]}: {exc}; name the columns that exist (and the "
                "coordinate columns with ra_column=/dec_column=)"
            ) from exc
        for col in (ra_column, dec_column):
            if col not in shard.colnames:
                raise ReferenceCatalogError(
                    f"{dataset_type} shard {dim}={ref.data_id[dim]} has no coordinate column {col!r} (columns: "
                    f"{shard.colnames}); pass ra_column=/dec_column="
                )
        inside = shape.contains(np.asarray(shard[ra_column], dtype=float), np.asarray(shard[dec_column], dtype=float))
        shard = shard[inside]
        pieces.append(shard if wanted is None else shard[wanted])
    if not pieces:
        return Table(names=wanted) if wanted else Table()
    try:
        return vstack(pieces, join_type="exact", metadata_conflicts="silent")
    except Exception as exc:  # noqa: BLE001 - astropy raises TableMergeError / ValueError
        raise ReferenceCatalogError(f"the shards of {dataset_type} do not have the same columns: {exc}") from exc
