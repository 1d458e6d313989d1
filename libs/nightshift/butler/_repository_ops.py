"""Repository operations of the :class:`~nightshift.butler.Butler`: moving data between repositories.

Export and import (with or without file transfer), subsets as copies or views,
merging with a conflict strategy, staging to and from node-local scratch,
combined single-file export, and removing a repository while garbage-collecting
only what no other known repository uses. Each is a plain function whose
first argument is the :class:`~nightshift.butler.Butler` it works on (and which
reaches it only through its public attributes); ``Butler`` exposes them as its
methods by assignment (``Butler.import_from = import_from``), so
``butler.import_from(other)`` and ``import_from(butler, other)`` are the same
call. ``_butler.py`` keeps the core put/get/find.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._dataset_ref import DatasetRef
from ._file_provenance import SIDECAR_SUFFIX
from .datastores import (
    DatastorePermissionError,
    DatastoreTrash,
    TransferMode,
    removing_on_failure,
    restore_trash,
    transfer_dataset,
)
from .registry import CollectionType, ConflictingDefinitionError

if TYPE_CHECKING:
    from ._butler import Butler

__all__ = [
    "all_datasets", "export_file", "export_subset", "import_from", "progress", "remove_repository",
    "retrieve_files", "stage_in", "stage_out",
]


def progress(items: Sequence[Any], what: str) -> Iterable[Any]:
    """Iterate with a rich progress bar for long transfers on a terminal."""
    if len(items) < 100 or not sys.stderr.isatty():
        return items
    from rich.progress import track

    return track(items, description=what, transient=True)


def export_file(
    butler: Butler,
    ref: DatasetRef,
    directory: str | os.PathLike[str],
    *,
    component_overrides: Mapping[str, DatasetRef] | None = None,
    component_updates: Mapping[str, DatasetRef] | None = None,
) -> Path:
    """Write one dataset, with its overrides combined in, as a single file (DMS-MWBT-REQ-0077).

    The file is named :meth:`FileTemplates.file_name` plus the format's
    extension, as by :meth:`retrieve_files`, so its name does not depend
    on how it was obtained (DMS-MWBT-REQ-0078).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from .formatters import FormatterFactory

    obj = butler.get(ref, component_overrides=component_overrides, component_updates=component_updates)
    factory = getattr(butler.datastore, "formatters", None) or FormatterFactory()
    spec = factory.spec_for(ref.dataset_type)
    formatter = factory.create(spec)
    templates = getattr(butler.datastore, "templates", None)
    if templates is None:
        from ._file_templates import FileTemplates

        templates = FileTemplates()
    dest = Path(directory) / (templates.file_name(ref) + formatter.extension)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        formatter.write(obj, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def retrieve_files(butler: Butler, refs: Iterable[DatasetRef], directory: str | os.PathLike[str]) -> list[Path]:
    """Copy the stored files of datasets, byte for byte, into a local directory (DMS-MWBT-REQ-0078).

    Each file is named :meth:`FileTemplates.file_name` plus its stored
    extension: the same name whatever the storage (POSIX, S3) and the same
    as :meth:`export_file` gives, unique across the repository. Checksums
    are verified on the way. A ``<file>.provenance.json`` sidecar (the
    provenance of a format without metadata) comes along.

    Returns
    -------
    list of pathlib.Path
        The written files, in the order of ``refs``.

    Raises
    ------
    DatastoreError
        The datastore keeps no files (in-memory, REST publishing).
    """
    export = getattr(butler.datastore, "export_file", None)
    templates = getattr(butler.datastore, "templates", None)
    record = getattr(butler.datastore, "record", None)
    if export is None or templates is None or record is None:
        from .datastores import DatastoreError

        raise DatastoreError(f"datastore {butler.datastore.name!r} keeps no files to retrieve")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for ref in refs:
        dest = out / (templates.file_name(ref) + Path(record(ref).path).suffix)
        tmp = dest.with_name(f".{dest.name}.part")
        side = Path(f"{tmp}{SIDECAR_SUFFIX}")  # the provenance sidecar of a format without metadata
        try:
            export(ref, tmp)
            if side.exists():
                os.replace(side, f"{dest}{SIDECAR_SUFFIX}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
            side.unlink(missing_ok=True)
        written.append(dest)
    return written

# -- moving data between repositories --------------------------------------------------------------
def all_datasets(butler: Butler, dataset_types: Sequence[str] | None = None, *, where: str = "",
                 data_id: Mapping[str, int | str] | None = None,
                 collections: Sequence[str] | None = None) -> list[DatasetRef]:
    """Every dataset (of some types, matching a query) in the given RUN collections (default: all runs)."""
    runs = list(collections) if collections is not None else butler.registry.query_collections(
        types=[CollectionType.RUN])
    if not runs:
        return []
    names = list(dataset_types) if dataset_types is not None else [
        dt.name for dt in butler.registry.query_dataset_types()]
    refs: list[DatasetRef] = []
    for name in names:
        refs.extend(butler.registry.query_datasets(name, runs, where=where, data_id=data_id, find_first=False))
    return refs

def export_subset(
    butler: Butler,
    dest: str | os.PathLike[str],
    dataset_types: Sequence[str],
    *,
    where: str = "",
    data_id: Mapping[str, int | str] | None = None,
    collections: Sequence[str] | None = None,
    transfer: TransferMode = "copy",
    datastore: Mapping[str, Any] | None = None,
    registry_db: str | None = None,
    registry_schema: str | None = None,
) -> Butler:
    """Create a new repository holding a subset of this one.

    ``transfer="copy"`` copies the files (DMS-MWBT-REQ-0011); ``"symlink"``
    makes a view whose files are shared with this repository
    (DMS-MWBT-REQ-0010). ``datastore`` may put the new repository in
    another storage context, e.g. S3.

    Upload to the Science Platform (DMS-MWBT-REQ-0019): with an object
    store ``datastore`` and a database-server ``registry_db`` (and
    ``registry_schema``), nothing of the new repository stays on this
    machine but a handle: its ``butler.yaml`` is published next to the
    datasets, and any machine opens it with
    ``Butler.attach("s3://bucket/prefix", local_dir)``.
    Dimension records are copied whole; dataset ids are kept.

    Returns
    -------
    Butler
        The new repository (caller closes it).
    """
    refs = all_datasets(butler, dataset_types, where=where, data_id=data_id, collections=collections)
    new = type(butler).create(dest, datastore=datastore, registry_db=registry_db, registry_schema=registry_schema)
    try:
        import_from(new, butler, refs, transfer=transfer)
        if registry_db is not None and getattr(getattr(new.datastore, "backend", None), "remote", False):
            new.publish_config()
    except BaseException:
        new.close()
        raise
    return new

def import_from(
    butler: Butler,
    other: Butler,
    refs: Sequence[DatasetRef] | None = None,
    *,
    transfer: TransferMode = "copy",
    conflict: str = "error",
) -> list[DatasetRef]:
    """Bring datasets of another repository into this one (export/import, merge: DMS-MWBT-REQ-0007).

    Parameters
    ----------
    other : Butler
        The source repository.
    refs : sequence of DatasetRef, optional
        What to bring (everything by default).
    transfer : {"copy", "symlink"}
        Copy the files, or share them (POSIX only).
    conflict : {"error", "skip", "keep_both", "replace"}
        When this repository already has a dataset of the same type, data
        ID and run: ``error`` raises before anything changes, ``skip``
        keeps ours, ``keep_both`` imports theirs into run
        ``<run>/merged`` (a new id), ``replace`` removes ours (rows and
        bytes, as :meth:`remove_datasets`) and imports theirs. A replaced
        dataset that provenance lists as an input of an existing output
        raises ``DatasetInUseError``.

    Returns
    -------
    list of DatasetRef
        The refs as stored here.

    Notes
    -----
    All or nothing: a failure removes the transferred files, rolls the
    registry back and puts replaced datasets back.
    """
    if conflict not in ("error", "skip", "keep_both", "replace"):
        raise ValueError(f"conflict must be 'error', 'skip', 'keep_both' or 'replace', not {conflict!r}")
    refs = list(refs) if refs is not None else all_datasets(other)
    butler.registry.copy_dimension_records_from(other.registry)
    for dt in {r.dataset_type.name: r.dataset_type for r in refs}.values():
        butler.register_dataset_type(dt)
    plan: list[tuple[DatasetRef, DatasetRef]] = []
    replaced: list[DatasetRef] = []
    for ref in refs:
        butler.ensure_run(ref.run)
        mine = butler.registry.find_dataset(ref.dataset_type, ref.data_id, [ref.run])
        if mine is None:
            plan.append((ref, ref))
        elif conflict == "error":
            raise ConflictingDefinitionError(
                f"both repositories have {ref.dataset_type.name} {dict(ref.data_id)} in run {ref.run!r}; "
                "nothing was imported (choose conflict='skip', 'keep_both' or 'replace')"
            )
        elif conflict == "keep_both":
            run = f"{ref.run}/merged"
            butler.ensure_run(run)
            plan.append((ref, DatasetRef(ref.dataset_type, ref.data_id, run)))
        elif conflict == "replace":
            replaced.append(mine)
            plan.append((ref, ref))
    trash: DatastoreTrash | None = None
    try:
        if replaced:  # ours move aside first: theirs may go to the very same paths
            trash = butler.datastore.trash(replaced)
        with removing_on_failure(butler.datastore) as done:  # theirs removed before ours are restored
            with butler.datastore.batch():  # one flush for the whole import
                for src, dst in progress(plan, "importing datasets"):
                    transfer_dataset(other.datastore, butler.datastore, src, transfer, dst)
                    done.append(dst)
            with butler.registry.transaction():
                if replaced:
                    butler.registry.remove_datasets(replaced)
                butler.registry.import_datasets(done)
                _copy_provenance(butler, other, [src for src, dst in plan if src.id == dst.id])
    except BaseException as exc:
        restore_trash(trash, exc)
        raise
    if trash is not None:
        trash.empty()
    return done

def _copy_provenance(butler: Butler, other: Butler, refs: Sequence[DatasetRef]) -> int:
    """Record here the quanta of ``other`` that produced ``refs`` (inside the import's transaction).

    A quantum is copied when all its inputs and outputs are in this
    repository now and its outputs have no producer here yet; otherwise
    it is left out (a subset export can lack the inputs). Returns how
    many were copied.
    """
    copied = 0
    for prov in other.registry.get_provenances(refs):
        members = [*prov.predicted_inputs, *prov.outputs]
        if len(butler.registry.get_datasets([r.id for r in members])) != len({r.id for r in members}):
            continue
        if any(butler.registry.get_provenance(r) is not None for r in prov.outputs[:1]):
            continue
        if prov.run is not None:
            butler.ensure_run(prov.run)
        butler.registry.record_quantum(
            prov.task_label, config_hash=prov.config_hash, code_version=prov.code_version,
            data_id=prov.data_id, predicted_inputs=prov.predicted_inputs, actual_inputs=prov.actual_inputs,
            outputs=prov.outputs, run=prov.run, quantum_id=prov.quantum_id, execution_id=prov.execution_id,
        )
        copied += 1
    return copied

def stage_in(butler: Butler, refs: Sequence[DatasetRef], local_dir: str | os.PathLike[str]) -> Butler:
    """Copy the inputs of a job (e.g. a quantum graph's) to a node-local repository (DMS-MWBT-REQ-0052).

    The local repository has its own SQLite registry and POSIX datastore,
    so the job needs neither the shared database nor the shared storage;
    dimension records and all dataset types are copied too. Returns it (the caller closes it);
    write outputs to it and hand them back with :meth:`stage_out`.
    """
    local = type(butler).create(local_dir, register=False)  # scratch: not listed in the repository index
    try:
        for dt in butler.registry.query_dataset_types():  # outputs may be of any known type
            local.register_dataset_type(dt)
        import_from(local, butler, list(refs), transfer="copy")
    except BaseException:
        local.close()
        raise
    local.run = butler.run
    local.collections = list(butler.collections)
    return local

def stage_out(butler: Butler, local: Butler, runs: Sequence[str] | None = None) -> list[DatasetRef]:
    """Move a job's outputs from node-local scratch into this repository (DMS-MWBT-REQ-0079).

    Imports every dataset of ``runs`` (default: the local butler's run)
    that this repository does not have yet; the staged-in inputs are
    already here and are skipped.
    """
    runs = list(runs) if runs is not None else [r for r in [local.run] if r]
    refs = [r for r in all_datasets(local, collections=runs)
            if butler.registry.get_dataset(r.id) is None] if runs else []
    return import_from(butler, local, refs, transfer="copy", conflict="error")

def remove_repository(
    repo: str | os.PathLike[str],
    known_repositories: Sequence[str | os.PathLike[str]] = (),
    *,
    index: str | os.PathLike[str] | None = None,
) -> int:
    """Delete a repository from its storage, its registry database and the repository index (REQ-0005).

    Datasets other known repositories still use are kept (REQ-0006): a
    file of ``repo`` that a view in one of ``known_repositories`` links to
    is moved into that repository (replacing the link) instead of being
    deleted. Storage permissions are respected: a file the user may not
    delete raises ``DatastorePermissionError`` (REQ-0004).

    The steps run in this order, so that a failure part-way leaves a
    repository that is still recognisable (``butler.yaml`` is deleted
    last) and calling ``remove_repository`` again finishes the job:

    1. hand over the files views link to;
    2. remove the datasets whose bytes are outside the directory (object
       storage, another file system): rows and bytes together;
    3. remove every name of the repository from the repository index
       (``index`` or ``$NIGHTSHIFT_REPOSITORY_INDEX``, if configured);
    4. delete the registry: the PostgreSQL schema (or tables), or the
       SQLite file;
    5. delete the directory, ``butler.yaml`` last.

    A step that fails raises its own error, with a note saying which step
    stopped and that a second call finishes the removal.

    Returns
    -------
    int
        Number of dataset files handed over to other repositories.

    Raises
    ------
    ButlerConfigError
        ``repo`` is not a repository (nothing is changed).
    RegistryDatabaseError
        The registry database cannot be reached or refuses.
    DatastorePermissionError
        The storage does not let this user delete a file.
    """
    import yaml

    from ._butler import CONFIG_NAME, Butler, ButlerConfigError
    from .registry import Registry, RepositoryIndex

    root = Path(repo).absolute()
    config_path = root / CONFIG_NAME
    if not config_path.exists():
        raise ButlerConfigError(f"{root} is not a repository (no {CONFIG_NAME})")
    registry_config = (yaml.safe_load(config_path.read_text()) or {}).get("registry") or {}
    db = registry_config.get("db")
    location = str(root) if db is None else (db if "://" in str(db) else str(root / db))
    schema = registry_config.get("schema")
    step = "checking the registry"
    try:
        has_registry = Registry.exists(location, schema=schema)  # False when a previous call got past step 4
        step = "handing over files linked from other repositories"
        handed = 0
        for other in known_repositories:
            for dirpath, _, files in os.walk(Path(other).absolute()):
                for name in files:
                    link = Path(dirpath) / name
                    if link.is_symlink():
                        target = Path(os.path.realpath(link))
                        if target.is_relative_to(root) and target.exists():
                            os.replace(target, link)  # same file system: the data moves, the view keeps it
                            handed += 1
        if has_registry:
            step = "removing the datasets stored outside the repository directory"
            with Butler(root) as butler:
                if _stored_outside(butler.datastore, root):
                    refs = all_datasets(butler)
                    if refs:
                        butler.remove_datasets(refs, force=True)
                backend = getattr(butler.datastore, "backend", None)
                if backend is not None and getattr(backend, "remote", False) and backend.exists(CONFIG_NAME):
                    backend.delete(CONFIG_NAME)  # the copy publish_config made for other machines
        step = "removing the repository from the repository index"
        idx = RepositoryIndex.configured(index)
        if idx is not None:
            idx.unregister(str(root))
        if has_registry:
            step = "deleting the registry database"
            Registry.remove(location, schema=schema)
        step = "deleting the repository directory"

        def refuse(func: Any, path: str, info: Any) -> None:
            exc = info[1]
            if isinstance(exc, PermissionError):
                raise DatastorePermissionError(f"not allowed to delete {path}: {exc}") from exc
            raise exc

        for child in sorted(root.iterdir()):
            if child.name == CONFIG_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, onerror=refuse)  # Python 3.11 (pinned): onexc arrives in 3.12
            else:
                try:
                    child.unlink()
                except PermissionError as exc:
                    raise DatastorePermissionError(f"not allowed to delete {child}: {exc}") from exc
        config_path.unlink()
        root.rmdir()
    except BaseException as exc:
        exc.add_note(
            f"removing the repository {root} stopped while {step}; what came before is done. Fix the cause "
            f"and call Butler.remove_repository({str(root)!r}) again to finish"
        )
        raise
    return handed


def _stored_outside(datastore: Any, root: Path) -> bool:
    """Whether any of ``datastore``'s bytes live outside the repository directory ``root``."""
    children = getattr(datastore, "children", None)
    if children is not None:
        return any(_stored_outside(c, root) for c in children)
    backend = getattr(datastore, "backend", None)
    if backend is None:  # in-memory, or REST publishing (nothing kept)
        return False
    if getattr(backend, "remote", False):
        return True
    return not Path(backend.root).resolve().is_relative_to(root.resolve())
