"""The APDB table definitions, read from the Rubin ``apdb.yaml`` in ``lsst-sdm-schemas``.

Column names, types and nullability come from the shipped schema file at
schema-creation time; nightshift adds only the columns its layout needs
(``pixelId``) and two history-chunk tables (see ``docs/apdb.md``).
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from ._exceptions import ApdbSchemaError

__all__ = ["ColumnSpec", "TableSpec", "apdb_tables", "last_columns", "schema_version"]

#: Tables nightshift reads and writes, by the name used in ``apdb.yaml``.
MANAGED_TABLES = ("DiaObject", "DiaSource", "DiaForcedSource")

#: Column nightshift adds to every spatial table: HEALPix nested index at the index depth.
PIXEL_COLUMN = "pixelId"

_PG_TYPES = {
    "double": "double precision",
    "float": "real",
    "long": "bigint",
    "int": "integer",
    "short": "smallint",
    "boolean": "boolean",
    "text": "text",
}
_NP_TYPES: dict[str, np.dtype[Any]] = {
    "double": np.dtype("f8"),
    "float": np.dtype("f4"),
    "long": np.dtype("i8"),
    "int": np.dtype("i4"),
    "short": np.dtype("i2"),
    "boolean": np.dtype("?"),
}
_ARROW_TYPES: dict[str, pa.DataType] = {
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "int": pa.int32(),
    "short": pa.int16(),
    "boolean": pa.bool_(),
}


@dataclass(frozen=True)
class ColumnSpec:
    """One column of an APDB table.

    Attributes
    ----------
    name : str
        Column name, as in ``apdb.yaml``.
    datatype : str
        Felis datatype (``double``, ``float``, ``long``, ``int``, ``short``,
        ``boolean``, ``char``, ``string``, ``text``).
    nullable : bool
        Whether the column accepts NULL.
    length : int or None
        Maximum length of a string column.
    default : Any
        Default value from the schema, if any.
    """

    name: str
    datatype: str
    nullable: bool
    length: int | None = None
    default: Any = None

    @property
    def is_string(self) -> bool:
        return self.datatype in ("char", "string", "text")

    @property
    def is_float(self) -> bool:
        return self.datatype in ("double", "float")

    @property
    def pg_type(self) -> str:
        if self.datatype in ("char", "string"):
            return f"varchar({self.length})" if self.length else "text"
        return _PG_TYPES[self.datatype]

    @property
    def np_dtype(self) -> np.dtype[Any]:
        if self.is_string:
            return np.dtype(object)
        return _NP_TYPES[self.datatype]

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.string() if self.is_string else _ARROW_TYPES[self.datatype]


@dataclass(frozen=True)
class TableSpec:
    """One APDB table: its columns and primary key as shipped in ``apdb.yaml``."""

    name: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...]

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns])


def _strip(ref: str) -> str:
    return ref.rsplit(".", 1)[-1]


@cache
def _load() -> dict[str, Any]:
    try:
        text = (importlib.resources.files("lsst.sdm.schemas") / "apdb.yaml").read_text()
    except (ModuleNotFoundError, FileNotFoundError) as exc:  # pragma: no cover - dependency is pinned
        raise ApdbSchemaError(
            "the Rubin APDB schema is not installed: pip install lsst-sdm-schemas"
        ) from exc
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def schema_version() -> str:
    """Version of the shipped ``apdb.yaml`` (e.g. ``"10.0.0"``)."""
    return str(_load()["version"])


@cache
def last_columns() -> tuple[str, ...]:
    """Columns of ``apdb.yaml``'s ``DiaObjectLast`` (Rubin's subset of DiaObject), in DiaObject order."""
    for table in _load()["tables"]:
        if table["name"] == "DiaObjectLast":
            names = {c["name"] for c in table["columns"]}
            return tuple(n for n in apdb_tables()["DiaObject"].names if n in names)
    raise ApdbSchemaError(f"apdb.yaml {schema_version()} lacks table DiaObjectLast")  # pragma: no cover


@cache
def apdb_tables() -> dict[str, TableSpec]:
    """The managed APDB tables (DiaObject, DiaSource, DiaForcedSource) from ``apdb.yaml``."""
    out: dict[str, TableSpec] = {}
    for table in _load()["tables"]:
        if table["name"] not in MANAGED_TABLES:
            continue
        cols = tuple(
            ColumnSpec(
                name=c["name"],
                datatype=c["datatype"],
                nullable=bool(c.get("nullable", True)),
                length=c.get("length"),
                default=c.get("value"),
            )
            for c in table["columns"]
        )
        pk = table.get("primaryKey", ())
        pk = (pk,) if isinstance(pk, str) else tuple(pk)
        out[table["name"]] = TableSpec(table["name"], cols, tuple(_strip(k) for k in pk))
    missing = set(MANAGED_TABLES) - set(out)
    if missing:  # pragma: no cover - depends on the installed schema
        raise ApdbSchemaError(f"apdb.yaml {schema_version()} lacks tables {sorted(missing)}")
    return out
