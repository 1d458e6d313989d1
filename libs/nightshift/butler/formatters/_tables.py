"""Table formatters: FITS binary tables (astropy) and Parquet (pyarrow) (DMS-MWBT-REQ-0062).

Both read back as the storage class asked for: an astropy ``Table`` or a
``pyarrow.Table``, whichever way the table was written. ``columns`` is read
without the other columns (Parquet is columnar; FITS via a memory map).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .._storage_class import StorageClass
from ._base import Formatter
from ._exceptions import FormatterError, UnsupportedComponentError

if TYPE_CHECKING:
    from .._file_provenance import FileProvenance

__all__ = ["FitsTableFormatter", "ParquetFormatter"]


def _to_astropy(obj: Any) -> Any:
    from astropy.table import Table

    if isinstance(obj, Table):
        return obj
    if type(obj).__module__.startswith("pyarrow"):
        return Table({name: obj.column(name).to_numpy(zero_copy_only=False) for name in obj.column_names})
    raise FormatterError(f"cannot write a {type(obj).__name__} as a table")


def _native(column: Any) -> Any:
    import numpy as np

    data = np.asarray(column)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return data


def _convert(table: Any, storage_class: StorageClass) -> Any:
    """Return ``table`` (astropy) as the storage class's type."""
    if storage_class.pytype_name.startswith("pyarrow"):
        import pyarrow as pa

        return pa.table({name: _native(table[name]) for name in table.colnames})
    return table


def _columns(path: Path, component: str | None, parameters: dict[str, Any], names: list[str]) -> list[str] | None:
    """The columns to read (a column component, or ``columns``), all of them present in ``names``."""
    columns: list[str] | None = [component] if component is not None else parameters.get("columns")
    if columns is not None:
        missing = [c for c in columns if c not in names]
        if missing:
            raise UnsupportedComponentError(f"table in {path} has no column(s) {missing}")
    return columns


class _TableFormatter(Formatter):
    """Shared by the table formatters: a column is a component; ``columns`` reads a subset."""

    read_parameters: ClassVar[frozenset[str]] = frozenset({"columns"})
    components_in_file: ClassVar[bool] = True


class FitsTableFormatter(_TableFormatter):
    """Astropy/pyarrow table ↔ FITS binary table."""

    name: ClassVar[str] = "fits_table"
    extension: ClassVar[str] = ".fits"
    reads: ClassVar[str] = "FITS table"

    def write(self, obj: Any, path: Path) -> None:
        table = _to_astropy(obj)
        try:
            table.write(path, format="fits")
        except (OSError, ValueError, TypeError) as exc:
            raise FormatterError(f"cannot write table as FITS to {path}: {exc}") from exc

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        from astropy.table import Table

        subset = component is not None or "columns" in parameters
        # hdu=1: the table, not a PROVENANCE table appended after it
        table = Table.read(path, format="fits", hdu=1, memmap=subset)
        columns = _columns(path, component, parameters, table.colnames)
        if columns is not None:
            table = Table(table[columns], copy=True)
        if component is not None:
            return _native(table[component]).copy()
        return _convert(table, storage_class)


class ParquetFormatter(_TableFormatter):
    """Astropy/pyarrow table ↔ Parquet.

    Options
    -------
    compression : str
        Parquet codec (``zstd`` default, ``snappy``, ``none`` ...).
    """

    name: ClassVar[str] = "parquet"
    extension: ClassVar[str] = ".parq"
    supported_options: ClassVar[frozenset[str]] = frozenset({"compression"})
    reads: ClassVar[str] = "Parquet table"

    def write(self, obj: Any, path: Path) -> None:
        self._write(obj, path, None)

    def write_with_provenance(self, obj: Any, path: Path, provenance: FileProvenance) -> bool:
        """Write with the provenance in the schema metadata (``nightshift.provenance``)."""
        self._write(obj, path, provenance.to_json().encode())
        return True

    def _write(self, obj: Any, path: Path, provenance: bytes | None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .._file_provenance import PARQUET_KEY

        try:
            if isinstance(obj, pa.Table):
                arrow = obj
            else:
                table = _to_astropy(obj)
                arrow = pa.table({name: _native(table[name]) for name in table.colnames})
            if provenance is not None:
                arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), PARQUET_KEY: provenance})
            pq.write_table(arrow, path, compression=self.options.get("compression", "zstd"))
        except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
            raise FormatterError(f"cannot write table as Parquet to {path}: {exc}") from exc

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        import pyarrow.parquet as pq

        subset = component is not None or "columns" in parameters
        columns = _columns(path, component, parameters, pq.read_schema(path).names) if subset else None
        arrow = pq.read_table(path, columns=columns)
        if component is not None:
            return arrow.column(component).to_numpy()
        if storage_class.pytype_name.startswith("pyarrow"):
            return arrow
        from astropy.table import Table

        return Table({name: arrow.column(name).to_numpy() for name in arrow.column_names})

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        import pyarrow as pa

        return (pa.ArrowException, OSError)
