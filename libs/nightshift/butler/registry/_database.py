"""Engines, connections and transactions for SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .._registry_exceptions import ConflictingDefinitionError, RegistryDatabaseError, RegistryError

__all__ = ["Database", "REGISTRY_FILENAME", "resolve_url"]

#: Name of the SQLite file in a repository root.
REGISTRY_FILENAME = "registry.sqlite3"
#: How long a SQLite writer waits for another writer's lock (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 60_000


def resolve_url(location: str | os.PathLike[str]) -> str:
    """Turn a repository root, SQLite file or database URL into a SQLAlchemy URL.

    ``postgresql://`` becomes ``postgresql+psycopg://`` (psycopg 3); a
    directory becomes ``sqlite:///<dir>/registry.sqlite3``.
    """
    text = os.fspath(location)
    if "://" not in text:
        path = Path(text)
        if path.suffix not in (".sqlite3", ".sqlite", ".db"):
            path = path / REGISTRY_FILENAME
        return f"sqlite:///{path.resolve()}"
    if text.startswith("postgresql://") or text.startswith("postgres://"):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    return text


class Database:
    """One engine plus the connection of the current transaction.

    A :class:`Database` (like the registry over it) is meant for one thread;
    open one per thread or process. Writes run in ``transaction()``; on
    SQLite that issues ``BEGIN IMMEDIATE`` so concurrent writers queue on the
    busy timeout instead of failing on lock upgrades.
    """

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.url = url
        self.schema = schema
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"enable_from_linting": False}
        if self.is_sqlite:
            if schema is not None:
                raise RegistryError("SQLite registries have no schemas; pass schema=None")
            path = url.split("sqlite:///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        else:
            kwargs["pool_size"] = 2
            kwargs["max_overflow"] = 4
        try:
            self.engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise RegistryError(f"cannot use registry database URL {url!r}: {exc}") from exc
        if self.is_sqlite:
            self._install_sqlite_hooks()
            self._read_engine = self.engine
        else:
            # reads need no transaction: autocommit saves the BEGIN/ROLLBACK round trips
            self._read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._conn: sa.Connection | None = None
        self._read_conn: sa.Connection | None = None

    def _install_sqlite_hooks(self) -> None:
        @sa.event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @sa.event.listens_for(self.engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # writers take the write lock up front (no deadlock-prone lock upgrades); readers run in
            # autocommit, each statement seeing a consistent WAL snapshot
            if conn.get_execution_options().get("nightshift_write", False):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sa.Connection]:
        """A connection inside one all-or-nothing transaction (nested calls join the outer one)."""
        if self._conn is not None:
            if write and not self._conn.get_execution_options().get("nightshift_write"):
                raise RegistryError("cannot write inside a read-only registry operation")
            yield self._conn
            return
        if not write:
            yield from self._read()
            return
        try:
            conn = self.engine.connect().execution_options(nightshift_write=True)
        except sa.exc.OperationalError as exc:
            raise RegistryDatabaseError(f"cannot connect to the registry database: {exc.orig}") from exc
        self._conn = conn
        try:
            with conn.begin():
                yield conn
        except sa.exc.IntegrityError as exc:
            raise ConflictingDefinitionError(
                f"the registry database refused the write (nothing was written): {exc.orig}"
            ) from exc
        except sa.exc.OperationalError as exc:
            raise RegistryDatabaseError(f"registry database error (nothing was written): {exc.orig}") from exc
        finally:
            self._conn = None
            conn.close()

    def _read(self) -> Iterator[sa.Connection]:
        # one long-lived autocommit connection for reads: no pool checkout, no BEGIN/ROLLBACK round trips
        conn = self._read_conn
        if conn is None or conn.closed or conn.invalidated:
            try:
                conn = self._read_conn = self._read_engine.connect()
            except sa.exc.OperationalError as exc:
                raise RegistryDatabaseError(f"cannot connect to the registry database: {exc.orig}") from exc
        self._conn = conn
        try:
            yield conn
        except sa.exc.OperationalError as exc:
            self._drop_reader()
            raise RegistryDatabaseError(f"registry database error: {exc.orig}") from exc
        finally:
            self._conn = None
            if self._read_conn is not None and not self._read_conn.closed:
                self._read_conn.rollback()  # ends SQLAlchemy's autobegun block; a no-op in autocommit

    def _drop_reader(self) -> None:
        if self._read_conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._read_conn.close()
            self._read_conn = None

    def reading(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A connection for reads (joins an open transaction if there is one)."""
        return self.transaction(write=False)

    def dispose(self) -> None:
        """Close every pooled connection (idempotent)."""
        self._drop_reader()
        self.engine.dispose()
