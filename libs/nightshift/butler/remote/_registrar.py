"""Register stored datasets in the registry in batches: the library behind the registry service.

The datastore-writer has already put each file *and its datastore record*
(``_records/<id>.json``, :class:`~nightshift.butler.datastores.StoredRecord`)
into the repository's datastore; what is left is the registry row. One call
of :meth:`BatchRegistrar.register` registers a whole consumer batch in one
database transaction with one bulk insert (PostgreSQL ``COPY``):

* idempotent on the dataset id: a dataset already registered with the same
  (dataset type, data ID, run) is skipped, so a redelivered batch changes nothing;
* the same id with another (type, data ID, run) is *rejected* with the reason
  (the caller dead-letters it); so is a new id for a (type, data ID, run) that
  already has another dataset;
* an unknown dataset type is registered from the storage class the event
  carries (dimensions: the data ID's keys); without one it is rejected;
* the RUN collection is created if missing;
* dimension records are **required to exist**: a data ID naming a visit or
  detector without a record is rejected with the dimension to insert. The
  data ID alone cannot make a correct record (a visit's timespan, region and
  filter are not in it) and the raw ingest that precedes every output of a
  visit writes them, so a missing record is an upstream error, not a race.

Rejections never fail the batch: the rest is registered in the same transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .._dataset_ref import DatasetRef
from .._dataset_type import DatasetType
from .._registry_exceptions import (
    CollectionTypeError,
    ConflictingDefinitionError,
    DataIdError,
    DimensionNameError,
    MissingDatasetTypeError,
    RegistryDatabaseError,
    RegistryError,
)
from ..registry import Registry

__all__ = ["BatchRegistrar", "RegistrationResult", "Rejection", "StoredDataset"]


@dataclass(frozen=True)
class StoredDataset:
    """What a ``dataset.stored`` (v2) event says about one stored dataset.

    Parameters
    ----------
    dataset_id : uuid.UUID
    dataset_type : str
    run : str
    data_id : mapping of str to str or int
        Values as text (the event's form) or typed; converted to the dimensions' key types.
    storage_class : str, optional
        Used to register an unknown dataset type.
    """

    dataset_id: uuid.UUID
    dataset_type: str
    run: str
    data_id: Mapping[str, str | int]
    storage_class: str | None = None


@dataclass(frozen=True)
class Rejection:
    """A dataset that can never be registered as reported, and why (``reason`` says what to fix)."""

    index: int
    error_type: str
    reason: str


@dataclass
class RegistrationResult:
    """The outcome of one batch: counts, rejections (by input index) and the commit time (``time.time()``)."""

    inserted: int = 0
    existing: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    committed_at: float = 0.0


class _Reject(Exception):
    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


class BatchRegistrar:
    """Register batches of :class:`StoredDataset` in one registry (one thread, like the registry).

    Parameters
    ----------
    registry : Registry
        The registry to write (PostgreSQL or SQLite).
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._types: dict[str, DatasetType] = {}
        self._runs: set[str] = set()

    def register(self, items: Sequence[StoredDataset]) -> RegistrationResult:
        """Register ``items`` in one transaction; see the module docstring for the rules.

        Raises
        ------
        RegistryDatabaseError
            The database failed (retriable): nothing of the batch was written.
        """
        result = RegistrationResult()
        refs: dict[uuid.UUID, tuple[int, DatasetRef]] = {}
        for index, item in enumerate(items):
            try:
                ref = self._ref(item)
            except _Reject as rej:
                result.rejected.append(Rejection(index, rej.error_type, rej.reason))
                continue
            seen = refs.get(ref.id)
            if seen is not None:  # the same id twice in one batch (a redelivery inside the batch)
                if _same(seen[1], ref):
                    result.existing += 1
                else:
                    result.rejected.append(Rejection(index, "conflict", _conflict(ref, seen[1])))
                continue
            refs[ref.id] = (index, ref)
        bad_runs: dict[str, str] = {}
        for run in {r.run for _, r in refs.values()} - self._runs:
            try:
                self.registry.register_run(run)  # its own small transaction; idempotent
                self._runs.add(run)
            except CollectionTypeError as exc:  # a non-RUN collection of that name, or a bad name
                bad_runs[run] = f"cannot write datasets to run {run!r}: {exc}"
        if bad_runs:
            for dataset_id, (index, ref) in list(refs.items()):
                if ref.run in bad_runs:
                    result.rejected.append(Rejection(index, "bad_run", bad_runs[ref.run]))
                    del refs[dataset_id]
        try:
            with self.registry.transaction():
                if self._insert_all(refs):  # the common case: none of them is registered yet
                    result.inserted = len(refs)
                else:
                    self._sort_out(refs, result)
        except RegistryDatabaseError:
            self._types.clear()
            self._runs.clear()
            raise
        return self._done(result)

    @staticmethod
    def _done(result: RegistrationResult) -> RegistrationResult:
        result.committed_at = time.time()
        result.rejected.sort(key=lambda r: r.index)
        return result

    def _insert_all(self, refs: Mapping[uuid.UUID, tuple[int, DatasetRef]]) -> bool:
        """One bulk insert of every ref, optimistically: False (nothing written) if the database refuses any.

        A refused row is a registered id (a redelivery), a conflict or a missing dimension record;
        the caller then sorts the batch out. The insert's savepoint keeps the transaction usable.
        """
        if not refs:
            return True
        try:
            self.registry.import_datasets([r for _, r in refs.values()])
        except (ConflictingDefinitionError, DataIdError):
            return False
        return True

    def _sort_out(self, refs: Mapping[uuid.UUID, tuple[int, DatasetRef]], result: RegistrationResult) -> None:
        """Registered ids are skipped (same dataset) or rejected (another one); the rest inserted."""
        existing = {r.id: r for r in self.registry.get_datasets(list(refs))}
        new: list[tuple[int, DatasetRef]] = []
        for dataset_id, (index, ref) in refs.items():
            old = existing.get(dataset_id)
            if old is None:
                new.append((index, ref))
            elif _same(old, ref):
                result.existing += 1
            else:
                result.rejected.append(Rejection(index, "conflict", _conflict(ref, old)))
        result.inserted = self._insert(new, result)

    def _insert(self, new: list[tuple[int, DatasetRef]], result: RegistrationResult) -> int:
        """Bulk insert; if the database refuses, find the refused rows one by one (savepoints)."""
        if not new:
            return 0
        try:
            self.registry.import_datasets([r for _, r in new])
            return len(new)
        except (ConflictingDefinitionError, DataIdError):
            pass  # some row is refused: the bulk insert's savepoint rolled back, the transaction goes on
        inserted = 0
        for index, ref in new:
            try:
                self.registry.import_datasets([ref])
                inserted += 1
            except DataIdError as exc:
                result.rejected.append(Rejection(index, "missing_dimension_record", str(exc)))
            except ConflictingDefinitionError as exc:
                result.rejected.append(Rejection(index, "conflict", str(exc)))
        return inserted

    def _dataset_type(self, item: StoredDataset) -> DatasetType:
        dt = self._types.get(item.dataset_type)
        if dt is not None:
            return dt
        try:
            dt = self.registry.get_dataset_type(item.dataset_type)
        except MissingDatasetTypeError:
            if item.storage_class is None:
                raise _Reject("unknown_dataset_type", (
                    f"dataset type {item.dataset_type!r} is not registered and the event carries no storage "
                    "class to register it from: register the dataset type, or send dataset.stored v2 with "
                    "storage_class")) from None
            try:
                dt = DatasetType(item.dataset_type, self._dimensions_of(item.data_id), item.storage_class)
                self.registry.register_dataset_type(dt)
            except ConflictingDefinitionError:
                dt = self.registry.get_dataset_type(item.dataset_type)  # registered meanwhile by another writer
            except (ValueError, RegistryError) as exc:
                raise _Reject("unknown_dataset_type", (
                    f"dataset type {item.dataset_type!r} is not registered and cannot be registered from the "
                    f"event (dimensions {sorted(item.data_id)}, storage class {item.storage_class!r}): {exc}"
                )) from None
        self._types[item.dataset_type] = dt
        return dt

    def _dimensions_of(self, data_id: Mapping[str, object]) -> list[str]:
        """The data ID's keys minus those another key implies (a visit's ``band``, ``physical_filter``...)."""
        universe = self.registry.universe
        unknown = sorted(k for k in data_id if k not in universe)
        if unknown:
            raise _Reject("bad_data_id", f"data ID {dict(data_id)} has unknown dimension(s) {unknown}")
        keys = list(data_id)
        implied = {i for k in keys for i in universe[k].implies}
        implied |= {i for name in list(implied) for i in universe[name].implies}
        return [k for k in keys if k not in implied]

    def _ref(self, item: StoredDataset) -> DatasetRef:
        dt = self._dataset_type(item)
        universe = self.registry.universe
        typed: dict[str, int | str] = {}
        try:
            for key, value in item.data_id.items():
                if key not in universe:
                    raise DimensionNameError(f"unknown dimension {key!r}")
                if universe[key].key_type == "int" and isinstance(value, str):
                    try:
                        typed[key] = int(value)
                    except ValueError:
                        raise DataIdError(f"data ID value for {key!r} must be an integer, got {value!r}") from None
                else:
                    typed[key] = value
            clean = universe.normalize_data_id(dt.dimensions, typed, what=f"{dt.name} data ID")
        except (DataIdError, DimensionNameError) as exc:
            raise _Reject("bad_data_id", f"{exc} (dataset {item.dataset_id})") from None
        return DatasetRef(dt, clean, item.run, item.dataset_id)


def _same(a: DatasetRef, b: DatasetRef) -> bool:
    return (a.dataset_type.name == b.dataset_type.name and a.run == b.run
            and dict(a.data_id) == dict(b.data_id))


def _conflict(new: DatasetRef, old: DatasetRef) -> str:
    return (f"dataset {new.id} is registered as {old.dataset_type.name} {dict(old.data_id)} in run {old.run!r}, "
            f"but this event reports it as {new.dataset_type.name} {dict(new.data_id)} in run {new.run!r}; "
            "one id names one dataset: fix the producer's id generation")
