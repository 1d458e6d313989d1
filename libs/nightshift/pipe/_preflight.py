"""Pre-flight: (pipeline, input collections, data query) -> quantum graph (REQ-0010, 0011, 0012, 0020, 0021, 0027).

The builder asks the registry's discovery interface (``query_datasets``,
``query_data_ids``, ``find_dataset``) and never reads a dataset. Every task
is planned in execution order:

1. its candidate data IDs: projected from the input datasets whose
   dimensions cover the quantum's (fast path), or joined by the registry
   over the quantum's and inputs' dimensions (spatial / implied joins);
2. regular inputs: found in the input collections (with ``where``) or
   predicted outputs of upstream tasks;
3. prerequisite ("implied") inputs: by data ID, by validity time for
   calibrations, or by the connection's own ``lookup`` (REQ-0012);
4. predicted outputs, with deterministic dataset ids in the output RUN.

Quanta missing a required input are dropped and the reason is recorded;
an empty graph carries an ``explanation`` naming the missing input.
Campaigns (REQ-0027): ``where`` restricts inputs; ``outputs``/``output_where``
select desired outputs and keep only the quanta needed for them; both
together give the intersection.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import __version__
from ..butler import DatasetRef, DatasetType
from ..butler.registry import MissingDatasetTypeError, RegistryError
from ._exceptions import PipelineDefinitionError, PreflightError, UnknownDatasetTypeError
from ._graph import METADATA_CONNECTION, Quantum, QuantumGraph
from ._logging import LogFormat, pipeline_logging
from ._pipeline import CONFIG_SUFFIX, Pipeline, ResolvedConnection, TaskNode

__all__ = ["DiscoveryRegistry", "build_quantum_graph"]

_log = logging.getLogger("nightshift.pipe.preflight")
Key = tuple[Any, ...]


class DiscoveryRegistry(Protocol):
    """The part of :class:`nightshift.butler.Registry` pre-flight uses."""

    universe: Any

    def get_dataset_type(self, name: str) -> DatasetType:
        """The registered definition (MissingDatasetTypeError if none)."""

    def query_datasets(self, dataset_type: str | DatasetType, collections: str | Sequence[str], *,
                       where: str = "", bind: Mapping[str, Any] | None = None,
                       data_id: Mapping[str, int | str] | None = None, limit: int | None = None,
                       ) -> list[DatasetRef]:
        """Datasets of a type in collections matching a query."""

    def query_data_ids(self, dimensions: Iterable[str], *, where: str = "", bind: Mapping[str, Any] | None = None,
                       data_id: Mapping[str, int | str] | None = None,
                       datasets: Iterable[str | DatasetType] = (),
                       collections: str | Sequence[str] | None = None) -> list[dict[str, int | str]]:
        """Data IDs over dimensions matching a query (joins through records and regions)."""

    def find_dataset(self, dataset_type: str | DatasetType, data_id: Mapping[str, int | str],
                     collections: str | Sequence[str], *, time: Any = None) -> DatasetRef | None:
        """The first dataset along a search path (``time`` for CALIBRATION collections)."""

    def get_dimension_record(self, element: str, data_id: Mapping[str, int | str]) -> Any:
        """The record of one dimension value, or None."""


@dataclass
class _Plan:
    """Bookkeeping of one build."""

    registry: DiscoveryRegistry
    collections: list[str]
    run: str
    where: str
    bind: dict[str, Any]
    data_id: dict[str, int | str]
    types: dict[str, DatasetType] = field(default_factory=dict)
    produced: dict[str, str] = field(default_factory=dict)
    predicted: dict[str, dict[Key, DatasetRef]] = field(default_factory=dict)
    external: dict[str, dict[Key, list[DatasetRef]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    time_cache: dict[Key, Any] = field(default_factory=dict)


def _key(data_id: Mapping[str, Any], dims: Sequence[str]) -> Key:
    return tuple(data_id[d] for d in dims)


def _wrap(what: str, exc: RegistryError) -> PreflightError:
    return PreflightError(f"{what}: {exc}")


def build_quantum_graph(
    registry: DiscoveryRegistry,
    pipeline: Pipeline | Sequence[TaskNode],
    *,
    collections: str | Sequence[str],
    run: str,
    where: str = "",
    bind: Mapping[str, Any] | None = None,
    data_id: Mapping[str, int | str] | None = None,
    outputs: Sequence[str] = (),
    output_where: str = "",
    steps: Sequence[str] = (),
    log_level: int | str | None = None,
    log_format: LogFormat = "text",
    log_file: str | os.PathLike[str] | None = None,
) -> QuantumGraph:
    """Build the quantum graph of a pipeline over the data a query selects.

    Parameters
    ----------
    registry : Registry
        The butler registry (or anything with the :class:`DiscoveryRegistry` methods).
    pipeline : Pipeline or sequence of TaskNode
        What to run (validated with :meth:`Pipeline.resolve`).
    collections : str or sequence of str
        Input collections, searched in order.
    run : str
        Output RUN collection (used for the predicted outputs' ids).
    where, bind, data_id
        Query on the inputs (REQ-0027 "by inputs").
    outputs : sequence of str
        Desired output dataset types (REQ-0027 "by outputs"): only the
        quanta needed to make them are kept.
    output_where : str
        Restricts the desired outputs' data IDs (with ``outputs``).
    steps : sequence of str
        Plan only the tasks of these steps (their upstream outputs must exist).
    log_level : int or str, optional
        Standard logging of the pre-flight phase at this level (REQ-0025),
        undone when the graph is built; None leaves logging as it is.
    log_format : {"text", "json"}
        Line format of that logging.
    log_file : path, optional
        Append log lines to this file instead of stderr.

    Returns
    -------
    QuantumGraph
        Possibly empty; then ``graph.explanation`` says which input was missing.

    Raises
    ------
    PipelineDefinitionError
        If the pipeline is invalid.
    UnknownDatasetTypeError
        If a connection names a dataset type that is neither registered nor produced.
    PreflightError
        If a registry query fails or a dataset type disagrees with its registered definition.
    """
    with pipeline_logging(log_level, fmt=log_format, file=log_file):
        return _build_quantum_graph(registry, pipeline, collections=collections, run=run, where=where, bind=bind,
                                    data_id=data_id, outputs=outputs, output_where=output_where, steps=steps)


def _build_quantum_graph(
    registry: DiscoveryRegistry,
    pipeline: Pipeline | Sequence[TaskNode],
    *,
    collections: str | Sequence[str],
    run: str,
    where: str,
    bind: Mapping[str, Any] | None,
    data_id: Mapping[str, int | str] | None,
    outputs: Sequence[str],
    output_where: str,
    steps: Sequence[str],
) -> QuantumGraph:
    t0 = time.perf_counter()
    if isinstance(pipeline, Pipeline):
        nodes = pipeline.resolve(known_dimensions=registry.universe.names)
        pipeline_doc = pipeline.to_dict()
    else:
        nodes = list(pipeline)
        pipeline_doc = None
    if steps:
        wanted = set(steps)
        unknown = wanted - {n.step for n in nodes}
        if unknown:
            raise PipelineDefinitionError(f"pipeline has no step(s) {sorted(unknown)}")
        nodes = [n for n in nodes if n.step in wanted]
    plan = _Plan(registry, [collections] if isinstance(collections, str) else list(collections), run,
                 where, dict(bind or {}), dict(data_id or {}))
    for node in nodes:
        for c in node.of_kind("output", "init_output"):
            plan.produced[c.dataset_type.name] = node.label
    _resolve_types(plan, nodes)
    quanta: list[Quantum] = []
    for node in nodes:
        made = _plan_task(plan, node)
        _log.info("pre-flight: task %s has %d quanta", node.label, len(made))
        quanta.extend(made)
    init_inputs, init_outputs = _plan_init(plan, nodes)
    metadata: dict[str, Any] = {
        "run": run, "collections": plan.collections, "where": where, "bind": plan.bind, "data_id": plan.data_id,
        "outputs": list(outputs), "output_where": output_where, "steps": list(steps),
        "pipeline": pipeline_doc, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "user": getpass.getuser(), "host": socket.gethostname(), "nightshift_version": __version__,
    }
    graph = QuantumGraph(nodes, quanta, init_inputs=init_inputs, init_outputs=init_outputs, metadata=metadata)
    if outputs:
        graph = _select_outputs(plan, graph, outputs, output_where)
    if plan.dropped:
        graph.metadata["dropped"] = dict(plan.dropped)
    if plan.notes:
        graph.metadata["explanation"] = "\n".join(plan.notes)
    graph.metadata["preflight_seconds"] = round(time.perf_counter() - t0, 3)
    _log.info("pre-flight: %d quanta in %.2f s", len(graph), time.perf_counter() - t0)
    return graph


def _resolve_types(plan: _Plan, nodes: Sequence[TaskNode]) -> None:
    """Check every connection's dataset type against the registry; remember the registered definitions."""
    for node in nodes:
        for c in node.connections.values():
            name = c.dataset_type.name
            try:
                registered: DatasetType | None = plan.registry.get_dataset_type(name)
            except MissingDatasetTypeError:
                registered = None
            except RegistryError as exc:
                raise _wrap(f"task {node.label!r}", exc) from exc
            if registered is None:
                if name not in plan.produced:
                    raise UnknownDatasetTypeError(
                        f"task {node.label!r}, connection {c.name!r}: dataset type {name!r} is not registered and no "
                        "task of the pipeline produces it (register it, or fix config.connections)"
                    )
                plan.types[name] = c.dataset_type
                continue
            if (registered.dimensions, registered.storage_class) != (c.dataset_type.dimensions,
                                                                    c.dataset_type.storage_class):
                raise PreflightError(
                    f"task {node.label!r}, connection {c.name!r}: dataset type {name!r} is registered with dimensions "
                    f"{list(registered.dimensions)} and storage class {registered.storage_class}, but the connection "
                    f"declares {list(c.dataset_type.dimensions)} and {c.dataset_type.storage_class}"
                )
            plan.types[name] = registered


def _search_path(plan: _Plan, dt: DatasetType) -> list[str]:
    """The input collections to search for ``dt``: CALIBRATION collections only for calibration types."""
    if dt.is_calibration:
        return plan.collections
    resolve = getattr(plan.registry, "resolve_collections", None)
    if resolve is None:
        return plan.collections
    try:
        leaves = resolve(plan.collections)
    except RegistryError as exc:
        raise _wrap(f"input collections {plan.collections}", exc) from exc
    return [c.name for c in leaves if getattr(c.type, "name", "") != "CALIBRATION"]


def _external_refs(plan: _Plan, dt: DatasetType) -> dict[Key, list[DatasetRef]]:
    found = plan.external.get(dt.name)
    if found is None:
        try:
            path = _search_path(plan, dt)
            refs = plan.registry.query_datasets(dt, path, where=plan.where, bind=plan.bind,
                                                data_id=_restrict(plan.data_id, dt.dimensions)) if path else []
        except RegistryError as exc:
            raise _wrap(f"querying {dt.name!r} in {plan.collections}", exc) from exc
        found = defaultdict(list)
        for r in refs:
            found[_key(r.data_id, dt.dimensions)].append(r)
        plan.external[dt.name] = found
    return found


def _restrict(data_id: Mapping[str, Any], dims: Iterable[str]) -> dict[str, Any]:
    dims = set(dims)
    return {k: v for k, v in data_id.items() if k in dims}


def _input_index(plan: _Plan, c: ResolvedConnection) -> dict[Key, list[DatasetRef]]:
    name = c.dataset_type.name
    if name in plan.produced:
        return {k: [r] for k, r in plan.predicted.get(name, {}).items()}
    return _external_refs(plan, plan.types[name])


def _plan_task(plan: _Plan, node: TaskNode) -> list[Quantum]:
    universe = plan.registry.universe
    qdims = universe.sorted(node.dimensions)
    inputs = node.of_kind("input")
    indexes = {c.name: _input_index(plan, c) for c in inputs}
    drivers = [c for c in inputs if set(qdims) <= set(c.dataset_type.dimensions) and c.min_count > 0]
    groups: dict[Key, dict[str, dict[Any, DatasetRef]]] = {}
    qids: dict[Key, dict[str, Any]] = {}
    if drivers:
        # fast path: quantum data IDs are projections of the driving inputs' data IDs
        keysets = []
        for c in drivers:
            dims = c.dataset_type.dimensions
            pos = [dims.index(d) for d in qdims]
            ks: set[Key] = set()
            for k, refs in indexes[c.name].items():
                qk = tuple(k[p] for p in pos)
                ks.add(qk)
                slot = groups.setdefault(qk, {}).setdefault(c.name, {})
                for r in refs:
                    slot[r.id] = r
            keysets.append(ks)
        keys = set.intersection(*keysets) if keysets else set()
        for qk in keys:
            qids[qk] = dict(zip(qdims, qk, strict=True))
        others = [c for c in inputs if c not in drivers]
        for c in others:
            idx = indexes[c.name]
            dims = c.dataset_type.dimensions
            if set(dims) <= set(qdims):
                for qk, qid in qids.items():
                    refs = idx.get(_key(qid, dims), [])
                    slot = groups.setdefault(qk, {}).setdefault(c.name, {})
                    for r in refs:
                        slot[r.id] = r
            else:
                _join_through_registry(plan, node, qdims, [c], indexes, groups, qids, add_keys=False)
    else:
        _join_through_registry(plan, node, qdims, inputs, indexes, groups, qids, add_keys=True)
    if not qids:
        _explain_empty(plan, node, inputs)
        return []
    out: list[Quantum] = []
    for qk in sorted(qids, key=_sort_key):
        qid = qids[qk]
        conns = groups.get(qk, {})
        q_inputs: dict[str, list[DatasetRef]] = {}
        missing = None
        for c in inputs:
            refs = list(conns.get(c.name, {}).values())
            if len(refs) > 1:
                refs.sort(key=lambda r: _sort_key(tuple(r.data_id.values())))
            if len(refs) < c.min_count:
                missing = c
                break
            if not c.multiple and len(refs) > 1:
                raise PreflightError(
                    f"task {node.label!r} {qid}: input {c.name!r} ({c.dataset_type.name}) matches {len(refs)} "
                    "datasets but is not declared multiple=True"
                )
            q_inputs[c.name] = refs
        if missing is not None:
            plan.dropped[f"{node.label}: no {missing.dataset_type.name}"] += 1
            continue
        ok = _add_prerequisites(plan, node, qid, q_inputs)
        if not ok:
            continue
        q_outputs = {}
        for c in node.of_kind("output"):
            dt = plan.types[c.dataset_type.name]
            ref = DatasetRef(dt, {d: qid[d] for d in dt.dimensions}, plan.run)
            q_outputs[c.name] = [ref]
            plan.predicted.setdefault(dt.name, {})[_key(ref.data_id, dt.dimensions)] = ref
        meta_type = node.metadata_dataset_type
        q_outputs[METADATA_CONNECTION] = [DatasetRef(meta_type, qid, plan.run)]
        out.append(Quantum(0, node.label, qid, q_inputs, q_outputs))
    if not out:
        plan.notes.append(
            f"task {node.label!r}: every candidate data ID lacked an input ({', '.join(sorted(plan.dropped))})"
        )
    return out


def _sort_key(k: Key) -> tuple[Any, ...]:
    return tuple((0, v) if isinstance(v, int) else (1, str(v)) for v in k)


def _join_through_registry(plan: _Plan, node: TaskNode, qdims: Sequence[str], conns: Sequence[ResolvedConnection],
                           indexes: Mapping[str, Mapping[Key, list[DatasetRef]]],
                           groups: dict[Key, dict[str, dict[Any, DatasetRef]]], qids: dict[Key, dict[str, Any]],
                           *, add_keys: bool) -> None:
    """Relate quantum data IDs to input data IDs through a registry data-ID query (spatial/implied joins)."""
    dims = set(qdims)
    for c in conns:
        dims.update(c.dataset_type.dimensions)
    external = [plan.types[c.dataset_type.name] for c in conns
                if c.dataset_type.name not in plan.produced and c.min_count > 0]
    search = list(dict.fromkeys(n for dt in external for n in _search_path(plan, dt)))
    try:
        rows = plan.registry.query_data_ids(
            dims, where=plan.where, bind=plan.bind, data_id=_restrict(plan.data_id, plan.registry.universe.names),
            datasets=external, collections=search if external else None,
        )
    except RegistryError as exc:
        raise _wrap(f"task {node.label!r}: data ID query over {sorted(dims)}", exc) from exc
    for row in rows:
        qk = _key(row, qdims)
        if add_keys:
            qids.setdefault(qk, {d: row[d] for d in qdims})
        elif qk not in qids:
            continue
        slot_map = groups.setdefault(qk, {})
        for c in conns:
            refs = indexes[c.name].get(_key(row, c.dataset_type.dimensions), [])
            slot = slot_map.setdefault(c.name, {})
            for r in refs:
                slot[r.id] = r


def _timespan_begin(plan: _Plan, qid: Mapping[str, Any], cache: dict[Key, Any]) -> Any:
    for element in ("exposure", "visit"):
        if element in qid:
            req = plan.registry.universe.required_closure([element])
            k = (element, *(qid[d] for d in req))
            if k not in cache:
                rec = plan.registry.get_dimension_record(element, {d: qid[d] for d in req})
                span = rec.get("timespan") if rec is not None else None
                cache[k] = getattr(span, "begin_ns", None)
            return cache[k]
    return None


def _add_prerequisites(plan: _Plan, node: TaskNode, qid: dict[str, Any], q_inputs: dict[str, list[DatasetRef]]) -> bool:
    cache = plan.time_cache
    for c in node.of_kind("prerequisite"):
        dt = plan.types[c.dataset_type.name]
        try:
            if c.lookup is not None:
                refs = list(c.lookup(plan.registry, dt, plan.collections, dict(qid)))
            elif dt.is_calibration:
                when = _timespan_begin(plan, qid, cache)
                ref = plan.registry.find_dataset(dt, {d: qid[d] for d in dt.dimensions if d in qid},
                                                 plan.collections, time=when)
                refs = [ref] if ref is not None else []
            elif set(dt.dimensions) <= set(qid):
                idx = plan.external.get("prereq:" + dt.name)
                if idx is None:
                    idx = defaultdict(list)
                    for r in plan.registry.query_datasets(dt, _search_path(plan, dt)):
                        idx[_key(r.data_id, dt.dimensions)].append(r)
                    plan.external["prereq:" + dt.name] = idx
                refs = list(idx.get(_key(qid, dt.dimensions), []))
            else:
                rows = plan.registry.query_data_ids([*qid, *dt.dimensions], data_id=qid, datasets=[dt],
                                                    collections=plan.collections)
                refs = []
                for row in rows:
                    ref = plan.registry.find_dataset(dt, {d: row[d] for d in dt.dimensions}, plan.collections)
                    if ref is not None:
                        refs.append(ref)
        except RegistryError as exc:
            raise _wrap(f"task {node.label!r} {qid}: prerequisite {c.name!r}", exc) from exc
        if len(refs) < c.min_count:
            plan.dropped[f"{node.label}: no prerequisite {dt.name}"] += 1
            return False
        if not c.multiple and len(refs) > 1:
            raise PreflightError(
                f"task {node.label!r} {qid}: prerequisite {c.name!r} ({dt.name}) matches {len(refs)} datasets but is "
                "not declared multiple=True"
            )
        q_inputs[c.name] = refs
    return True


def _explain_empty(plan: _Plan, node: TaskNode, inputs: Sequence[ResolvedConnection]) -> None:
    for c in inputs:
        name = c.dataset_type.name
        if name in plan.produced:
            if not plan.predicted.get(name):
                plan.notes.append(
                    f"task {node.label!r} has no quanta: its input {c.name!r} ({name}) comes from task "
                    f"{plan.produced[name]!r}, which has none"
                )
                return
        elif not plan.external.get(name):
            cond = f" matching where {plan.where!r}" if plan.where else ""
            plan.notes.append(
                f"task {node.label!r} has no quanta: no {name!r} datasets (input {c.name!r}) in collections "
                f"{plan.collections}{cond}"
            )
            return
    cond = f" matching where {plan.where!r}" if plan.where else ""
    plan.notes.append(
        f"task {node.label!r} has no quanta: its inputs exist but share no data ID over {list(node.dimensions)}{cond}"
    )


def _plan_init(plan: _Plan, nodes: Sequence[TaskNode]) -> tuple[dict[str, dict[str, DatasetRef]],
                                                                 dict[str, dict[str, DatasetRef]]]:
    init_outputs: dict[str, dict[str, DatasetRef]] = {}
    made: dict[str, DatasetRef] = {}
    for node in nodes:
        outs = {c.name: DatasetRef(plan.types[c.dataset_type.name], {}, plan.run) for c in node.of_kind("init_output")}
        outs[CONFIG_SUFFIX] = DatasetRef(node.config_dataset_type, {}, plan.run)
        init_outputs[node.label] = outs
        made.update({r.dataset_type.name: r for r in outs.values()})
    init_inputs: dict[str, dict[str, DatasetRef]] = {}
    for node in nodes:
        ins = {}
        for c in node.of_kind("init_input"):
            name = c.dataset_type.name
            ref = made.get(name)
            if ref is None:
                try:
                    ref = plan.registry.find_dataset(plan.types[name], {}, plan.collections)
                except RegistryError as exc:
                    raise _wrap(f"task {node.label!r}: init-input {c.name!r}", exc) from exc
            if ref is None:
                raise PreflightError(f"task {node.label!r}: init-input {c.name!r} ({name}) not found in "
                                     f"{plan.collections}")
            ins[c.name] = ref
        init_inputs[node.label] = ins
    return init_inputs, init_outputs


def _select_outputs(plan: _Plan, graph: QuantumGraph, outputs: Sequence[str], output_where: str) -> QuantumGraph:
    """Keep the quanta that make the desired outputs and their ancestors (REQ-0027)."""
    unknown = [o for o in outputs if o not in plan.produced]
    if unknown:
        raise UnknownDatasetTypeError(f"desired outputs {unknown} are not produced by the pipeline "
                                      f"(it produces {sorted(plan.produced)})")
    allowed: dict[str, set[Key]] | None = None
    if output_where:
        allowed = {}
        for name in outputs:
            dt = plan.types[name]
            try:
                rows = plan.registry.query_data_ids(dt.dimensions, where=output_where, bind=plan.bind)
            except RegistryError as exc:
                raise _wrap(f"output query {output_where!r}", exc) from exc
            allowed[name] = {_key(r, dt.dimensions) for r in rows}
    targets = []
    for q in graph.quanta:
        for refs in q.outputs.values():
            for r in refs:
                name = r.dataset_type.name
                if name in outputs and (allowed is None or _key(r.data_id, r.dataset_type.dimensions) in allowed[name]):
                    targets.append(q.index)
    deps = graph.dependencies()
    keep: set[int] = set()
    todo = list(targets)
    while todo:
        i = todo.pop()
        if i not in keep:
            keep.add(i)
            todo.extend(deps[i])
    sub = graph.subset(sorted(keep))
    if not keep:
        cond = f" matching {output_where!r}" if output_where else ""
        plan.notes.append(f"no quantum makes the desired outputs {list(outputs)}{cond} from the selected inputs")
    return sub
