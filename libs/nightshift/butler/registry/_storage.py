"""The registry's one shared storage: database, tables, universe, caches, bulk writes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from ..dimensions import DimensionUniverse
from ._database import Database
from ._operator_tables import ATTRIBUTE_PREFIX, OperatorTable
from ._schema import RegistryTables, build_operator_table, build_tables

__all__ = ["RegistryStorage", "data_id_key"]

_T = TypeVar("_T")

_STATEMENT_CACHE_SIZE = 256


def data_id_key(data_id: Mapping[str, int | str]) -> str:
    """Canonical text of a normalized data ID (keys in universe order)."""
    return ",".join(f"{k}={v}" for k, v in data_id.items())


class RegistryStorage:
    """What every registry manager and query function shares (one per :class:`Registry`).

    The managers (collections, dataset types, datasets, dimension records,
    provenance) and the query functions receive it explicitly; none of them
    reads another's private state.

    Parameters
    ----------
    db : Database
        The open registry database.
    universe : DimensionUniverse
        The repository's dimension universe.
    schema : str, optional
        PostgreSQL schema holding the tables.

    Attributes
    ----------
    db : Database
    universe : DimensionUniverse
    tables : RegistryTables
        The SQLAlchemy tables of this repository's schema.
    """

    def __init__(self, db: Database, universe: DimensionUniverse, schema: str | None) -> None:
        self.db = db
        self.universe = universe
        self.tables: RegistryTables = build_tables(universe, schema, db.engine.dialect.name)
        self._statements: dict[tuple[Any, ...], Any] = {}  # query shape -> compiled statement (see _querying)
        # (table, columns, dialect) -> compiled bulk INSERT: data-independent, so kept across rollbacks
        self._insert_sql: dict[tuple[Any, ...], tuple[str, Any, dict[str, Any]]] = {}
        self._operator_metadata = sa.MetaData(schema=schema)
        self._operator: dict[str, tuple[OperatorTable, sa.Table]] | None = None  # None: read on first use

    def cached_statement(self, key: tuple[Any, ...], build: Callable[[], _T]) -> _T:
        """Statements are immutable: build once per query *shape*, re-run with new parameter values."""
        found: _T | None = self._statements.get(key)
        if found is None:
            found = build()
            if len(self._statements) >= _STATEMENT_CACHE_SIZE:
                self._statements.clear()
            self._statements[key] = found
        return found

    def forget(self) -> None:
        """Drop the cached statements and operator tables (after a rolled-back transaction: they may be gone)."""
        self._statements.clear()
        self._operator = None

    def operator_tables(self, *, refresh: bool = False) -> Mapping[str, tuple[OperatorTable, sa.Table]]:
        """The operator tables (REQ-0088): name -> (definition, SQL table), read when first asked or ``refresh``."""
        if self._operator is None or refresh:
            attrs = self.tables.attributes
            with self.db.reading() as conn:
                rows = conn.execute(sa.select(attrs.c.name, attrs.c.value)
                                    .where(attrs.c.name.startswith(ATTRIBUTE_PREFIX, autoescape=True))).all()
            held = self._operator or {}
            found: dict[str, tuple[OperatorTable, sa.Table]] = {}
            for key, value in sorted(rows):
                definition = OperatorTable.from_json(key[len(ATTRIBUTE_PREFIX):], value)
                same = held.get(definition.name)
                found[definition.name] = same if same is not None and same[0] == definition else (
                    definition, self.operator_sql_table(definition))
            self._operator = found
        return self._operator

    def operator_table(self, name: str) -> tuple[OperatorTable, sa.Table] | None:
        """One operator table; an unknown name is looked up again (another process may have made it since)."""
        found = self.operator_tables().get(name)
        return found if found is not None else self.operator_tables(refresh=True).get(name)

    def operator_sql_table(self, definition: OperatorTable) -> sa.Table:
        """The SQL table of an operator table definition (replacing an older one of the same name)."""
        old = self._operator_metadata.tables.get(
            f"{self._operator_metadata.schema}.op_{definition.name}" if self._operator_metadata.schema
            else f"op_{definition.name}")
        if old is not None:
            self._operator_metadata.remove(old)
        return build_operator_table(self.universe, self._operator_metadata, definition.name, definition.keys,
                                    definition.columns)

    def existing_keys(
        self, conn: sa.Connection, table: sa.Table, keys: Sequence[str], rows: list[dict[str, Any]]
    ) -> set[tuple[Any, ...]]:
        """The ``keys`` tuples of ``rows`` that ``table`` already holds (queried 500 rows at a time)."""
        out: set[tuple[Any, ...]] = set()
        for i in range(0, len(rows), 500):
            chunk = rows[i:i + 500]
            cond = sa.tuple_(*[table.c[k] for k in keys]).in_([tuple(r[k] for k in keys) for r in chunk])
            out.update(tuple(r) for r in conn.execute(sa.select(*[table.c[k] for k in keys]).where(cond)))
        return out

    def bulk_insert(self, conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]],
                     batch_size: int = 10_000) -> None:
        """``INSERT`` ``rows`` through SQLAlchemy, ``batch_size`` rows a statement."""
        for i in range(0, len(rows), batch_size):
            batch = rows[i:i + batch_size]
            if batch:
                conn.execute(table.insert(), batch)

    def bulk_insert_fast(self, conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]],
                          batch_size: int = 10_000) -> None:
        """executemany of a pre-compiled INSERT with the column types' own bind processors.

        Same SQL and values as ``conn.execute(table.insert(), rows)`` without SQLAlchemy's per-row
        parameter processing (a third of the insert time for wide rows); PostgreSQL uses COPY.
        """
        if not rows:
            return
        cols = list(rows[0])
        if conn.dialect.name == "postgresql":
            self._copy_rows(conn, table, cols, rows)  # 1.5x faster than multi-row INSERTs here
            return
        # compiling the INSERT costs more than executing it for one row: cache per (table, columns)
        key = (table.fullname, tuple(cols), conn.dialect.name)
        entry = self._insert_sql.get(key)
        if entry is None:
            compiled = table.insert().compile(dialect=conn.dialect, column_keys=cols)
            all_procs = {c: table.c[c].type.bind_processor(conn.dialect) for c in cols}
            entry = self._insert_sql[key] = (str(compiled), compiled.positiontup,
                                  {c: p for c, p in all_procs.items() if p is not None})
        sql, order, procs = entry
        for i in range(0, len(rows), batch_size):
            batch = rows[i:i + batch_size]
            if procs:
                batch = [{**r, **{c: p(r[c]) for c, p in procs.items()}} for r in batch]
            if order is not None:  # positional paramstyle (SQLite qmark)
                params: Any = [tuple(r[k] for k in order) for r in batch]
            else:
                params = batch
            conn.exec_driver_sql(sql, params)

    def _copy_rows(self, conn: sa.Connection, table: sa.Table, cols: list[str], rows: list[dict[str, Any]]) -> None:
        """PostgreSQL ``COPY ... FROM STDIN`` (psycopg 3): one round trip, constraints still checked."""
        import psycopg

        prep = conn.dialect.identifier_preparer
        sql = f"COPY {prep.format_table(table)} ({', '.join(prep.quote(c) for c in cols)}) FROM STDIN"
        raw = conn.connection.driver_connection
        assert raw is not None  # an open connection has its driver (psycopg) connection
        try:
            with raw.cursor() as cur, cur.copy(sql) as copy:
                for r in rows:
                    copy.write_row(tuple(r[c] for c in cols))
        except psycopg.IntegrityError as exc:
            raise sa.exc.IntegrityError(sql, None, exc) from exc
