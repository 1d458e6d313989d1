"""The synchronous Butler: a registry (what exists) joined to a datastore (the bytes).

::

    butler = Butler.create("/repo")                       # SQLite registry + POSIX datastore
    butler = Butler("/repo", collections=["HSC/runs/RC2"], run="u/me/test")
    ref = butler.put(exposure, "calexp", {"instrument": "HSC", "detector": 16, ...})
    exp = butler.get("calexp", data_id)
    wcs = butler.get("calexp.wcs", data_id)
    cut = butler.get("calexp", data_id, parameters={"bbox": Box(0, 0, 50, 50)})

Repository operations (export/import, subsets, merging, staging, repository
removal) are plain functions of a Butler in ``_repository_ops.py``; the class
exposes them as methods by assignment (no mixin).

A repository is a directory holding ``butler.yaml`` (registry location and
datastore configuration) and, by default, the SQLite registry and the POSIX
datastore root. Every path in ``butler.yaml`` is relative to the repository
directory, so a repository is relocated by moving it (DMS-MWBT-REQ-0001).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import _repository_ops as _ops
from ._dataset_ref import DatasetRef
from ._dataset_type import DatasetType
from ._read_hooks import read_hooks
from ._storage_class import StorageClassFactory
from .datastores import (
    DatasetNotFoundError,
    Datastore,
    DatastoreError,
    DatastoreTrash,
    datastore_from_config,
    removing_on_failure,
    restore_trash,
)
from .registry import INDEX_ENV, MissingCollectionError, Registry, RepositoryIndex

if TYPE_CHECKING:
    from pydantic import SecretStr

    from ._file_provenance import FileProvenance
    from .external import Selections
    from .remote import RemoteButler

__all__ = ["Butler", "ButlerConfigError"]

CONFIG_NAME = "butler.yaml"
DEFAULT_DATASTORE: dict[str, Any] = {"cls": "posix", "name": "posix", "root": "datastore"}


class ButlerConfigError(DatastoreError, ValueError):
    """``butler.yaml`` is missing or invalid."""

    error_type = "butler_config"


class Butler:
    """Read and write datasets of one repository.

    Parameters
    ----------
    repo : str or os.PathLike
        Repository directory (holding ``butler.yaml``).
    collections : str or sequence of str, optional
        Default search path for :meth:`get`.
    run : str, optional
        Default RUN collection for :meth:`put` (created on first put).
    datastore : Datastore, optional
        Use this datastore instead of the configured one.
    registry : Registry, optional
        Use this registry instead of the configured one.
    """

    def __init__(
        self,
        repo: str | os.PathLike[str],
        collections: str | Sequence[str] | None = None,
        run: str | None = None,
        *,
        datastore: Datastore | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.root = Path(repo).absolute()
        config_path = self.root / CONFIG_NAME
        try:
            self.config: dict[str, Any] = yaml.safe_load(config_path.read_text()) or {}
        except FileNotFoundError:
            raise ButlerConfigError(f"{config_path} not found: create a repository with Butler.create()") from None
        except yaml.YAMLError as exc:
            raise ButlerConfigError(f"{config_path} is not valid YAML: {exc}") from exc
        self.storage_classes = StorageClassFactory(self.config.get("storage_classes"))
        self.registry = registry if registry is not None else Registry(
            self._registry_location(self.config), schema=(self.config.get("registry") or {}).get("schema")
        )
        self.datastore = datastore if datastore is not None else datastore_from_config(
            self.config.get("datastore", DEFAULT_DATASTORE), base=self.root, storage_classes=self.storage_classes
        )
        if isinstance(collections, str):
            collections = [collections]
        self.run = run
        self.collections: list[str] = list(collections) if collections is not None else ([run] if run else [])
        self._known_runs: set[str] = set()

    def _registry_location(self, config: Mapping[str, Any]) -> str:
        db = (config.get("registry") or {}).get("db")
        if db is None:
            return str(self.root)
        return db if "://" in str(db) else str(self.root / db)

    @classmethod
    def create(
        cls,
        repo: str | os.PathLike[str],
        datastore: Mapping[str, Any] | None = None,
        registry_db: str | None = None,
        storage_classes: Mapping[str, Any] | None = None,
        registry_schema: str | None = None,
        *,
        name: str | None = None,
        index: str | os.PathLike[str] | None = None,
        register: bool = True,
    ) -> Butler:
        """Create a repository: ``butler.yaml``, the registry and the datastore root.

        If a repository index is configured (``index`` or
        ``$NIGHTSHIFT_REPOSITORY_INDEX``), the new repository is registered in
        it as it is created (DMS-MWBT-REQ-0024), so it can be opened with
        :meth:`from_name` wherever it later moves.

        Parameters
        ----------
        repo : str or os.PathLike
            New repository directory.
        datastore : mapping, optional
            Datastore configuration (see ``datastores._config``); POSIX under
            ``<repo>/datastore`` by default.
        registry_db : str, optional
            Database URL (PostgreSQL); a SQLite file inside ``repo`` by default.
        storage_classes : mapping, optional
            Extra storage class definitions.
        registry_schema : str, optional
            PostgreSQL schema holding this repository's tables.
        name : str, optional
            Name in the repository index; the directory's name by default.
        index : str or os.PathLike, optional
            Repository index file; ``$NIGHTSHIFT_REPOSITORY_INDEX`` by default.
        register : bool
            False for a scratch repository that should not be listed (e.g. a
            job's node-local staging area).

        Raises
        ------
        ButlerConfigError
            A repository exists there already, or ``name`` was given but no
            repository index is configured.
        ConflictingDefinitionError
            ``name`` already names another repository in the index (checked
            before anything is created).
        """
        root = Path(repo).absolute()
        idx = RepositoryIndex.configured(index) if register else None
        if idx is None and name is not None:
            raise ButlerConfigError(
                f"cannot register {root} as {name!r}: no repository index (pass index= or set ${INDEX_ENV})"
            )
        if idx is not None:
            name = name or root.name
            idx.check_free(name, str(root))
        root.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "registry": {"db": registry_db, "schema": registry_schema},
            "datastore": dict(datastore or DEFAULT_DATASTORE),
        }
        if storage_classes:
            config["storage_classes"] = dict(storage_classes)
        if (root / CONFIG_NAME).exists():
            raise ButlerConfigError(f"a repository already exists at {root}")
        (root / CONFIG_NAME).write_text(yaml.safe_dump(config, sort_keys=False))
        Registry.create(registry_db if registry_db else str(root), schema=registry_schema).close()
        if idx is not None and name is not None:
            idx.register(name, str(root))
        return cls(root)

    @classmethod
    def from_name(
        cls,
        name: str,
        collections: str | Sequence[str] | None = None,
        run: str | None = None,
        *,
        index: str | os.PathLike[str] | None = None,
    ) -> Butler:
        """Open a repository by its name in the repository index (DMS-MWBT-REQ-0024).

        Raises
        ------
        MissingCollectionError
            The name is not in the index.
        ButlerConfigError
            The name maps to a registry database, not to a repository directory
            (open it with :meth:`Registry.from_name`).
        """
        location, schema = RepositoryIndex(index).get(name)
        if "://" in location or schema is not None:
            raise ButlerConfigError(
                f"repository name {name!r} maps to the registry {location!r} (schema {schema!r}), not to a "
                "repository directory: open it with Registry.from_name"
            )
        return cls(location, collections=collections, run=run)

    @classmethod
    def from_url(
        cls,
        url: str,
        token: str | SecretStr | None = None,
        collections: str | Sequence[str] | None = None,
    ) -> RemoteButler:
        """A read-only butler over a registry service's HTTP API, for clients without database access (REQ-0040).

        The returned :class:`~nightshift.butler.remote.RemoteButler` has the
        read API of a butler (``registry.query_datasets``/``query_data_ids``/
        ``query_dimension_records``/``query_collections``, :meth:`find`,
        :meth:`get` with components and ``bbox`` cutouts read by byte ranges,
        :meth:`get_uri`, :meth:`exists`).

        Parameters
        ----------
        url : str
            ``http(s)://host:port`` of the registry service.
        token : str or SecretStr, optional
            Bearer token; ``$NIGHTSHIFT_BUTLER_TOKEN`` by default.
        collections : str or sequence of str, optional
            Default search path.

        Raises
        ------
        RemoteAuthenticationError
            The service refused the token.
        """
        from .remote import RemoteButler

        return RemoteButler(url, token=token, collections=collections)

    def publish_config(self) -> str:
        """Copy ``butler.yaml`` into the object store next to the datasets (DMS-MWBT-REQ-0019).

        A repository whose registry is on a database server and whose bytes
        are in an object store needs nothing from this machine but its
        configuration; once published, any machine opens it with
        :meth:`attach`. A password in the registry URL is not published
        (credentials come from each machine's environment, e.g. ``PGPASSWORD``).

        Returns
        -------
        str
            The URI of the repository to give :meth:`attach`.

        Raises
        ------
        ButlerConfigError
            The registry is a local SQLite file, or the datastore is not an
            object store: other machines could not use the repository.
        """
        if not self.registry.is_postgresql:
            raise ButlerConfigError(
                f"{self.root}: the registry is a local SQLite file, which other machines cannot use; create the "
                "repository with registry_db='postgresql://...' to share it"
            )
        backend = getattr(self.datastore, "backend", None)
        if backend is None or not getattr(backend, "remote", False):
            raise ButlerConfigError(
                f"{self.root}: datastore {self.datastore.name!r} is not in an object store, so other machines "
                "cannot reach its files; use an s3 datastore to share the repository"
            )
        config = dict(self.config)
        registry = dict(config.get("registry") or {})
        import sqlalchemy as sa

        registry["db"] = sa.make_url(str(registry["db"])).set(password=None).render_as_string(hide_password=False)
        config["registry"] = registry
        backend.put_bytes(CONFIG_NAME, yaml.safe_dump(config, sort_keys=False).encode())
        return str(backend.uri("")).rstrip("/")

    @classmethod
    def attach(
        cls,
        uri: str,
        local_dir: str | os.PathLike[str],
        collections: str | Sequence[str] | None = None,
        run: str | None = None,
        *,
        endpoint_url: str | None = None,
    ) -> Butler:
        """Open, from any machine, a repository whose configuration was published (DMS-MWBT-REQ-0019).

        Parameters
        ----------
        uri : str
            ``s3://bucket/prefix`` of the repository (what
            :meth:`publish_config` returned).
        local_dir : str or os.PathLike
            A local directory for this machine's handle: the configuration
            copy and the datastore cache; nothing else is kept there.
        collections, run
            As for :class:`Butler`.
        endpoint_url : str, optional
            S3 endpoint; ``$S3_ENDPOINT`` by default.

        Raises
        ------
        ButlerConfigError
            Not an ``s3://`` URI, no published configuration there, or
            ``local_dir`` already holds another repository's configuration.
        """
        if not uri.startswith("s3://"):
            raise ButlerConfigError(f"cannot attach {uri!r}: give the s3://bucket/prefix of a published repository")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        prefix = prefix.strip("/")
        if prefix.endswith(CONFIG_NAME):
            prefix = prefix[: -len(CONFIG_NAME)].strip("/")
        from .datastores import S3Backend

        data = S3Backend(bucket, prefix, endpoint_url).get_bytes(CONFIG_NAME)
        if data is None:
            raise ButlerConfigError(
                f"no {CONFIG_NAME} at {uri}: publish it from the uploading machine with Butler.publish_config()"
            )
        root = Path(local_dir).absolute()
        target = root / CONFIG_NAME
        if target.exists() and target.read_bytes() != data:
            raise ButlerConfigError(
                f"{root} already holds another repository's {CONFIG_NAME}; choose another directory"
            )
        root.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return cls(root, collections=collections, run=run)

    def close(self) -> None:
        """Release the registry's database connections (idempotent)."""
        self.registry.close()

    def __enter__(self) -> Butler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------------
    def _dataset_type(self, dataset_type: str | DatasetType) -> tuple[DatasetType, str | None]:
        name = dataset_type.name if isinstance(dataset_type, DatasetType) else dataset_type
        parent, _, component = name.partition(".")
        return self.registry.get_dataset_type(parent), (component or None)

    def ensure_run(self, run: str) -> None:
        """Register the RUN collection ``run`` unless this butler already did."""
        if run not in self._known_runs:
            self.registry.register_run(run)
            self._known_runs.add(run)

    def register_dataset_type(self, dataset_type: DatasetType) -> bool:
        """Register a dataset type (checking that its storage class is known)."""
        self.storage_classes.get(dataset_type.storage_class)
        return self.registry.register_dataset_type(dataset_type)

    # -- put / get -------------------------------------------------------------------------------
    def put(
        self,
        obj: Any,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, int | str] | None = None,
        *,
        run: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        provenance: FileProvenance | None = None,
        **kwargs: int | str,
    ) -> DatasetRef:
        """Store ``obj``; returns its full, resolved :class:`DatasetRef` (DMS-MWBT-REQ-0075).

        Blocks until the dataset is durably written or the put has failed
        (DMS-MWBT-REQ-0073). All or nothing (DMS-MWBT-REQ-0076): the registry
        row is inserted in a transaction that commits only after the datastore
        write succeeded; if the commit fails, the written file is removed.

        The metadata fields the dataset type declares (``DatasetType(metadata=
        {"psf_fwhm": "float"})``) are recorded in the registry in the same
        transaction (DMS-MWBT-REQ-0091), so :meth:`get_metadata` answers
        without reading the file. Each value comes from ``metadata`` if given
        there, else from the object: a mapping's key, or the key of its
        ``metadata`` (e.g. an exposure's FITS header, case-insensitive) or
        ``meta`` (an astropy table's) mapping. Declared fields found nowhere
        are not recorded.

        Parameters
        ----------
        metadata : mapping, optional
            Values of declared metadata fields, overriding what the object holds.
        provenance : FileProvenance, optional
            Parents and raw ancestors to write into the file (or its sidecar),
            as the pipeline framework does for quantum outputs (DMS-MWBT-REQ-0096).

        Raises
        ------
        MissingDatasetTypeError, DataIdError, ConflictingDefinitionError
            From the registry (the dataset already exists: no clobber, REQ-0074).
        DatasetMetadataError
            A metadata field is not declared by the dataset type, or its value
            has the wrong type (nothing is stored).
        StorageClassError, FormatterError, DatastoreError
            From the datastore.
        """
        run = run or self.run
        if run is None:
            raise ValueError("put needs a run: Butler(repo, run=...) or put(..., run=...)")
        dt, component = self._dataset_type(dataset_type)
        if component is not None:
            raise ValueError(f"cannot put component {dataset_type!r}: put the composite {dt.name!r}")
        full_id = {**(data_id or {}), **kwargs}
        values = _declared_metadata(dt, obj, metadata)
        self.ensure_run(run)
        with removing_on_failure(self.datastore) as written, self.registry.transaction():
            (ref,) = self.registry.insert_datasets(dt, [full_id], run, metadata=[values] if values else None)
            self.datastore.put(obj, ref, provenance)
            written.append(ref)  # removed again if the commit fails
        return ref

    def put_many(
        self,
        items: Iterable[tuple[Any, Mapping[str, int | str]]],
        dataset_type: str | DatasetType,
        *,
        run: str | None = None,
    ) -> list[DatasetRef]:
        """Store many datasets of one type in one registry transaction, all or nothing.

        On POSIX the batch's files and directories are fsync'd together at the
        end of the batch, before the registry commits, rather than each file
        as it is written. Declared metadata is taken from each object as in
        :meth:`put`.

        Parameters
        ----------
        items : iterable of (object, data ID)
            What to store.
        dataset_type : str or DatasetType
            Their dataset type.
        run : str, optional
            RUN collection (the butler's by default).
        """
        run = run or self.run
        if run is None:
            raise ValueError("put_many needs a run")
        dt, component = self._dataset_type(dataset_type)
        if component is not None:
            raise ValueError(f"cannot put component {dataset_type!r}")
        items = list(items)
        values = [_declared_metadata(dt, obj, None) for obj, _ in items]
        self.ensure_run(run)
        with removing_on_failure(self.datastore) as written, self.registry.transaction():
            refs = self.registry.insert_datasets(dt, [d for _, d in items], run,
                                                 metadata=values if any(values) else None)
            self.datastore.put_many(zip([o for o, _ in items], refs, strict=True))
            written.extend(refs)
        return refs

    def ingest(
        self,
        path: str | os.PathLike[str],
        dataset_type: str | DatasetType,
        data_id: Mapping[str, int | str] | None = None,
        *,
        run: str | None = None,
        transfer: str | None = "copy",
        **kwargs: int | str,
    ) -> DatasetRef:
        """Register an existing file, e.g. an external (non-survey) catalog, as a dataset.

        All or nothing like :meth:`put`; afterwards ``get`` serves it like any
        other dataset (DMS-MWBT-REQ-0046, DMS-MWBT-REQ-0047).

        Parameters
        ----------
        transfer : {"copy", "move", "symlink", "direct", None}
            ``None`` or ``"direct"`` ingests in place (DMS-MWBT-REQ-0048): the
            bytes stay where the provider put them and are never copied; the
            POSIX datastore keeps a link to the file and its record (size,
            checksum, so a changed file is detected on read). Removing the
            dataset removes the link, never the provider's file.

        Raises
        ------
        FormatterError
            The configured formatter cannot read the file.
        DatastoreError
            The datastore cannot ingest files (e.g. in-memory), or cannot
            ingest in place (object stores).
        """
        run = run or self.run
        if run is None:
            raise ValueError("ingest needs a run")
        dt, component = self._dataset_type(dataset_type)
        if component is not None:
            raise ValueError("cannot ingest a component")
        ingest = getattr(self.datastore, "ingest", None)
        if ingest is None:
            raise DatastoreError(f"datastore {self.datastore.name!r} cannot ingest files")
        mode = "symlink" if transfer is None or transfer == "direct" else transfer
        if mode != transfer and getattr(getattr(self.datastore, "backend", None), "remote", True):
            raise DatastoreError(
                f"datastore {self.datastore.name!r} cannot ingest in place (transfer=None/'direct' needs a "
                "POSIX datastore that can link to the file); use transfer='copy'"
            )
        self.ensure_run(run)
        with removing_on_failure(self.datastore) as written, self.registry.transaction():
            (ref,) = self.registry.insert_datasets(dt, [{**(data_id or {}), **kwargs}], run)
            ingest(path, ref, mode)
            written.append(ref)
        return ref

    def find(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, int | str] | None = None,
        *,
        collections: str | Sequence[str] | None = None,
        **kwargs: int | str,
    ) -> DatasetRef:
        """The resolved ref of a dataset (a component ref for ``calexp.wcs``).

        Raises
        ------
        DatasetNotFoundError
            No such dataset in the collections.
        """
        dt, component = self._dataset_type(dataset_type)
        search = [collections] if isinstance(collections, str) else list(collections or self.collections)
        if not search:
            raise ValueError("no collections to search: Butler(repo, collections=...) or get(..., collections=...)")
        full_id = {**(data_id or {}), **kwargs}
        try:
            ref = self.registry.find_dataset(dt, full_id, search)
        except MissingCollectionError as exc:
            raise DatasetNotFoundError(f"no {dt.name} with data ID {full_id}: {exc}") from exc
        if ref is None:
            raise DatasetNotFoundError(f"no {dt.name} with data ID {full_id} in collections {search}")
        return ref.make_component_ref(component) if component else ref

    def get(
        self,
        dataset_type: str | DatasetType | DatasetRef,
        data_id: Mapping[str, int | str] | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
        collections: str | Sequence[str] | None = None,
        storage_class: str | None = None,
        component_overrides: Mapping[str, DatasetRef] | None = None,
        component_updates: Mapping[str, DatasetRef] | None = None,
        **kwargs: int | str,
    ) -> Any:
        """Read a dataset, a component (``"calexp.wcs"``) or a subset (``parameters``).

        Parameters
        ----------
        dataset_type : str, DatasetType or DatasetRef
            ``"calexp"``, ``"calexp.wcs"``, or a resolved ref.
        data_id : mapping, optional
            Data ID (plus ``**kwargs``).
        parameters : mapping, optional
            E.g. ``{"bbox": Box(...)}`` read without loading the rest (REQ-0033);
            ``{"selection": name}`` reads a named selection of a catalog
            (REQ-0056, :attr:`selections`); for a query dataset (storage
            class ``QueryDefinition``) the extra bind values (REQ-0057).
            Both are served by read hooks that ``nightshift.butler.external``
            registers (see :data:`~nightshift.butler.read_hooks`).
        collections : str or sequence, optional
            Search path (defaults to the butler's).
        storage_class : str, optional
            Read the same bytes as another Python type (REQ-0025). A query
            dataset reads as its result (``AstropyTable`` by default,
            ``ArrowTable``) or, with ``QueryDefinition``, its definition.
        component_overrides : mapping of str to DatasetRef, optional
            Replace components of the composite with separately stored
            datasets, e.g. a newer WCS (DMS-MWBT-REQ-0051).
        component_updates : mapping of str to DatasetRef, optional
            Merge separately stored values into a mapping-like component, e.g.
            header corrections into ``metadata``: the in-memory object is
            assembled from several sources (DMS-MWBT-REQ-0035). An update may
            be a query dataset (a database row, REQ-0057) returning one row.

        Raises
        ------
        DatasetNotFoundError
            Not in the registry or not in the datastore.
        """
        if isinstance(dataset_type, DatasetRef):
            ref = dataset_type
        else:
            ref = self.find(dataset_type, data_id, collections=collections, **kwargs)
        if not (component_overrides or component_updates):
            hook = read_hooks.find(ref, parameters)
            if hook is not None:  # a plug-in serves this read (e.g. a named selection, a query dataset)
                return hook(self, ref, parameters, storage_class)
        obj = self.datastore.get(ref, parameters, storage_class)
        if component_overrides or component_updates:
            delegate = self.storage_classes.get(ref.dataset_type.storage_class).delegate()
            for component, override in (component_overrides or {}).items():
                obj = delegate.set_component(obj, component, self.datastore.get(override))
            for component, update in (component_updates or {}).items():
                current = delegate.get_component(obj, component)
                merged = current.copy()
                merged.update(_as_mapping(self.get(update), update))
                obj = delegate.set_component(obj, component, merged)
        return obj

    @property
    def selections(self) -> Selections:
        """Named selections on catalogs (``selections:`` of ``butler.yaml`` plus registered ones, REQ-0056)."""
        found = self.__dict__.get("_selections")
        if found is None:
            from .external._selection import Selections

            found = self.__dict__["_selections"] = Selections(self.config.get("selections"), self.root / CONFIG_NAME)
        return found

    def get_metadata(self, dataset_type: str | DatasetType | DatasetRef,
                     data_id: Mapping[str, int | str] | None = None, *,
                     collections: str | Sequence[str] | None = None, **kwargs: int | str) -> dict[str, Any]:
        """The metadata recorded for a dataset at put time, from the registry only (DMS-MWBT-REQ-0091).

        The dataset's file is never opened: this works when the bytes are
        remote, slow, or gone.

        Raises
        ------
        DatasetNotFoundError
            No such dataset in the collections.
        """
        ref = dataset_type if isinstance(dataset_type, DatasetRef) else self.find(
            dataset_type, data_id, collections=collections, **kwargs)
        return self.registry.get_dataset_metadata(ref)

    def exists(self, dataset_type: str | DatasetType | DatasetRef, data_id: Mapping[str, int | str] | None = None,
               *, collections: str | Sequence[str] | None = None, **kwargs: int | str) -> bool:
        """Whether the dataset is in the registry *and* its bytes are in the datastore."""
        try:
            ref = dataset_type if isinstance(dataset_type, DatasetRef) else self.find(
                dataset_type, data_id, collections=collections, **kwargs)
        except DatasetNotFoundError:
            return False
        return self.datastore.exists(ref)

    def get_uri(self, dataset_type: str | DatasetType | DatasetRef, data_id: Mapping[str, int | str] | None = None,
                **kwargs: Any) -> str | None:
        """Where the dataset's file is (predictable from the file templates, REQ-0066)."""
        ref = dataset_type if isinstance(dataset_type, DatasetRef) else self.find(dataset_type, data_id, **kwargs)
        return self.datastore.get_uri(ref)

    def unstore(self, ref: DatasetRef) -> None:
        """Delete a dataset's bytes from the datastore only, if the storage permits (REQ-0004).

        The registry row stays (``exists`` becomes False); :meth:`remove_datasets`
        removes both.
        """
        self.datastore.remove(ref)

    def remove_datasets(self, refs: Iterable[DatasetRef], *, force: bool = False) -> int:
        """Delete datasets: registry rows and bytes both, or neither (DMS-MWBT-REQ-0004).

        Steps: (1) in one registry transaction, remove the rows (with their
        collection memberships, certifications, metadata, flags and provenance
        links; see :meth:`Registry.remove_datasets`); (2) still inside it, move
        the bytes aside in the datastore (:meth:`Datastore.trash`), which checks
        the storage permissions of every file first; (3) commit; (4) delete
        the moved bytes. A failure in (1)-(3) rolls the rows back and moves the
        bytes back. Datasets whose bytes were already unstored lose their rows.

        Parameters
        ----------
        refs : iterable of DatasetRef
            Resolved refs, e.g. from ``registry.query_datasets``.
        force : bool
            Also remove datasets that provenance lists as inputs of outputs that
            stay (the outputs lose those links).

        Returns
        -------
        int
            Number of datasets removed.

        Raises
        ------
        MissingDatasetError
            A dataset is not in the registry.
        DatasetInUseError
            A dataset is an input of an existing output (and ``force`` is False).
        DatastorePermissionError
            The storage does not let this user delete a file.
        DatastoreError
            The datastore failed. In every case nothing was removed.
        """
        refs = list(dict.fromkeys(refs))
        if not refs:
            return 0
        trash: DatastoreTrash | None = None
        try:
            with self.registry.transaction():
                removed = self.registry.remove_datasets(refs, force=force)  # refusals come before any file moves
                trash = self.datastore.trash(refs)
        except BaseException as exc:
            restore_trash(trash, exc)
            raise
        assert trash is not None
        trash.empty()
        return removed

    # -- repository operations: plain functions of a Butler (``_repository_ops``), exposed as methods --
    export_file = _ops.export_file
    retrieve_files = _ops.retrieve_files
    all_datasets = _ops.all_datasets
    export_subset = _ops.export_subset
    import_from = _ops.import_from
    stage_in = _ops.stage_in
    stage_out = _ops.stage_out
    remove_repository = staticmethod(_ops.remove_repository)

    def dump_config(self) -> str:
        """The active configuration as YAML (DMS-MWBT-REQ-0026)."""
        return yaml.safe_dump(
            {"root": str(self.root), "registry": self.registry.describe(), "datastore": self.datastore.to_dict(),
             "storage_classes": self.storage_classes.to_dict()["storage_classes"]},
            sort_keys=False,
        )


def _declared_metadata(dt: DatasetType, obj: Any, given: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The values of ``dt``'s declared metadata fields: from ``given``, else found in ``obj`` (REQ-0091)."""
    found: dict[str, Any] = {}
    sources = [obj if isinstance(obj, Mapping) else None, getattr(obj, "metadata", None), getattr(obj, "meta", None)]
    for name in dt.metadata:
        for source in sources:
            if source is None or not hasattr(source, "__contains__") or not hasattr(source, "__getitem__"):
                continue
            try:
                if name not in source:
                    continue
                value = source[name]
                found[name] = value.item() if hasattr(value, "item") and callable(value.item) else value
            except (TypeError, KeyError, ValueError):  # not a mapping after all, or not a scalar
                continue
            break
    found.update(given or {})  # undeclared keys are refused by the registry with the declared list
    return found or None


def _as_mapping(value: Any, ref: DatasetRef) -> Mapping[str, Any]:
    """A component update as key → value: a mapping or header as is; a one-row table (e.g. the
    result of a query dataset, DMS-MWBT-REQ-0035/0057) as column → value."""
    if hasattr(value, "colnames") or hasattr(value, "column_names"):
        rows = value.to_pylist() if hasattr(value, "to_pylist") else [dict(zip(value.colnames, r, strict=True))
                                                                     for r in value]
        if len(rows) != 1:
            raise ValueError(f"component update {ref.dataset_type.name} {dict(ref.data_id)} gave {len(rows)} rows; "
                             "a table used as an update must have exactly one row")
        return {k: v.item() if hasattr(v, "item") else v for k, v in rows[0].items()}
    mapping: Mapping[str, Any] = value  # a mapping or a FITS header
    return mapping
