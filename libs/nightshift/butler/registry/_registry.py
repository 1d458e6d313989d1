"""The registry: what datasets exist, where, and how they relate."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
import types
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import sqlalchemy as sa

from .._dataset_ref import DatasetRef
from .._dataset_type import DatasetType
from .._registry_exceptions import (
    ConflictingDefinitionError,
    MigrationRequiredError,
    RegistryDatabaseError,
    RegistryError,
    RepositoryVersionError,
)
from ..dimensions import DimensionUniverse
from . import _querying
from ._collection_manager import CollectionManager
from ._database import Database, resolve_url
from ._dataset_manager import DatasetManager
from ._dataset_type_manager import DatasetTypeManager
from ._dimension_manager import DimensionManager
from ._exclusions import ExclusionList
from ._graph import DatasetGraph
from ._index import RepositoryIndex
from ._migrations import MIGRATIONS
from ._operator_tables import ATTRIBUTE_PREFIX, OperatorTableManager
from ._provenance import ProvenanceManager, QuantumProvenance
from ._schema import SCHEMA_VERSION, build_tables
from ._storage import RegistryStorage
from ._timespan import to_tai_ns

__all__ = ["Registry"]

_M = TypeVar("_M")
_P = ParamSpec("_P")
_R = TypeVar("_R")


class _Delegate(Generic[_M, _P, _R]):
    """A public :class:`Registry` method served by one of its managers.

    ``name = _Delegate("_manager", Manager.name)`` in the class body: on an
    instance it is the manager's bound method, so the signature and docstring
    are written once, in the manager; on the class it is a function taking the
    registry first. An instance attribute of the same name still wins (no
    ``__set__``), so tests can patch one registry's method.
    """

    def __init__(self, manager: str, method: Callable[Concatenate[_M, _P], _R]) -> None:
        self._manager = manager
        self._method = method
        self.__doc__ = method.__doc__
        self.__wrapped__ = method

    def __set_name__(self, owner: type[Any], name: str) -> None:
        if name != self._method.__name__:
            raise TypeError(f"{owner.__name__}.{name} delegates to {self._method.__qualname__}: use one name")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Callable[Concatenate[Any, _P], _R]: ...

    @overload
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Callable[_P, _R]: ...

    def __get__(self, obj: object | None, owner: type[Any] | None = None) -> Callable[..., _R]:
        if obj is not None:
            return types.MethodType(self._method, getattr(obj, self._manager))
        method, manager = self._method, self._manager

        @functools.wraps(method)
        def unbound(registry: Any, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            return method(getattr(registry, manager), *args, **kwargs)

        return unbound


class Registry:
    """The butler registry over SQLite (default) or PostgreSQL.

    Open an existing repository with ``Registry(location)``; create one with
    :meth:`Registry.create`. ``location`` is a repository root directory
    (the SQLite file ``registry.sqlite3`` inside it), a SQLite file, or a
    database URL (``postgresql://user@host:port/db``).

    Parameters
    ----------
    location : str or os.PathLike
        Repository root, SQLite file or SQLAlchemy/PostgreSQL URL.
    schema : str, optional
        PostgreSQL schema (namespace) holding this repository's tables.

    Raises
    ------
    RegistryError
        If there is no registry at ``location`` (create one first).
    RepositoryVersionError
        If the repository was written by a newer nightshift.
    MigrationRequiredError
        If the repository is older: run :meth:`Registry.migrate` explicitly.

    Notes
    -----
    One instance serves one thread; several processes may write the same
    repository concurrently (SQLite WAL + busy timeout, PostgreSQL
    transactions). Every write method is all-or-nothing.
    """

    def __init__(self, location: str | os.PathLike[str], *, schema: str | None = None) -> None:
        url = resolve_url(location)
        if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///"):]):
            # checked first: opening must never create an empty database file (or its directory)
            raise RegistryError(
                f"no nightshift registry at {os.fspath(location)!r}: create one with Registry.create(...)"
            )
        self._db = Database(url, schema)
        attrs = self._read_attributes()
        if attrs is None:
            self._db.dispose()
            raise RegistryError(
                f"no nightshift registry at {location!r}: create one with Registry.create(...) "
                "or `nightshift butler create`"
            )
        version = int(attrs["schema_version"])
        if version > SCHEMA_VERSION:
            self._db.dispose()
            raise RepositoryVersionError(
                f"repository schema version {version} is newer than this nightshift understands "
                f"({SCHEMA_VERSION}); upgrade nightshift"
            )
        if version < SCHEMA_VERSION:
            self._db.dispose()
            raise MigrationRequiredError(
                f"repository schema version {version} is older than this nightshift ({SCHEMA_VERSION}); "
                f"back it up, then run Registry.migrate({os.fspath(location)!r}) / `nightshift butler migrate`"
            )
        self._attributes = attrs
        self.universe = DimensionUniverse(json.loads(attrs["universe"]))
        # the managers over one shared storage; each receives the managers it calls
        self._storage = RegistryStorage(self._db, self.universe, schema)
        self._dataset_types = DatasetTypeManager(self._storage)
        self._collections = CollectionManager(self._storage, self._dataset_types)
        self._datasets = DatasetManager(self._storage, self._collections, self._dataset_types)
        self._dimensions = DimensionManager(self._storage)
        self._provenance = ProvenanceManager(self._storage, self._collections, self._datasets)
        self._operator_tables = OperatorTableManager(self._storage)
        self._closed = False

    @classmethod
    def create(
        cls,
        location: str | os.PathLike[str],
        *,
        universe: DimensionUniverse | None = None,
        schema: str | None = None,
        register_as: str | None = None,
        index: str | os.PathLike[str] | None = None,
    ) -> Registry:
        """Create an empty registry and open it.

        Parameters
        ----------
        location
            Repository root (SQLite file ``registry.sqlite3`` inside it), SQLite file or database URL.
        universe
            Dimension universe; :meth:`DimensionUniverse.default` by default.
        schema
            PostgreSQL schema to create the tables in (created if missing).
        register_as
            Also record the new repository under this name in the repository
            index (REQ-0024), so it can be opened with :meth:`from_name`.
        index
            Index file for ``register_as``; ``$NIGHTSHIFT_REPOSITORY_INDEX`` by default.

        Raises
        ------
        ConflictingDefinitionError
            If a registry already exists there (or the name is taken in the index).
        """
        if register_as is not None:
            idx = RepositoryIndex(index)
            taken = idx.entries().get(register_as)
            if taken is not None and taken["location"] != os.fspath(location):
                raise ConflictingDefinitionError(
                    f"repository name {register_as!r} already maps to {taken['location']!r}"
                )
        universe = universe or DimensionUniverse.default()
        db = Database(resolve_url(location), schema)
        try:
            tables = build_tables(universe, schema, db.engine.dialect.name)
            with db.transaction() as conn:
                if schema is not None:
                    conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
                if sa.inspect(conn).has_table("butler_attributes", schema=schema):
                    raise ConflictingDefinitionError(f"a registry already exists at {location!r}")
                tables.metadata.create_all(conn)
                conn.execute(
                    tables.attributes.insert(),
                    [
                        {"name": "schema_version", "value": str(SCHEMA_VERSION)},
                        {"name": "universe", "value": json.dumps(universe.to_config())},
                        {"name": "universe_version", "value": f"{universe.namespace}:{universe.version}"},
                        {"name": "created", "value": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                        {"name": "repository_id", "value": str(uuid.uuid4())},
                    ],
                )
        finally:
            db.dispose()
        if register_as is not None:
            RepositoryIndex(index).register(register_as, os.fspath(location), schema)
        return cls(location, schema=schema)

    @classmethod
    def from_name(cls, name: str, *, index: str | os.PathLike[str] | None = None) -> Registry:
        """Open a repository's registry by its name in the repository index (REQ-0024).

        The name may map to a registry (database URL + schema) or to a Butler
        repository directory, whose ``butler.yaml`` says where its registry is.
        """
        location, schema = RepositoryIndex(index).get(name)
        config = os.path.join(location, "butler.yaml")
        if "://" not in location and os.path.isfile(config):
            import yaml

            with open(config, encoding="utf-8") as stream:
                reg = (yaml.safe_load(stream) or {}).get("registry") or {}
            db = reg.get("db")
            if db is not None:
                return cls(db if "://" in str(db) else os.path.join(location, str(db)), schema=reg.get("schema"))
        return cls(location, schema=schema)

    @classmethod
    def exists(cls, location: str | os.PathLike[str], *, schema: str | None = None) -> bool:
        """Whether a registry is at ``location`` (and ``schema``), without opening it.

        Raises
        ------
        RegistryDatabaseError
            The database cannot be reached (so whether it exists is unknown).
        """
        url = resolve_url(location)
        if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///"):]):
            return False
        db = Database(url, schema)
        try:
            with db.reading() as conn:
                return sa.inspect(conn).has_table("butler_attributes", schema=schema)
        finally:
            db.dispose()

    @classmethod
    def remove(cls, location: str | os.PathLike[str], *, schema: str | None = None) -> bool:
        """Delete a registry and everything in it (REQ-0005); idempotent.

        On PostgreSQL the repository's ``schema`` is dropped with everything in
        it (the schema belongs to the repository: :meth:`create` made it);
        without a schema, the registry's tables are dropped. A SQLite registry
        file is deleted (with its WAL and shared-memory files). Nobody may have
        the registry open.

        Returns
        -------
        bool
            Whether there was a registry to delete.

        Raises
        ------
        RegistryDatabaseError
            The database refused or could not be reached; nothing was deleted.
        """
        url = resolve_url(location)
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///"):]
            found = os.path.exists(path)
            for suffix in ("-wal", "-shm", ""):  # the database file last: a failure leaves it detectable
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path + suffix)
            return found
        db = Database(url, schema)
        try:
            with db.transaction() as conn:
                if schema is not None:
                    found = bool(sa.inspect(conn).has_schema(schema))
                    conn.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
                    return found
                if not sa.inspect(conn).has_table("butler_attributes"):
                    return False
                attrs_t = sa.Table("butler_attributes", sa.MetaData(), autoload_with=conn)
                universe = conn.execute(sa.select(attrs_t.c.value).where(attrs_t.c.name == "universe")).scalar_one()
                operator = conn.execute(sa.select(attrs_t.c.name)
                                        .where(attrs_t.c.name.startswith(ATTRIBUTE_PREFIX, autoescape=True)))
                for (key,) in operator.all():  # the operator tables (REQ-0088) go too
                    op_table = sa.Table(f"op_{key[len(ATTRIBUTE_PREFIX):]}", sa.MetaData())
                    conn.execute(sa.schema.DropTable(op_table, if_exists=True))
                tables = build_tables(DimensionUniverse(json.loads(universe)), None, conn.dialect.name)
                tables.metadata.drop_all(conn, checkfirst=True)
                return True
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryDatabaseError(f"cannot delete the registry {location!r} (schema {schema!r}): {exc}") from exc
        finally:
            db.dispose()

    @classmethod
    def migrate(cls, location: str | os.PathLike[str], *, schema: str | None = None) -> list[str]:
        """Upgrade an older repository's schema to this code's version, explicitly (REQ-0003).

        Returns
        -------
        list of str
            One line per applied step (empty if already current).

        Raises
        ------
        RepositoryVersionError
            If the repository is newer than this code.
        """
        db = Database(resolve_url(location), schema)
        steps: list[str] = []
        try:
            with db.transaction() as conn:
                md = sa.MetaData(schema=schema)
                attrs_t = sa.Table("butler_attributes", md, autoload_with=conn)
                attrs: dict[str, str] = dict(conn.execute(sa.select(attrs_t.c.name, attrs_t.c.value)).tuples().all())
                version = int(attrs["schema_version"])
                if version > SCHEMA_VERSION:
                    raise RepositoryVersionError(
                        f"repository schema version {version} is newer than this code ({SCHEMA_VERSION})"
                    )
                tables = build_tables(DimensionUniverse(json.loads(attrs["universe"])), schema, conn.dialect.name)
                while version < SCHEMA_VERSION:
                    steps.append(MIGRATIONS[version](conn, tables))
                    version += 1
                conn.execute(
                    attrs_t.update().where(attrs_t.c.name == "schema_version").values(value=str(version))
                )
        finally:
            db.dispose()
        return steps

    def _read_attributes(self) -> dict[str, str] | None:
        t = sa.Table(
            "butler_attributes", sa.MetaData(schema=self._db.schema),
            sa.Column("name", sa.String(64), primary_key=True), sa.Column("value", sa.Text),
        )
        try:
            with self._db.reading() as conn:
                return dict(conn.execute(sa.select(t.c.name, t.c.value)).tuples().all())
        except sa.exc.ProgrammingError:  # PostgreSQL: relation does not exist
            return None
        except (sa.exc.OperationalError, RegistryError) as exc:
            text = str(getattr(exc, "orig", exc))
            if "no such table" in text:
                return None
            raise

    def close(self) -> None:
        """Release the database connections (idempotent).

        On SQLite this first runs ``PRAGMA optimize`` (sampled), which keeps the
        planner statistics fresh as datasets accumulate through small inserts.
        """
        if self._db.is_sqlite and not self._closed:
            try:
                with self._db.transaction() as conn:
                    conn.exec_driver_sql("PRAGMA analysis_limit = 400")
                    conn.exec_driver_sql("PRAGMA optimize")
            except RegistryError:
                pass  # best effort: never fail a close
        self._closed = True
        self._db.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the registry database (password hidden)."""
        return sa.make_url(self._db.url).render_as_string(hide_password=True)

    @property
    def is_postgresql(self) -> bool:
        return not self._db.is_sqlite

    def describe(self) -> dict[str, Any]:
        """The repository's identity and versions (REQ-0002).

        Returns
        -------
        dict
            ``schema_version``, ``universe_version``, ``repository_id``,
            ``created``, ``database`` (URL without password) and ``nightshift_version``.
        """
        from ... import __version__

        return {
            "schema_version": int(self._attributes["schema_version"]),
            "universe_version": self._attributes["universe_version"],
            "repository_id": self._attributes["repository_id"],
            "created": self._attributes["created"],
            "database": self.url,
            "nightshift_version": __version__,
        }

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several registry writes into one all-or-nothing transaction."""
        try:
            with self._db.transaction():
                yield
        except BaseException:
            # collections/dataset types read inside the rolled-back block may not exist any more
            self._collections.forget()
            self._dataset_types.forget()
            self._storage.forget()
            raise

    # served by the managers (see docs/architecture.md, "Butler and registry composition")
    register_collection = _Delegate("_collections", CollectionManager.register_collection)
    register_run = _Delegate("_collections", CollectionManager.register_run)
    get_collection_type = _Delegate("_collections", CollectionManager.get_collection_type)
    get_collection_doc = _Delegate("_collections", CollectionManager.get_collection_doc)
    set_collection_chain = _Delegate("_collections", CollectionManager.set_collection_chain)
    get_collection_chain = _Delegate("_collections", CollectionManager.get_collection_chain)
    resolve_collections = _Delegate("_collections", CollectionManager.resolve_collections)
    query_collections = _Delegate("_collections", CollectionManager.query_collections)
    associate = _Delegate("_collections", CollectionManager.associate)
    disassociate = _Delegate("_collections", CollectionManager.disassociate)
    certify = _Delegate("_collections", CollectionManager.certify)
    decertify = _Delegate("_collections", CollectionManager.decertify)

    register_dataset_type = _Delegate("_dataset_types", DatasetTypeManager.register_dataset_type)
    get_dataset_type = _Delegate("_dataset_types", DatasetTypeManager.get_dataset_type)
    query_dataset_types = _Delegate("_dataset_types", DatasetTypeManager.query_dataset_types)

    insert_datasets = _Delegate("_datasets", DatasetManager.insert_datasets)
    import_datasets = _Delegate("_datasets", DatasetManager.import_datasets)
    remove_datasets = _Delegate("_datasets", DatasetManager.remove_datasets)
    get_dataset = _Delegate("_datasets", DatasetManager.get_dataset)
    get_datasets = _Delegate("_datasets", DatasetManager.get_datasets)
    find_dataset = _Delegate("_datasets", DatasetManager.find_dataset)
    find_dataset_in_each = _Delegate("_datasets", DatasetManager.find_dataset_in_each)
    set_dataset_metadata = _Delegate("_datasets", DatasetManager.set_dataset_metadata)
    get_dataset_metadata = _Delegate("_datasets", DatasetManager.get_dataset_metadata)
    flag_datasets = _Delegate("_datasets", DatasetManager.flag_datasets)
    unflag_datasets = _Delegate("_datasets", DatasetManager.unflag_datasets)
    get_dataset_flags = _Delegate("_datasets", DatasetManager.get_dataset_flags)

    insert_dimension_records = _Delegate("_dimensions", DimensionManager.insert_dimension_records)
    insert_join_rows = _Delegate("_dimensions", DimensionManager.insert_join_rows)
    get_dimension_record = _Delegate("_dimensions", DimensionManager.get_dimension_record)
    query_dimension_records = _Delegate("_dimensions", DimensionManager.query_dimension_records)
    query_join_rows = _Delegate("_dimensions", DimensionManager.query_join_rows)
    register_skymap = _Delegate("_dimensions", DimensionManager.register_skymap)
    copy_dimension_records_from = _Delegate("_dimensions", DimensionManager.copy_dimension_records_from)

    register_operator_table = _Delegate("_operator_tables", OperatorTableManager.register_operator_table)
    get_operator_tables = _Delegate("_operator_tables", OperatorTableManager.get_operator_tables)
    insert_operator_rows = _Delegate("_operator_tables", OperatorTableManager.insert_operator_rows)
    query_operator_rows = _Delegate("_operator_tables", OperatorTableManager.query_operator_rows)
    drop_operator_table = _Delegate("_operator_tables", OperatorTableManager.drop_operator_table)

    def query_datasets(
        self,
        dataset_type: str | DatasetType,
        collections: str | Sequence[str],
        *,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        data_id: Mapping[str, int | str] | None = None,
        find_first: bool = True,
        time: Any = None,
        exclude_flags: Iterable[str] = (),
        exclude: ExclusionList | str | os.PathLike[str] | None = None,
        limit: int | None = None,
    ) -> list[DatasetRef]:
        """Datasets of one type in ``collections`` matching a ``where`` expression.

        Parameters
        ----------
        where
            Boolean expression over dimensions and their records, e.g.
            ``"visit IN (1..100) AND detector = 9 AND visit.seeing < 0.8"``.
        bind
            Values for names used in ``where`` (``"visit > min_visit"``).
        data_id
            Exact values for some dimensions (combined with ``where`` by AND).
        find_first
            Keep only the first match per data ID along the search path.
        time
            Validity time for CALIBRATION collections.
        exclude_flags
            Drop datasets carrying any of these data-quality flags (REQ-0089).
        exclude
            An :class:`ExclusionList` or the path of an exclusion file (REQ-0090).

        Raises
        ------
        QuerySyntaxError, QueryNameError, QueryTypeError
            For a bad ``where`` (syntax errors carry the position).
        """
        return _querying.query_datasets(
            self._storage, self._dataset_types, self._collections, dataset_type, collections,
            where=where, bind=bind or {}, data_id=data_id or {}, find_first=find_first,
            time=None if time is None else to_tai_ns(time), exclude_flags=tuple(exclude_flags),
            exclude=_exclusions(exclude), limit=limit,
        )

    def query_data_ids(
        self,
        dimensions: Iterable[str],
        *,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        data_id: Mapping[str, int | str] | None = None,
        datasets: Iterable[str | DatasetType] = (),
        collections: str | Sequence[str] | None = None,
        exclude_flags: Iterable[str] = (),
        exclude: ExclusionList | str | os.PathLike[str] | None = None,
    ) -> list[dict[str, int | str]]:
        """Data IDs over ``dimensions`` (plus what they require) that match ``where``.

        Dimensions are joined through their records (visit ↔ exposure through
        ``visit_definition``; visit/tract/patch through their sky regions).
        ``datasets`` restricts to data IDs for which each dataset type has a
        dataset in ``collections`` (not flagged with ``exclude_flags``).

        Returns
        -------
        list of dict
            Sorted data IDs (dimension name -> value).
        """
        return _querying.query_data_ids(
            self._storage, self._dataset_types, self._collections, dimensions,
            where=where, bind=bind or {}, data_id=data_id or {}, datasets=list(datasets), collections=collections,
            exclude_flags=tuple(exclude_flags), exclude=_exclusions(exclude),
        )

    def query_graph(
        self,
        dimensions: Iterable[str],
        inputs: Iterable[str | DatasetType],
        collections: str | Sequence[str],
        *,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        data_id: Mapping[str, int | str] | None = None,
        exclude_flags: Iterable[str] = (),
        exclude: ExclusionList | str | os.PathLike[str] | None = None,
    ) -> DatasetGraph:
        """The graph of data IDs and input datasets for pre-flight (REQ-0080, REQ-0083).

        Each data ID over ``dimensions`` that matches ``where`` and has every
        input is a node, linked to the first-found input datasets whose data
        IDs agree with it. The same call works on every registry database.
        """
        return _querying.query_graph(
            self._storage, self._dataset_types, self._collections, list(dimensions), list(inputs), collections,
            where=where, bind=bind or {}, data_id=data_id or {}, exclude_flags=tuple(exclude_flags),
            exclude=_exclusions(exclude),
        )

    def record_quantum(
        self,
        task_label: str,
        *,
        config_hash: str,
        code_version: str,
        data_id: Mapping[str, int | str],
        predicted_inputs: Iterable[DatasetRef],
        actual_inputs: Iterable[DatasetRef] | None,
        outputs: Iterable[DatasetRef],
        run: str | None = None,
        quantum_id: uuid.UUID | None = None,
        execution_id: str | None = None,
    ) -> uuid.UUID:
        """Record how outputs were made: predicted and actual inputs, task, config, code (REQ-0095).

        ``actual_inputs`` must be a subset of ``predicted_inputs`` (None: all
        predicted inputs were used). Each output has at most one producer.
        ``execution_id`` names the execution that wrote the outputs (up to 64
        characters), so a later execution can tell its own outputs from
        reused ones.

        Raises
        ------
        ProvenanceError
            Actual inputs not predicted, unknown datasets, an output already produced elsewhere, or an
            ``execution_id`` longer than 64 characters.
        """
        return self._provenance.record(
            task_label, config_hash=config_hash, code_version=code_version, data_id=data_id,
            predicted=list(predicted_inputs), actual=None if actual_inputs is None else list(actual_inputs),
            outputs=list(outputs), run=run, quantum_id=quantum_id, execution_id=execution_id,
        )

    def get_provenance(self, ref: DatasetRef) -> QuantumProvenance | None:
        """The quantum that produced ``ref`` (None for raw/ingested data)."""
        return self._provenance.producer(ref.id)

    def get_provenances(self, refs: Iterable[DatasetRef]) -> list[QuantumProvenance]:
        """The quanta that produced any of ``refs``, each once (bulk form of :meth:`get_provenance`)."""
        return self._provenance.producers([r.id for r in refs])

    def query_ancestors(self, ref: DatasetRef, *, actual_only: bool = True, roots_only: bool = False) -> list[
        DatasetRef
    ]:
        """Every dataset ``ref`` was (transitively) made from (REQ-0093).

        ``roots_only`` keeps those no quantum produced (raws), whose data IDs
        are the raw data IDs behind ``ref``.
        """
        return self._provenance.ancestors(ref.id, actual_only=actual_only, roots_only=roots_only)

    def query_descendants(self, ref: DatasetRef, *, actual_only: bool = True,
                          dataset_type: str | None = None) -> list[DatasetRef]:
        """Every dataset (transitively) made using ``ref`` (REQ-0094: "which coadds used this bad raw?")."""
        out = self._provenance.descendants(ref.id, actual_only=actual_only)
        if dataset_type is not None:
            out = [r for r in out if r.dataset_type.name == dataset_type]
        return out

    def get_dimension_names(self) -> tuple[str, ...]:
        """All dimension names, in dependency order (REQ-0092)."""
        return self.universe.names

    def get_record_fields(self, element: str) -> tuple[str, ...]:
        """The record field names of one dimension, usable as ``element.field`` in ``where`` (REQ-0092)."""
        return self.universe[element].record_fields

    def complete(self, text: str) -> list[str]:
        """Tab completions for a partial name: dataset types, collections, dimensions, ``element.field`` (REQ-0092)."""
        operators = {t.name: t for t in self.get_operator_tables()}
        if "." in text:
            head, _, tail = text.partition(".")
            if head in operators and head not in self.universe:
                return [f"{head}.{c}" for c in operators[head].columns if c.startswith(tail)]
            if head not in self.universe:
                return []
            return [f"{head}.{f}" for f in self.get_record_fields(head) if f.startswith(tail)]
        names = [*self.universe.names, *(d.name for d in self.query_dataset_types()), *self.query_collections(),
                 *operators]
        return sorted({n for n in names if n.startswith(text)})

def _exclusions(value: ExclusionList | str | os.PathLike[str] | None) -> ExclusionList | None:
    if value is None or isinstance(value, ExclusionList):
        return value
    return ExclusionList.from_file(value)
