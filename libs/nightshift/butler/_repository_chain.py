"""Several repositories read as one: chained (first found wins) or in parallel (every copy).

::

    chain = RepositoryChain({"mine": Butler("./rerun", collections=["u/me/fix"]),
                             "release": Butler.attach("s3://dr1/repo", "/tmp/dr1", collections=["DR1"])})
    exp = chain.get("calexp", instrument="HSC", visit=12, detector=3)       # mine if I have it, else DR1's
    found = chain.find("calexp", instrument="HSC", visit=12, detector=3)
    found.repository, found.repository_id                                    # where it came from
    both = chain.get_from_each("calexp", instrument="HSC", visit=12, detector=3)  # {"mine": ..., "release": ...}

Each repository keeps its own registry (SQLite or PostgreSQL) and datastore
(POSIX or S3), so a local repository and a remote one combine
(DMS-MWBT-REQ-0081, DMS-MWBT-REQ-0082). Collections *inside* one registry
chain with ``Registry.set_collection_chain``; this chains whole repositories.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._dataset_ref import DatasetRef
from ._registry_exceptions import ConflictingDefinitionError, MissingCollectionError, MissingDatasetTypeError
from .datastores import DatasetNotFoundError

if TYPE_CHECKING:
    from ._butler import Butler

__all__ = ["LocatedDataset", "RepositoryChain"]


@dataclass(frozen=True)
class LocatedDataset:
    """A dataset found in one repository of a :class:`RepositoryChain`, with where it came from.

    Attributes
    ----------
    ref : DatasetRef
        The dataset, resolved in that repository.
    repository : str
        The repository's label in the chain.
    repository_id : str
        The repository's permanent id (``Registry.describe()["repository_id"]``).
    location : str
        The repository's directory.
    """

    ref: DatasetRef
    repository: str
    repository_id: str
    location: str


class RepositoryChain:
    """Read several repositories as one coherent logical repository (DMS-MWBT-REQ-0081, REQ-0082).

    Lookups scan the repositories in order, each in its own default
    collections (``Butler(..., collections=...)``): the first one holding a
    dataset answers (chained), or every one that holds it answers (parallel).
    Every answer says which repository it came from.

    Parameters
    ----------
    repositories : mapping of str to Butler, or sequence of Butler
        In search order; labels are the keys, or each repository's directory name.

    Raises
    ------
    ValueError
        No repositories, a repository without default collections, or two with the same label.
    """

    def __init__(self, repositories: Mapping[str, Butler] | Sequence[Butler]) -> None:
        if isinstance(repositories, Mapping):
            items = list(repositories.items())
        else:
            items = [(b.root.name, b) for b in repositories]
        if not items:
            raise ValueError("a repository chain needs at least one repository")
        labels = [label for label, _ in items]
        if len(set(labels)) != len(labels):
            raise ValueError(f"repository labels must be unique, got {labels}; pass a mapping of label -> Butler")
        for label, butler in items:
            if not butler.collections:
                raise ValueError(f"repository {label!r} has no default collections: Butler(repo, collections=[...])")
        self._items = items

    @property
    def labels(self) -> list[str]:
        """Repository labels in search order."""
        return [label for label, _ in self._items]

    def butler(self, label: str) -> Butler:
        """The Butler of one repository of the chain."""
        for name, butler in self._items:
            if name == label:
                return butler
        raise KeyError(f"no repository {label!r} in the chain (have {self.labels})")

    def _located(self, label: str, butler: Butler, ref: DatasetRef) -> LocatedDataset:
        return LocatedDataset(ref, label, str(butler.registry.describe()["repository_id"]), str(butler.root))

    def _check_type(self, name: str) -> None:
        """The repositories that know ``name`` must define it the same way: one logical repository."""
        seen: dict[str, Any] = {}
        for label, butler in self._items:
            try:
                dt = butler.registry.get_dataset_type(name.partition(".")[0])
            except MissingDatasetTypeError:
                continue
            for other, odt in seen.items():
                if (odt.dimensions, odt.storage_class) != (dt.dimensions, dt.storage_class):
                    raise ConflictingDefinitionError(
                        f"dataset type {dt.name!r} differs between repositories {other!r} "
                        f"({odt.storage_class}, {list(odt.dimensions)}) and {label!r} "
                        f"({dt.storage_class}, {list(dt.dimensions)}): they cannot be read as one repository"
                    )
            seen[label] = dt

    def _each(self, dataset_type: str, data_id: Mapping[str, int | str]) -> Iterator[LocatedDataset]:
        self._check_type(dataset_type)
        for label, butler in self._items:
            try:
                ref = butler.find(dataset_type, data_id)
            except (DatasetNotFoundError, MissingDatasetTypeError, MissingCollectionError):
                continue
            yield self._located(label, butler, ref)

    def find(self, dataset_type: str, data_id: Mapping[str, int | str] | None = None,
             **kwargs: int | str) -> LocatedDataset:
        """The dataset from the first repository that has it.

        Raises
        ------
        DatasetNotFoundError
            No repository of the chain has it.
        ConflictingDefinitionError
            The repositories define the dataset type differently.
        """
        full_id = {**(data_id or {}), **kwargs}
        for found in self._each(dataset_type, full_id):
            return found
        raise DatasetNotFoundError(f"no {dataset_type} with data ID {full_id} in any of {self.labels}")

    def find_in_each(self, dataset_type: str, data_id: Mapping[str, int | str] | None = None,
                     **kwargs: int | str) -> list[LocatedDataset]:
        """The same logical dataset from every repository that has it, in chain order."""
        return list(self._each(dataset_type, {**(data_id or {}), **kwargs}))

    def read(self, found: LocatedDataset, **kwargs: Any) -> Any:
        """Read a located dataset from its own repository (``kwargs`` as for ``Butler.get``)."""
        return self.butler(found.repository).get(found.ref, **kwargs)

    def get(self, dataset_type: str, data_id: Mapping[str, int | str] | None = None, *,
            parameters: Mapping[str, Any] | None = None, **kwargs: int | str) -> Any:
        """Read the dataset from the first repository that has it (see :meth:`find`)."""
        return self.read(self.find(dataset_type, data_id, **kwargs), parameters=parameters)

    def get_from_each(self, dataset_type: str, data_id: Mapping[str, int | str] | None = None, *,
                      parameters: Mapping[str, Any] | None = None, **kwargs: int | str) -> dict[str, Any]:
        """Read the same logical dataset from every repository that has it: label -> object."""
        return {f.repository: self.read(f, parameters=parameters)
                for f in self.find_in_each(dataset_type, data_id, **kwargs)}

    def query_datasets(self, dataset_type: str, *, where: str = "", data_id: Mapping[str, int | str] | None = None,
                       find_first: bool = True) -> list[LocatedDataset]:
        """Datasets of one type matching ``where`` across the chain.

        With ``find_first`` each data ID appears once, from the first
        repository that has it (the chain behaves as one repository);
        otherwise every repository's copy is listed.
        """
        self._check_type(dataset_type)
        out: list[LocatedDataset] = []
        seen: set[tuple[tuple[str, int | str], ...]] = set()
        for label, butler in self._items:
            try:
                refs = butler.registry.query_datasets(dataset_type, butler.collections, where=where,
                                                      data_id=data_id)
            except (MissingDatasetTypeError, MissingCollectionError):
                continue
            for ref in refs:
                key = tuple(sorted(ref.data_id.items()))
                if find_first and key in seen:
                    continue
                seen.add(key)
                out.append(self._located(label, butler, ref))
        return out
