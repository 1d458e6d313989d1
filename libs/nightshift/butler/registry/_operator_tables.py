"""Operator tables: tables outside the dimension universe that ``where`` expressions can use (REQ-0088).

An operator registers a table by name with its key dimensions and typed
columns (a night log's per-exposure quality flag, an EFD-derived per-visit
value), inserts rows, and then filters any registry query on it::

    registry.register_operator_table("nightlog", keys=["exposure"], columns={"quality": "string"})
    registry.insert_operator_rows("nightlog", [{"instrument": "LSSTCam", "exposure": 7, "quality": "bad"}])
    registry.query_datasets("raw", "LSSTCam/raw/all", where="NOT nightlog")          # no night-log entry
    registry.query_datasets("raw", "LSSTCam/raw/all", where="nightlog.quality != 'bad'")

The definition is kept in the registry's ``butler_attributes`` table (so no
schema migration is needed) and the rows in a table ``op_<name>`` of the
registry database. The ``where`` compiler reads a column as a correlated
subquery on the table's key dimensions and a bare table name as "this data
ID has a row"; values are always bound parameters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .._registry_exceptions import ConflictingDefinitionError, OperatorTableError

if TYPE_CHECKING:
    from ._storage import RegistryStorage

__all__ = ["ATTRIBUTE_PREFIX", "COLUMN_KINDS", "OperatorTable", "OperatorTableManager"]

ATTRIBUTE_PREFIX = "operator_table:"
"""Prefix of the ``butler_attributes`` rows holding operator table definitions."""

COLUMN_KINDS = ("int", "float", "string", "bool")
"""The column types an operator table may declare (``str`` is read as ``string``)."""

_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}\Z")
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (float, int), "string": (str,), "bool": (bool,)}


@dataclass(frozen=True)
class OperatorTable:
    """The definition of an operator table.

    Attributes
    ----------
    name : str
        The name used in ``where`` expressions.
    keys : tuple of str
        Its key dimensions, with the dimensions they require, in universe order
        (``("instrument", "exposure")``); one row per key.
    columns : mapping of str to str
        Column name -> type (``int``, ``float``, ``string``, ``bool``).
    doc : str or None
        What the table holds.
    """

    name: str
    keys: tuple[str, ...]
    columns: Mapping[str, str]
    doc: str | None = None

    def to_json(self) -> str:
        return json.dumps({"keys": list(self.keys), "columns": dict(self.columns), "doc": self.doc})

    @classmethod
    def from_json(cls, name: str, text: str) -> OperatorTable:
        spec = json.loads(text)
        return cls(name, tuple(spec["keys"]), dict(spec["columns"]), spec.get("doc"))


class OperatorTableManager:
    """Registers operator tables, writes and reads their rows, drops them."""

    def __init__(self, storage: RegistryStorage) -> None:
        self._storage = storage

    def register_operator_table(self, name: str, keys: Iterable[str], columns: Mapping[str, str], *,
                                doc: str | None = None) -> bool:
        """Create an operator table whose columns ``where`` expressions can use (REQ-0088).

        Parameters
        ----------
        name : str
            Lower-case letters, digits and ``_`` (up to 48 characters), not a
            dimension name; in ``where``, ``name.column`` is a column's value for
            the data ID and a bare ``name`` is true when the data ID has a row.
        keys : iterable of str
            Key dimensions (the dimensions they require are added):
            ``["exposure"]`` keys the rows on ``(instrument, exposure)``.
        columns : mapping of str to str
            Column name -> ``int``, ``float``, ``string`` (or ``str``) or ``bool``.
        doc : str, optional
            What the table holds.

        Returns
        -------
        bool
            True if it was created, False if an identical definition exists.

        Raises
        ------
        OperatorTableError
            A bad name, key or column.
        ConflictingDefinitionError
            A table of that name exists with another definition.
        """
        universe = self._storage.universe
        if not isinstance(name, str) or not _NAME.match(name):
            raise OperatorTableError(
                f"operator table name {name!r} must be lower-case letters, digits and '_' (<= 48 chars), "
                "starting with a letter")
        if name in universe:
            raise OperatorTableError(f"operator table name {name!r} is a dimension name; choose another")
        key_list = list(keys)
        if not key_list:
            raise OperatorTableError(f"operator table {name!r} needs at least one key dimension")
        unknown = [k for k in key_list if k not in universe]
        if unknown:
            raise OperatorTableError(
                f"operator table {name!r} keys {unknown} are not dimensions; known: {', '.join(universe.names)}")
        full_keys = tuple(universe.required_closure(key_list))
        clean: dict[str, str] = {}
        for col, kind in columns.items():
            kind = "string" if kind == "str" else kind
            if not isinstance(col, str) or not _NAME.match(col) or col in full_keys:
                raise OperatorTableError(
                    f"operator table {name!r} column {col!r} must be lower-case letters, digits and '_' "
                    "and not one of its keys")
            if kind not in COLUMN_KINDS:
                raise OperatorTableError(
                    f"operator table {name!r} column {col!r} has type {kind!r}; use one of {', '.join(COLUMN_KINDS)}")
            clean[col] = kind
        definition = OperatorTable(name, full_keys, clean, doc)
        existing = self._storage.operator_table(name)
        if existing is not None:
            if (existing[0].keys, dict(existing[0].columns)) != (definition.keys, clean):
                raise ConflictingDefinitionError(
                    f"operator table {name!r} exists with keys {list(existing[0].keys)} and columns "
                    f"{dict(existing[0].columns)}; drop it first or use another name")
            return False
        table = self._storage.operator_sql_table(definition)
        attrs = self._storage.tables.attributes
        with self._storage.db.transaction() as conn:
            table.create(conn)
            conn.execute(attrs.insert().values(name=ATTRIBUTE_PREFIX + name, value=definition.to_json()))
        self._storage.forget()
        return True

    def get_operator_tables(self) -> list[OperatorTable]:
        """The operator tables of this repository, by name (REQ-0088, REQ-0092)."""
        return [d for d, _ in self._storage.operator_tables(refresh=True).values()]

    def insert_operator_rows(self, name: str, rows: Iterable[Mapping[str, Any]], *, replace: bool = False) -> int:
        """Insert rows into an operator table, all or nothing.

        Parameters
        ----------
        name : str
            The operator table.
        rows : iterable of mapping
            Each row gives every key dimension and any of the columns
            (a column left out is NULL).
        replace : bool
            Replace the rows that exist for the same keys instead of refusing them.

        Returns
        -------
        int
            Rows written.

        Raises
        ------
        OperatorTableError
            An unknown table, or a row with a missing key, an unknown column or a value of the wrong type.
        ConflictingDefinitionError
            A row exists for the same keys (and ``replace`` is False).
        """
        definition, table = self._entry(name)
        universe = self._storage.universe
        clean: list[dict[str, Any]] = []
        for row in rows:
            extra = set(row) - set(definition.keys) - set(definition.columns)
            if extra:
                raise OperatorTableError(
                    f"operator table {name!r} has no column(s) {sorted(extra)}; its columns: "
                    f"{', '.join(definition.columns) or 'none'} (keys: {', '.join(definition.keys)})")
            out: dict[str, Any] = {}
            for key in definition.keys:
                if key not in row:
                    raise OperatorTableError(f"a row of operator table {name!r} lacks key {key!r}: {dict(row)}")
                out[key] = universe.check_value(key, row[key])
            for col, kind in definition.columns.items():
                value = row.get(col)
                wrong = not isinstance(value, _PYTHON_TYPES[kind]) or (isinstance(value, bool) and kind != "bool")
                if value is not None and wrong:
                    raise OperatorTableError(
                        f"operator table {name!r} column {col!r} is {kind}; got {value!r} ({type(value).__name__})")
                out[col] = value
            clean.append(out)
        keys = definition.keys
        with self._storage.db.transaction() as conn:
            have = self._storage.existing_keys(conn, table, keys, clean) if clean else set()
            if have and not replace:
                first = sorted(have)[0]
                raise ConflictingDefinitionError(
                    f"operator table {name!r} already has a row for {dict(zip(keys, first, strict=True))}; "
                    "nothing was inserted -- pass replace=True to replace such rows")
            for values in have:
                conn.execute(table.delete().where(*[table.c[k] == v for k, v in zip(keys, values, strict=True)]))
            self._storage.bulk_insert(conn, table, clean)
        return len(clean)

    def query_operator_rows(self, name: str) -> list[dict[str, Any]]:
        """All rows of an operator table, ordered by its keys."""
        definition, table = self._entry(name)
        with self._storage.db.reading() as conn:
            rows = conn.execute(sa.select(table).order_by(*[table.c[k] for k in definition.keys]))
            return [dict(r._mapping) for r in rows]

    def drop_operator_table(self, name: str) -> bool:
        """Delete an operator table and its rows; returns False if there was none."""
        entry = self._storage.operator_table(name)
        if entry is None:
            return False
        attrs = self._storage.tables.attributes
        with self._storage.db.transaction() as conn:
            entry[1].drop(conn, checkfirst=True)
            conn.execute(attrs.delete().where(attrs.c.name == ATTRIBUTE_PREFIX + name))
        self._storage.forget()
        return True

    def _entry(self, name: str) -> tuple[OperatorTable, sa.Table]:
        entry = self._storage.operator_table(name)
        if entry is None:
            known = ", ".join(self._storage.operator_tables()) or "none"
            raise OperatorTableError(
                f"no operator table {name!r} (known: {known}); create it with register_operator_table()")
        return entry
