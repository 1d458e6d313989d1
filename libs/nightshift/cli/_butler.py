"""``nightshift butler ...``: thin commands over :class:`nightshift.butler.Butler` and its registry.

Every command opens the repository, calls one library function and prints the
result; errors of the library become one ``Error: ...`` line and exit code 1.
The butler is imported inside the commands, so ``nightshift --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from ._errors import cli_errors as _errors

if TYPE_CHECKING:
    from ..butler import Butler, DatasetRef
    from ..butler.datastores import TransferMode

__all__ = ["butler"]

WHERE_HELP = (
    "Filter expression over dimensions and their record fields, e.g. "
    "\"visit IN (1..100) AND detector = 9 AND visit.seeing < 0.8\", "
    "\"band IN ('g', 'r')\", \"exposure.observation_type = 'science'\". "
    "Operators: = != < <= > >= IN (a, b) IN (lo..hi) AND OR NOT; values are bound, never pasted into SQL."
)
COLLECTIONS_HELP = "Collection to search (repeat for a search path, first match wins). Default: every RUN collection."


@contextmanager
def _open(repo: str, **kwargs: Any) -> Iterator[Butler]:
    from ..butler import Butler

    with Butler(repo, **kwargs) as b:
        yield b


def _echo_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Print rows as aligned columns (nothing but a note when there are none)."""
    if not rows:
        click.echo("(no results)", err=True)
        return
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    text = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for t in text:
        click.echo("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())


def _ref_row(ref: DatasetRef) -> dict[str, Any]:
    return {"type": ref.dataset_type.name, "run": ref.run, "id": str(ref.id), **dict(ref.data_id)}


def _find_refs(b: Butler, dataset_type: str, collections: Sequence[str], where: str,
               find_first: bool = True) -> list[DatasetRef]:
    """Datasets of every type matching the name or glob, in ``collections`` (every RUN by default)."""
    types = b.registry.query_dataset_types(dataset_type)
    if not types:
        b.registry.get_dataset_type(dataset_type)  # raises MissingDatasetTypeError naming it
    if collections:
        return [r for dt in types for r in b.registry.query_datasets(dt, list(collections), where=where,
                                                                     find_first=find_first)]
    return b.all_datasets([dt.name for dt in types], where=where)


@click.group()
def butler() -> None:
    """Create, query and move data repositories (registry + datastore).

    \b
    A repository is a directory with butler.yaml, the SQLite registry and the
    files. Start with:
      nightshift butler create ./repo
      nightshift butler register-dataset-type ./repo calexp Exposure instrument visit detector
      nightshift butler query-collections ./repo
      nightshift butler query-datasets ./repo calexp --collections u/me/run --where "visit = 12"
    Python: `from nightshift.butler import Butler; Butler("./repo")`.
    """


@butler.command("create")
@click.argument("repo")
@click.option("--registry-db", metavar="URL",
              help="PostgreSQL URL for the registry (postgresql://user@host:port/db). Default: SQLite in REPO.")
@click.option("--registry-schema", metavar="SCHEMA", help="PostgreSQL schema for this repository's tables.")
@click.option("--name", metavar="NAME",
              help="Name in the repository index ($NIGHTSHIFT_REPOSITORY_INDEX). Default: REPO's directory name.")
@_errors
def create_cmd(repo: str, registry_db: str | None, registry_schema: str | None, name: str | None) -> None:
    """Create an empty repository at REPO (POSIX datastore under REPO/datastore).

    With $NIGHTSHIFT_REPOSITORY_INDEX set, the repository is registered there as it is created.
    """
    from ..butler import Butler

    Butler.create(repo, registry_db=registry_db, registry_schema=registry_schema, name=name).close()
    click.echo(f"created repository {repo}")


@butler.command("register-dataset-type")
@click.argument("repo")
@click.argument("name")
@click.argument("storage_class")
@click.argument("dimensions", nargs=-1, required=True)
@click.option(
    "--is-calibration", is_flag=True, help="Datasets of this type can be certified in CALIBRATION collections."
)
@click.option("--metadata", "metadata", multiple=True, metavar="FIELD=TYPE",
              help="Metadata field stored in the registry (TYPE: int, float, str, bool); repeatable.")
@_errors
def register_dataset_type_cmd(repo: str, name: str, storage_class: str, dimensions: tuple[str, ...],
                              is_calibration: bool, metadata: tuple[str, ...]) -> None:
    """Register dataset type NAME with STORAGE_CLASS over DIMENSIONS.

    \b
    List every required dimension, e.g.
      nightshift butler register-dataset-type ./repo calexp Exposure instrument visit detector
    Registering the same definition again is fine; another definition is an error.
    """
    from ..butler import DatasetType

    fields: dict[str, str] = {}
    for item in metadata:
        field, sep, ftype = item.partition("=")
        if not sep or not field or not ftype:
            raise click.BadParameter(f"{item!r} is not FIELD=TYPE", param_hint="--metadata")
        fields[field] = ftype
    with _open(repo) as b:
        new = b.register_dataset_type(DatasetType(name, list(dimensions), storage_class, is_calibration, fields))
    click.echo(f"registered {name}" if new else f"{name} was already registered with this definition")


@butler.command("query-datasets")
@click.argument("repo")
@click.argument("dataset_type")
@click.option("--collections", "-c", multiple=True, help=COLLECTIONS_HELP)
@click.option("--where", default="", help=WHERE_HELP)
@click.option("--find-first/--all", default=True, show_default=True,
              help="With --collections: only the first match per data ID along the search path, or every match.")
@_errors
def query_datasets_cmd(
    repo: str, dataset_type: str, collections: tuple[str, ...], where: str, find_first: bool
) -> None:
    """List datasets of DATASET_TYPE (a name or a glob such as 'calexp*').

    \b
    Example:
      nightshift butler query-datasets ./repo calexp -c u/me/run --where "visit.seeing < 0.8"
    """
    with _open(repo) as b:
        refs = _find_refs(b, dataset_type, collections, where, find_first)
    _echo_table([_ref_row(r) for r in refs])


@butler.command("query-data-ids")
@click.argument("repo")
@click.argument("dimensions", nargs=-1, required=True)
@click.option("--where", default="", help=WHERE_HELP)
@click.option("--datasets", "-d", multiple=True, help="Keep data IDs that have a dataset of this type (repeatable).")
@click.option("--collections", "-c", multiple=True, help="Collections searched for --datasets.")
@_errors
def query_data_ids_cmd(repo: str, dimensions: tuple[str, ...], where: str, datasets: tuple[str, ...],
                       collections: tuple[str, ...]) -> None:
    """List data IDs over DIMENSIONS (plus the dimensions they require).

    \b
    Example:
      nightshift butler query-data-ids ./repo visit detector --where "visit.airmass < 1.2"
    """
    with _open(repo) as b:
        ids = b.registry.query_data_ids(dimensions, where=where, datasets=datasets,
                                        collections=list(collections) or None)
    _echo_table(ids)


@butler.command("query-dimension-records")
@click.argument("repo")
@click.argument("element")
@click.option("--where", default="", help=WHERE_HELP)
@_errors
def query_dimension_records_cmd(repo: str, element: str, where: str) -> None:
    """List the records of dimension ELEMENT (e.g. visit, detector, exposure).

    \b
    Example:
      nightshift butler query-dimension-records ./repo visit --where "visit.seeing < 0.8"
    Regions are shown as JSON vertex lists.
    """
    with _open(repo) as b:
        records = b.registry.query_dimension_records(element, where=where)
    rows = [{k: (json.dumps(v) if isinstance(v, (list, tuple)) else v) for k, v in dict(r).items()} for r in records]
    _echo_table(rows)


@butler.command("query-collections")
@click.argument("repo")
@click.argument("pattern", required=False)
@click.option("--type", "types", multiple=True, type=click.Choice(["RUN", "TAGGED", "CHAINED", "CALIBRATION"]),
              help="Only collections of this type (repeatable).")
@_errors
def query_collections_cmd(repo: str, pattern: str | None, types: tuple[str, ...]) -> None:
    """List collections, optionally matching a glob PATTERN ('u/me/*')."""
    from ..butler.registry import CollectionType

    with _open(repo) as b:
        names = b.registry.query_collections(pattern, types=[CollectionType[t] for t in types] or None)
        rows = []
        for n in names:
            kind = b.registry.get_collection_type(n)
            children = ", ".join(b.registry.get_collection_chain(n)) if kind == CollectionType.CHAINED else ""
            rows.append({"name": n, "type": kind.name, "children": children})
    _echo_table(rows, ["name", "type", "children"])


@butler.command("export")
@click.argument("repo")
@click.argument("dest")
@click.argument("dataset_types", nargs=-1, required=True)
@click.option("--where", default="", help=WHERE_HELP)
@click.option("--collections", "-c", multiple=True, help="RUN collections to take datasets from. Default: all.")
@click.option("--transfer", type=click.Choice(["copy", "symlink"]), default="copy", show_default=True,
              help="copy: an independent repository; symlink: a view sharing REPO's files (POSIX).")
@_errors
def export_cmd(repo: str, dest: str, dataset_types: tuple[str, ...], where: str, collections: tuple[str, ...],
               transfer: TransferMode) -> None:
    """Export a subset of REPO as a new repository DEST (dimension records, types, datasets, files).

    \b
    Example:
      nightshift butler export ./repo ./subset calexp src --where "detector IN (0, 1)"
    """
    with _open(repo) as b:
        new = b.export_subset(dest, list(dataset_types), where=where, collections=list(collections) or None,
                              transfer=transfer)
        with new:
            n = len(new.all_datasets())
    click.echo(f"exported {n} dataset(s) to {dest}")


@butler.command("retrieve")
@click.argument("repo")
@click.argument("dest")
@click.argument("dataset_types", nargs=-1, required=True)
@click.option("--where", default="", help=WHERE_HELP)
@click.option("--collections", "-c", multiple=True, help="RUN collections to take datasets from. Default: all.")
@_errors
def retrieve_cmd(repo: str, dest: str, dataset_types: tuple[str, ...], where: str,
                 collections: tuple[str, ...]) -> None:
    """Copy the files of datasets into the directory DEST, each under its repository-wide unique name.

    \b
    Example:
      nightshift butler retrieve ./repo ./download calexp --where "visit = 12"
    """
    with _open(repo) as b:
        paths = b.retrieve_files(b.all_datasets(list(dataset_types), where=where,
                                                collections=list(collections) or None), dest)
    for path in paths:
        click.echo(str(path))


@butler.command("import")
@click.argument("repo")
@click.argument("source")
@click.option("--conflict", type=click.Choice(["error", "skip", "keep_both", "replace"]), default="error",
              show_default=True,
              help="When both have a dataset of the same type, data ID and run: error (change nothing), skip "
                   "(keep ours), keep_both (theirs into <run>/merged), replace (remove ours, take theirs).")
@click.option("--transfer", type=click.Choice(["copy", "symlink"]), default="copy", show_default=True)
@_errors
def import_cmd(repo: str, source: str, conflict: str, transfer: TransferMode) -> None:
    """Import every dataset of repository SOURCE into REPO (merging; all or nothing)."""
    with _open(repo) as b, _open(source) as other:
        done = b.import_from(other, transfer=transfer, conflict=conflict)
    click.echo(f"imported {len(done)} dataset(s) from {source}")


@butler.command("remove-datasets")
@click.argument("repo")
@click.argument("dataset_type")
@click.option("--collections", "-c", multiple=True, help=COLLECTIONS_HELP)
@click.option("--where", default="", help=WHERE_HELP)
@click.option("--force", is_flag=True,
              help="Also remove datasets that provenance lists as inputs of outputs that stay (drops those links).")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_errors
def remove_datasets_cmd(repo: str, dataset_type: str, collections: tuple[str, ...], where: str, force: bool,
                        dry_run: bool, yes: bool) -> None:
    """Delete datasets (registry rows and files, all or nothing) of DATASET_TYPE matching --where.

    \b
    Example:
      nightshift butler remove-datasets ./repo calexp -c u/me/run --where "visit = 12" --dry-run
    Files the storage does not let you delete stop the whole removal.
    """
    with _open(repo) as b:
        refs = _find_refs(b, dataset_type, collections, where, find_first=False)
        _echo_table([_ref_row(r) for r in refs])
        if dry_run or not refs:
            click.echo(f"would remove {len(refs)} dataset(s)" if dry_run else "nothing to remove")
            return
        if not yes:
            click.confirm(f"Remove these {len(refs)} dataset(s) and their files?", abort=True)
        n = b.remove_datasets(refs, force=force)
    click.echo(f"removed {n} dataset(s)")
