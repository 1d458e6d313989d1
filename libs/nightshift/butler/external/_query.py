"""Database queries as first-class datasets (DMS-MWBT-REQ-0057).

A query dataset is stored as a :class:`QueryDefinition` -- SQL text with
``:name`` bind parameters plus the *name* of the environment variable that
holds the database URL -- and read as the query's result::

    butler.register_dataset_type(DatasetType("dia_sources_of_visit", ["instrument", "visit"], "QueryDefinition"))
    butler.put(QueryDefinition("SELECT * FROM dia_source WHERE visit = :visit", dsn_env="APDB_URL"),
               "dia_sources_of_visit", instrument="X", visit=12)
    table = butler.get("dia_sources_of_visit", instrument="X", visit=12)     # astropy Table
    arrow = butler.get(..., storage_class="ArrowTable")                       # pyarrow Table
    query = butler.get(..., storage_class="QueryDefinition")                  # the stored definition

Bind values come from the dataset's data ID (one bind per dimension, by
dimension name), the definition's ``defaults`` and ``parameters=`` of ``get``
(extra binds). Credentials are never stored or logged: the URL is read from
the environment when the query runs.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    QueryBindError,
    QueryDatasetError,
    QueryDefinitionError,
    QueryEnvironmentError,
    QueryExecutionError,
)
from ._sql import CheckedSql, check_read_only_sql

if TYPE_CHECKING:
    from .._butler import Butler
    from .._dataset_ref import DatasetRef

__all__ = ["QUERY_STORAGE_CLASS", "QueryDefinition", "read_query_dataset", "run_query"]

#: Storage class of query datasets (``configs/storage_classes.yaml``).
QUERY_STORAGE_CLASS = "QueryDefinition"
#: Storage classes a query dataset can be read as besides its definition.
RESULT_STORAGE_CLASSES = ("AstropyTable", "ArrowTable")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCALAR = (str, int, float, bool)


@dataclass(frozen=True)
class QueryDefinition:
    """A read-only database query stored as a dataset.

    Parameters
    ----------
    sql : str
        One ``SELECT`` or ``WITH`` statement with ``:name`` bind parameters.
    dsn_env : str
        Name of the environment variable holding the database URL
        (``postgresql://user@host:5432/db``, ``sqlite:////path/file.db``).
    description : str, optional
        What the query returns.
    defaults : mapping, optional
        Default values of bind parameters (scalars), overridden by ``get``'s ``parameters``.
    timeout_s : float, optional
        Statement timeout, applied on PostgreSQL.

    Raises
    ------
    QueryDefinitionError
        If the SQL is not a single read-only statement, ``dsn_env`` is not a
        variable name, or a default is not a scalar / not used by the SQL.
    """

    sql: str
    dsn_env: str
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    timeout_s: float | None = None
    _checked: CheckedSql = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked = check_read_only_sql(self.sql)
        if not isinstance(self.dsn_env, str) or not _ENV_NAME.fullmatch(self.dsn_env):
            hint = " (give the NAME of an environment variable, never the URL itself)" if "://" in str(
                self.dsn_env) else ""
            raise QueryDefinitionError(
                f"dsn_env must be an environment variable name like APDB_URL{hint}"
            )
        defaults = dict(self.defaults or {})
        for key, value in defaults.items():
            if key not in checked.bind_names:
                raise QueryDefinitionError(
                    f"default {key!r} is not a bind parameter of the SQL (it uses {list(checked.bind_names)})"
                )
            if not isinstance(value, _SCALAR):
                raise QueryDefinitionError(f"default {key!r} must be a str, int, float or bool, not {value!r}")
        if self.timeout_s is not None and not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise QueryDefinitionError(f"timeout_s must be a positive number of seconds, not {self.timeout_s!r}")
        object.__setattr__(self, "defaults", MappingProxyType(defaults))
        object.__setattr__(self, "_checked", checked)

    @property
    def bind_names(self) -> tuple[str, ...]:
        """Named bind parameters of the SQL, in order of first use."""
        return self._checked.bind_names

    def to_dict(self) -> dict[str, Any]:
        """The stored (YAML) form."""
        out: dict[str, Any] = {"sql": self.sql, "dsn_env": self.dsn_env}
        if self.description:
            out["description"] = self.description
        if self.defaults:
            out["defaults"] = dict(self.defaults)
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueryDefinition:
        """Inverse of :meth:`to_dict` (validates again).

        Raises
        ------
        QueryDefinitionError
            Unknown or missing keys, or an invalid definition.
        """
        if not isinstance(data, Mapping):
            raise QueryDefinitionError(f"a query definition is a mapping, not {type(data).__name__}")
        unknown = set(data) - {"sql", "dsn_env", "description", "defaults", "timeout_s"}
        if unknown or "sql" not in data or "dsn_env" not in data:
            raise QueryDefinitionError(
                f"a query definition needs 'sql' and 'dsn_env' (optional: description, defaults, timeout_s); "
                f"got keys {sorted(data)}"
            )
        return cls(str(data["sql"]), data["dsn_env"], str(data.get("description") or ""),
                   dict(data.get("defaults") or {}), data.get("timeout_s"))


def _binds(definition: QueryDefinition, data_id: Mapping[str, Any], extra: Mapping[str, Any],
           what: str) -> dict[str, Any]:
    needed = definition.bind_names
    clash = sorted(set(extra) & set(data_id))
    if clash:
        raise QueryBindError(
            f"{what}: parameter(s) {clash} are data ID keys; their values come from the data ID, "
            "so do not pass them in parameters="
        )
    unused = sorted(set(extra) - set(needed))
    if unused:
        raise QueryBindError(f"{what}: parameter(s) {unused} are not used by the query (it binds {list(needed)})")
    values = {**definition.defaults, **{k: v for k, v in data_id.items() if k in needed}, **extra}
    missing = [name for name in needed if name not in values]
    if missing:
        raise QueryBindError(
            f"{what}: no value for bind parameter(s) {missing}; give them as data ID keys (dimensions of the "
            "dataset type), in the definition's defaults, or as get(..., parameters={...})"
        )
    for key, value in values.items():
        if value is not None and not isinstance(value, _SCALAR) and not hasattr(value, "__index__"):
            raise QueryBindError(f"{what}: bind value {key!r} must be a scalar, not {type(value).__name__}")
    return {k: (int(v) if hasattr(v, "__index__") and not isinstance(v, bool) else v) for k, v in values.items()}


def _engine(definition: QueryDefinition, what: str) -> Any:
    import sqlalchemy as sa

    raw = os.environ.get(definition.dsn_env)
    if not raw:
        raise QueryEnvironmentError(
            f"{what}: environment variable {definition.dsn_env} is not set; export it with the database URL "
            "(e.g. postgresql://user@host:5432/dbname or sqlite:////path/file.db) before reading this dataset"
        )
    if raw.startswith(("postgresql://", "postgres://")):
        raw = "postgresql+psycopg://" + raw.split("://", 1)[1]
    try:
        url = sa.make_url(raw)
        kwargs: dict[str, Any] = {"poolclass": sa.pool.NullPool}
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = Path(str(url.database)).absolute()
            if not path.is_file():
                raise QueryEnvironmentError(
                    f"{what}: the SQLite database named by {definition.dsn_env} does not exist: {path}")
            uri = f"{path.as_uri()}?mode=ro"  # read-only at the file level: never creates or writes the file
            kwargs["creator"] = lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
        engine = sa.create_engine(url, **kwargs)
        if url.get_backend_name() == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_query_only)
        return engine
    except QueryEnvironmentError:
        raise
    except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
        # the exception text may quote the URL (and a password): name the variable only
        raise QueryEnvironmentError(
            f"{what}: environment variable {definition.dsn_env} does not hold a usable database URL "
            f"({type(exc).__name__}); set it to e.g. postgresql://user@host:5432/dbname"
        ) from None


def _sqlite_query_only(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA query_only = ON")  # refuses every write on this connection
    cursor.close()


def _column(name: str, values: list[Any]) -> Any:
    import numpy as np
    from astropy.table import Column, MaskedColumn

    values = [float(v) if isinstance(v, Decimal) else v for v in values]
    mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    if not mask.any():
        return Column(np.array(values) if values else np.array([], dtype=float), name=name)
    present = [v for v in values if v is not None]
    fill: Any = type(present[0])() if present and isinstance(present[0], _SCALAR) else None
    if isinstance(fill, bool):
        fill = False
    return MaskedColumn(np.array([fill if v is None else v for v in values]), mask=mask, name=name)


def run_query(definition: QueryDefinition, binds: Mapping[str, Any], *, as_arrow: bool = False,
              what: str = "query") -> Any:
    """Run a query definition read-only with ``binds``; the result as an astropy (or pyarrow) table.

    PostgreSQL runs it in a ``READ ONLY`` transaction (with the definition's
    statement timeout); SQLite on a connection opened read-only with
    ``PRAGMA query_only``. The transaction is always rolled back.

    Raises
    ------
    QueryEnvironmentError
        The URL variable is unset or unusable.
    QueryExecutionError
        The database refused or failed the query (the message has the database's reason).
    """
    import sqlalchemy as sa

    engine = _engine(definition, what)
    statement = sa.text(definition._checked.text)
    try:
        with engine.connect() as conn:
            dialect = conn.dialect.name
            trans = conn.begin()
            try:
                if dialect == "postgresql":
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    if definition.timeout_s is not None:
                        conn.execute(sa.text("SELECT set_config('statement_timeout', :ms, true)"),
                                     {"ms": str(int(definition.timeout_s * 1000))})
                result = conn.execute(statement, dict(binds))
                if not result.returns_rows:
                    raise QueryDefinitionError(f"{what}: the statement returned no rows (it must be a SELECT)")
                keys = list(result.keys())
                rows = result.fetchall()
            finally:
                trans.rollback()
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise QueryExecutionError(
            f"{what}: the database (from ${definition.dsn_env}) refused or failed the query: {reason}"
        ) from None
    except sa.exc.StatementError as exc:  # e.g. a bind SQLAlchemy cannot send
        raise QueryExecutionError(f"{what}: the query could not be sent: {exc.orig!r}") from None
    finally:
        engine.dispose()
    columns = {k: [row[i] for row in rows] for i, k in enumerate(keys)}
    if as_arrow:
        import pyarrow as pa

        arrays = {}
        for k, vals in columns.items():
            arr = pa.array(vals)
            arrays[k] = arr.cast(pa.float64()) if pa.types.is_decimal(arr.type) else arr
        return pa.table(arrays)
    from astropy.table import Table

    return Table([_column(k, v) for k, v in columns.items()]) if columns else Table()


def read_query_dataset(butler: Butler, ref: DatasetRef, parameters: Mapping[str, Any] | None,
                       storage_class: str | None) -> Any:
    """``Butler.get`` of a query dataset: its result (or its definition with ``storage_class="QueryDefinition"``).

    Parameters
    ----------
    butler : Butler
        Where the definition is stored.
    ref : DatasetRef
        A resolved ref of a dataset of storage class ``QueryDefinition``.
    parameters : mapping, optional
        Extra bind values (names used by the SQL that are not data ID keys).
    storage_class : str, optional
        ``AstropyTable`` (default), ``ArrowTable`` or ``QueryDefinition``.

    Raises
    ------
    QueryDatasetError
        Bad storage class, binds, environment or execution (see the subclasses).
    """
    what = f"query dataset {ref.dataset_type.name} {dict(ref.data_id)}"
    if storage_class == QUERY_STORAGE_CLASS:
        if parameters:
            raise QueryBindError(f"{what}: parameters bind query values; they make no sense when reading the "
                                 "definition itself")
        return butler.datastore.get(ref)
    if storage_class not in (None, *RESULT_STORAGE_CLASSES):
        raise QueryDatasetError(
            f"{what} can be read as {', '.join(RESULT_STORAGE_CLASSES)} (its result) or {QUERY_STORAGE_CLASS} "
            f"(its definition), not as {storage_class!r}"
        )
    definition = butler.datastore.get(ref)
    if not isinstance(definition, QueryDefinition):  # pragma: no cover - guarded by the storage class
        raise QueryDatasetError(f"{what} is stored as {type(definition).__name__}, not a QueryDefinition")
    binds = _binds(definition, dict(ref.data_id), dict(parameters or {}), what)
    return run_query(definition, binds, as_arrow=storage_class == "ArrowTable", what=what)

