"""Formatters of external data: provider table files (FITS or Parquet) and query definitions (YAML).

Registered in ``formatters/_registry.py`` as ``external_table`` (default of
storage class ``ReferenceCatalogShard``) and ``query_yaml`` (default of
storage class ``QueryDefinition``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from .._storage_class import StorageClass
from ..formatters import Formatter, FormatterError, UnsupportedComponentError, UnsupportedParameterError
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

    def read(
        self,
        path: Path,
        storage_class: StorageClass,
        component: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Any:
        return self._reader(path).read(path, storage_class, component, parameters)


class QueryDefinitionFormatter(Formatter):
    """:class:`~nightshift.butler.external.QueryDefinition` ↔ YAML (validated both ways)."""

    name: ClassVar[str] = "query_yaml"
    extension: ClassVar[str] = ".yaml"

    def write(self, obj: Any, path: Path) -> None:
        import yaml

        from ._query import QueryDefinition

        if not isinstance(obj, QueryDefinition):
            raise FormatterError(f"query_yaml writes QueryDefinition objects, not {type(obj).__name__}")
        checked = QueryDefinition.from_dict(obj.to_dict())  # re-validated: the stored form must be safe
        path.write_text(yaml.safe_dump(checked.to_dict(), sort_keys=False), encoding="utf-8")

    def read(
        self,
        path: Path,
        storage_class: StorageClass,
        component: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Any:
        import yaml

        from ._query import QueryDefinition

        if component is not None:
            raise UnsupportedComponentError("a query definition has no components")
        if parameters:
            raise UnsupportedParameterError(f"query_yaml cannot apply parameter(s) {sorted(parameters)}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise FormatterError(f"cannot read query definition {path}: {exc}") from exc
        return QueryDefinition.from_dict(data)
