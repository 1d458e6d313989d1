"""Formatters of external data: provider table files (FITS or Parquet) and query definitions (YAML).

Registered in ``formatters/_registry.py`` as ``external_table`` (default of
storage class ``ReferenceCatalogShard``) and ``query_yaml`` (default of
storage class ``QueryDefinition``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .._storage_class import StorageClass
from ..formatters import Formatter, FormatterError
from ..formatters._tables import FitsTableFormatter, ParquetFormatter

__all__ = ["ExternalTableFormatter", "QueryDefinitionFormatter"]

_FITS_MAGIC = b"SIMPLE  ="
_PARQUET_MAGIC = b"PAR1"


class ExternalTableFormatter(Formatter):
    """A table file from an outside provider, FITS binary table or Parquet, recognised by its content.

    Outside catalogs are ingested in place, in whichever of the two formats
    the provider delivers; the file name does not matter. ``columns`` is read
    without the other columns (Parquet is columnar; FITS via a memory map).
    Tables written through ``put`` are written as Parquet.

    Options
    -------
    compression : str
        Parquet codec for writes (``zstd`` default).
    """

    name: ClassVar[str] = "external_table"
    extension: ClassVar[str] = ".parq"
    supported_options: ClassVar[frozenset[str]] = frozenset({"compression"})
    read_parameters: ClassVar[frozenset[str]] = frozenset({"columns"})
    components_in_file: ClassVar[bool] = True  # the columns of whichever table format the file holds
    reads: ClassVar[str] = "table"

    def _reader(self, path: Path) -> Formatter:
        try:
            with open(path, "rb") as f:
                head = f.read(len(_FITS_MAGIC))
        except OSError as exc:
            raise FormatterError(f"cannot read {path}: {exc}") from exc
        if head.startswith(_FITS_MAGIC):
            return FitsTableFormatter()
        if head.startswith(_PARQUET_MAGIC):
            return ParquetFormatter()
        raise FormatterError(
            f"{path} is neither a FITS file nor a Parquet file (it starts with {head[:8]!r}); "
            "the provider's shards must be FITS binary tables or Parquet"
        )

    def write(self, obj: Any, path: Path) -> None:
        ParquetFormatter(self.options).write(obj, path)

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        return self._reader(path).read(path, storage_class, component, parameters)


class QueryDefinitionFormatter(Formatter):
    """:class:`~nightshift.butler.external.QueryDefinition` ↔ YAML (validated both ways)."""

    name: ClassVar[str] = "query_yaml"
    extension: ClassVar[str] = ".yaml"
    reads: ClassVar[str] = "query definition"

    def write(self, obj: Any, path: Path) -> None:
        import yaml

        from ._query import QueryDefinition

        if not isinstance(obj, QueryDefinition):
            raise FormatterError(f"query_yaml writes QueryDefinition objects, not {type(obj).__name__}")
        checked = QueryDefinition.from_dict(obj.to_dict())  # re-validated: the stored form must be safe
        path.write_text(yaml.safe_dump(checked.to_dict(), sort_keys=False), encoding="utf-8")

    def _read(self, path: Path, storage_class: StorageClass, component: str | None,
              parameters: dict[str, Any]) -> Any:
        import yaml

        from ._query import QueryDefinition

        return QueryDefinition.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        import yaml

        return (OSError, yaml.YAMLError)  # QueryDefinition's own errors (which say what to fix) pass through
