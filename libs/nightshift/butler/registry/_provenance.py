"""Provenance: which quantum made each dataset, from which inputs (REQ-0093..0095)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .._dataset_ref import DatasetRef
from .._registry_exceptions import ProvenanceError
from ._collections import CollectionType

if TYPE_CHECKING:
    from ._collection_manager import CollectionManager
    from ._dataset_manager import DatasetManager
    from ._storage import RegistryStorage

__all__ = ["ProvenanceManager", "QuantumProvenance"]


@dataclass(frozen=True)
class QuantumProvenance:
    """What one quantum (task execution) read and wrote.

    Attributes
    ----------
    quantum_id : uuid.UUID
    task_label, config_hash, code_version : str
    data_id : dict
        The quantum's data ID.
    run : str or None
        The RUN its outputs went to.
    predicted_inputs, actual_inputs, outputs : tuple of DatasetRef
        ``actual_inputs`` is a subset of ``predicted_inputs``.
    execution_id : str or None
        The execution (one run of a quantum graph by an executor) that wrote
        the outputs; None when they were recorded outside one.
    """

    quantum_id: uuid.UUID
    task_label: str
    config_hash: str
    code_version: str
    data_id: Mapping[str, int | str]
    run: str | None
    predicted_inputs: tuple[DatasetRef, ...]
    actual_inputs: tuple[DatasetRef, ...]
    outputs: tuple[DatasetRef, ...]
    execution_id: str | None = None


class ProvenanceManager:
    """Reads and writes the ``quantum``, ``quantum_input`` and ``quantum_output`` tables.

    ``collections`` resolves a quantum's RUN; ``datasets`` reads the datasets
    that provenance links.
    """

    def __init__(self, storage: RegistryStorage, collections: CollectionManager, datasets: DatasetManager) -> None:
        self._storage = storage
        self._collections = collections
        self._datasets = datasets

    def record(
        self,
        task_label: str,
        *,
        config_hash: str,
        code_version: str,
        data_id: Mapping[str, int | str],
        predicted: Sequence[DatasetRef],
        actual: Sequence[DatasetRef] | None,
        outputs: Sequence[DatasetRef],
        run: str | None,
        quantum_id: uuid.UUID | None,
        execution_id: str | None = None,
    ) -> uuid.UUID:
        if not task_label or not config_hash or not code_version:
            raise ProvenanceError("task_label, config_hash and code_version must all be non-empty")
        if execution_id is not None and not 0 < len(execution_id) <= 64:
            raise ProvenanceError(f"execution_id must be 1 to 64 characters, got {execution_id!r}")
        predicted_ids = list(dict.fromkeys(r.id for r in predicted))
        actual_ids = predicted_ids if actual is None else list(dict.fromkeys(r.id for r in actual))
        extra = set(actual_ids) - set(predicted_ids)
        if extra:
            raise ProvenanceError(
                f"actual inputs {sorted(map(str, extra))} were not predicted inputs; actual inputs must be a "
                "subset of the predicted ones"
            )
        output_ids = list(dict.fromkeys(r.id for r in outputs))
        if set(output_ids) & set(predicted_ids):
            raise ProvenanceError("a dataset cannot be both an input and an output of the same quantum")
        run_id = None
        if run is not None:
            rec = self._collections.record(run)
            if rec.type != CollectionType.RUN:
                raise ProvenanceError(f"quantum run {run!r} is {rec.type.name}, not a RUN")
            run_id = rec.id
        qid = quantum_id or uuid.uuid4()
        tables = self._storage.tables
        with self._storage.db.transaction() as conn:
            known = {r.id for r in self._datasets.get_datasets([*predicted_ids, *output_ids])}
            missing = [str(i) for i in (*predicted_ids, *output_ids) if i not in known]
            if missing:
                raise ProvenanceError(f"datasets {missing} are not in the registry; insert them before recording")
            produced = conn.execute(
                sa.select(tables.quantum_output.c.dataset_id, tables.quantum_output.c.quantum_id)
                .where(tables.quantum_output.c.dataset_id.in_(output_ids))
            ).first() if output_ids else None
            if produced is not None:
                raise ProvenanceError(
                    f"dataset {produced[0]} already has a producer (quantum {produced[1]}); a dataset is made once"
                )
            conn.execute(tables.quantum.insert().values(
                quantum_id=qid, task_label=task_label, config_hash=config_hash, code_version=code_version,
                run_id=run_id, data_id=json.dumps(dict(data_id)), recorded_ns=time.time_ns(),
                execution_id=execution_id,
            ))
            actual_set = set(actual_ids)
            if predicted_ids:
                conn.execute(tables.quantum_input.insert(), [
                    {"quantum_id": qid, "dataset_id": i, "actual": i in actual_set} for i in predicted_ids
                ])
            if output_ids:
                conn.execute(tables.quantum_output.insert(), [
                    {"quantum_id": qid, "dataset_id": i} for i in output_ids
                ])
        return qid

    def producers(self, dataset_ids: Sequence[uuid.UUID]) -> list[QuantumProvenance]:
        """The quanta that produced any of ``dataset_ids`` (each once)."""
        t = self._storage.tables
        firsts: dict[uuid.UUID, uuid.UUID] = {}  # quantum -> one of its outputs
        ids = list(dict.fromkeys(dataset_ids))
        with self._storage.db.reading() as conn:
            for i in range(0, len(ids), 500):
                for ds, q in conn.execute(
                    sa.select(t.quantum_output.c.dataset_id, t.quantum_output.c.quantum_id)
                    .where(t.quantum_output.c.dataset_id.in_(ids[i:i + 500]))
                ):
                    firsts.setdefault(q, ds)
        return [p for p in (self.producer(ds) for ds in firsts.values()) if p is not None]

    def producer(self, dataset_id: uuid.UUID) -> QuantumProvenance | None:
        t = self._storage.tables
        with self._storage.db.reading() as conn:
            row = conn.execute(
                sa.select(t.quantum, t.collection.c.name.label("run_name"))
                .select_from(t.quantum_output.join(t.quantum, t.quantum_output.c.quantum_id == t.quantum.c.quantum_id)
                             .outerjoin(t.collection, t.collection.c.collection_id == t.quantum.c.run_id))
                .where(t.quantum_output.c.dataset_id == dataset_id)
            ).first()
            if row is None:
                return None
            inputs = conn.execute(
                sa.select(t.quantum_input.c.dataset_id, t.quantum_input.c.actual)
                .where(t.quantum_input.c.quantum_id == row.quantum_id)
            ).all()
            outputs = [r[0] for r in conn.execute(
                sa.select(t.quantum_output.c.dataset_id).where(t.quantum_output.c.quantum_id == row.quantum_id)
            )]
        refs = {r.id: r for r in self._datasets.get_datasets([i for i, _ in inputs] + outputs)}
        return QuantumProvenance(
            quantum_id=row.quantum_id, task_label=row.task_label, config_hash=row.config_hash,
            code_version=row.code_version, data_id=json.loads(row.data_id), run=row.run_name,
            predicted_inputs=tuple(refs[i] for i, _ in inputs),
            actual_inputs=tuple(refs[i] for i, a in inputs if a),
            outputs=tuple(refs[i] for i in outputs), execution_id=row.execution_id,
        )

    def _walk(self, start: uuid.UUID, *, up: bool, actual_only: bool) -> tuple[list[uuid.UUID], set[uuid.UUID]]:
        """Breadth-first walk, one query per generation; returns (visited ids, ids with no parents)."""
        t = self._storage.tables
        qi, qo = t.quantum_input, t.quantum_output
        seen: dict[uuid.UUID, None] = {}
        roots: set[uuid.UUID] = set()
        frontier = [start]
        with self._storage.db.reading() as conn:
            while frontier:
                nxt: list[uuid.UUID] = []
                for i in range(0, len(frontier), 500):
                    chunk = frontier[i:i + 500]
                    if up:
                        stmt = (sa.select(qo.c.dataset_id, qi.c.dataset_id)
                                .select_from(qo.join(qi, qi.c.quantum_id == qo.c.quantum_id))
                                .where(qo.c.dataset_id.in_(chunk)))
                    else:
                        stmt = (sa.select(qi.c.dataset_id, qo.c.dataset_id)
                                .select_from(qi.join(qo, qi.c.quantum_id == qo.c.quantum_id))
                                .where(qi.c.dataset_id.in_(chunk)))
                    if actual_only:
                        stmt = stmt.where(qi.c.actual.is_(True))
                    has_links: set[uuid.UUID] = set()
                    for src, dst in conn.execute(stmt):
                        has_links.add(src)
                        if dst not in seen and dst != start:
                            seen[dst] = None
                            nxt.append(dst)
                    roots.update(c for c in chunk if c not in has_links)
                frontier = nxt
        return list(seen), roots

    def ancestors(self, dataset_id: uuid.UUID, *, actual_only: bool, roots_only: bool) -> list[DatasetRef]:
        ids, roots = self._walk(dataset_id, up=True, actual_only=actual_only)
        if roots_only:
            ids = [i for i in ids if i in roots]
        return self._datasets.get_datasets(ids)

    def descendants(self, dataset_id: uuid.UUID, *, actual_only: bool) -> list[DatasetRef]:
        ids, _ = self._walk(dataset_id, up=False, actual_only=actual_only)
        return self._datasets.get_datasets(ids)
