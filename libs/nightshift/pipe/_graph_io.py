"""Compact, versioned serialization of quantum graphs (REQ-0022).

File layout (all integers little-endian)::

    b"NSQG"  u16 format version  u32 header length  header (zlib JSON)
    then named binary sections, each  u8 name length, name, u64 length, bytes

The header holds the tasks (class, config, hashes, connections), the
distinct dataset types and runs, the metadata, and the data IDs stored
column-wise per set of dimensions. Refs are a table of (uuid, type, run,
data ID) indices; quanta index into it. A 200x189 three-step graph is a few
MB. Readers refuse newer versions with :class:`GraphFormatError`.
"""

from __future__ import annotations

import io
import json
import os
import struct
import uuid
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..butler import DatasetRef, DatasetType
from ._config import ConfigOverride
from ._exceptions import GraphFormatError
from ._graph import Quantum, QuantumGraph
from ._pipeline import ResolvedConnection, TaskNode, import_task_class

__all__ = ["FORMAT_VERSION", "graph_from_bytes", "graph_to_bytes", "read_graph", "write_graph"]

MAGIC = b"NSQG"
FORMAT_VERSION = 1


def _task_to_dict(node: TaskNode) -> dict[str, Any]:
    return {
        "label": node.label, "class": node.task_class_name, "config": node.config.model_dump(mode="json"),
        "config_hash": node.config_hash, "code_version": node.code_version, "dimensions": list(node.dimensions),
        "step": node.step, "overrides": [o.to_dict() for o in node.overrides],
        "connections": [
            {"name": c.name, "kind": c.kind, "dataset_type": c.dataset_type.to_dict(), "multiple": c.multiple,
             "min_count": c.min_count, "deferred": c.deferred}
            for c in node.connections.values()
        ],
    }


def _task_from_dict(data: Mapping[str, Any]) -> TaskNode:
    cls = import_task_class(data["class"])
    return TaskNode(
        label=data["label"], task_class_name=data["class"], config=cls.ConfigClass.model_validate(data["config"]),
        config_hash=data["config_hash"], code_version=data["code_version"], dimensions=tuple(data["dimensions"]),
        connections={c["name"]: ResolvedConnection(c["name"], c["kind"], DatasetType.from_dict(c["dataset_type"]),
                                                   c["multiple"], c["min_count"], None, c.get("deferred", False))
                     for c in data["connections"]},
        step=data.get("step"), overrides=tuple(ConfigOverride(**o) for o in data.get("overrides", [])),
    )


class _Tables:
    """Interning tables built while writing."""

    def __init__(self) -> None:
        self.types: dict[DatasetType, int] = {}
        self.runs: dict[str, int] = {}
        self.groups: dict[tuple[str, ...], int] = {}
        self.group_rows: list[list[tuple[Any, ...]]] = []
        self.data_ids: dict[tuple[int, tuple[Any, ...]], int] = {}
        self.did_list: list[tuple[int, int]] = []  # (group, row in group)
        self.refs: dict[uuid.UUID, int] = {}
        self.ref_rows: list[tuple[bytes, int, int, int]] = []

    def data_id(self, data_id: Mapping[str, Any]) -> int:
        dims = tuple(data_id)
        g = self.groups.get(dims)
        if g is None:
            g = self.groups[dims] = len(self.groups)
            self.group_rows.append([])
        values = tuple(data_id.values())
        key = (g, values)
        idx = self.data_ids.get(key)
        if idx is None:
            idx = self.data_ids[key] = len(self.did_list)
            self.did_list.append((g, len(self.group_rows[g])))
            self.group_rows[g].append(values)
        return idx

    def ref(self, ref: DatasetRef) -> int:
        idx = self.refs.get(ref.id)
        if idx is None:
            t = self.types.setdefault(ref.dataset_type, len(self.types))
            r = self.runs.setdefault(ref.run, len(self.runs))
            idx = self.refs[ref.id] = len(self.ref_rows)
            self.ref_rows.append((ref.id.bytes, t, r, self.data_id(ref.data_id)))
        return idx


def _section(name: str, data: bytes) -> bytes:
    raw = name.encode()
    return struct.pack("<B", len(raw)) + raw + struct.pack("<Q", len(data)) + data


def graph_to_bytes(graph: QuantumGraph) -> bytes:
    """Serialize a graph (see the module docstring for the layout)."""
    t = _Tables()
    conn_names: dict[str, list[str]] = {}
    for label, node in graph.tasks.items():
        conn_names[label] = [*node.connections, "_metadata"]
    conn_index = {label: {n: i for i, n in enumerate(names)} for label, names in conn_names.items()}
    task_index = {label: i for i, label in enumerate(graph.tasks)}
    q_task = np.empty(len(graph.quanta), dtype="<u2")
    q_did = np.empty(len(graph.quanta), dtype="<u4")
    q_start = np.zeros(len(graph.quanta) + 1, dtype="<u8")
    links: list[int] = []
    link_conn: list[int] = []
    link_role: list[int] = []
    for i, q in enumerate(graph.quanta):
        q_task[i] = task_index[q.task_label]
        q_did[i] = t.data_id(q.data_id)
        ci = conn_index[q.task_label]
        for role, mapping in ((0, q.inputs), (1, q.outputs)):
            for name, refs in mapping.items():
                c = ci[name]
                for r in refs:
                    links.append(t.ref(r))
                    link_conn.append(c)
                    link_role.append(role)
        q_start[i + 1] = len(links)
    init = {}
    for kind, table in (("init_inputs", graph.init_inputs), ("init_outputs", graph.init_outputs)):
        init[kind] = {label: {name: t.ref(r) for name, r in refs.items()} for label, refs in table.items()}
    header = {
        "version": FORMAT_VERSION,
        "metadata": graph.metadata,
        "tasks": [_task_to_dict(n) for n in graph.tasks.values()],
        "connection_names": conn_names,
        "dataset_types": [dt.to_dict() for dt in t.types],
        "runs": list(t.runs),
        "data_id_groups": [
            {"dimensions": list(dims), "columns": [list(col) for col in zip(*t.group_rows[g], strict=True)]
             if t.group_rows[g] and dims else [], "n": len(t.group_rows[g])}
            for dims, g in t.groups.items()
        ],
        "init": init,
        "n_quanta": len(graph.quanta),
        "n_refs": len(t.ref_rows),
    }
    head = zlib.compress(json.dumps(header, separators=(",", ":"), default=str).encode(), 6)
    n = len(t.ref_rows)
    ref_ids = b"".join(r[0] for r in t.ref_rows)
    ref_type = np.fromiter((r[1] for r in t.ref_rows), dtype="<u2", count=n)
    ref_run = np.fromiter((r[2] for r in t.ref_rows), dtype="<u2", count=n)
    ref_did = np.fromiter((r[3] for r in t.ref_rows), dtype="<u4", count=n)
    did_group = np.fromiter((g for g, _ in t.did_list), dtype="<u2", count=len(t.did_list))
    did_row = np.fromiter((r for _, r in t.did_list), dtype="<u4", count=len(t.did_list))
    ref_dtype = "<u4" if n < 2**32 else "<u8"
    buf = io.BytesIO()
    buf.write(MAGIC + struct.pack("<HI", FORMAT_VERSION, len(head)) + head)
    for name, arr in (
        ("ref_id", ref_ids), ("ref_type", ref_type), ("ref_run", ref_run), ("ref_did", ref_did),
        ("did_group", did_group), ("did_row", did_row), ("q_task", q_task), ("q_did", q_did),
        ("q_start", q_start), ("links", np.asarray(links, dtype=ref_dtype)),
        ("link_conn", zlib.compress(np.asarray(link_conn, dtype="<u2").tobytes(), 1)),
        ("link_role", zlib.compress(np.asarray(link_role, dtype="<u1").tobytes(), 1)),
    ):
        buf.write(_section(name, arr if isinstance(arr, bytes) else arr.tobytes()))
    return buf.getvalue()


def graph_from_bytes(data: bytes) -> QuantumGraph:
    """Deserialize a graph.

    Raises
    ------
    GraphFormatError
        If the bytes are not a quantum graph or the version is unsupported.
    """
    if data[:4] != MAGIC or len(data) < 10:
        raise GraphFormatError("not a nightshift quantum graph (bad magic bytes)")
    version, head_len = struct.unpack_from("<HI", data, 4)
    if version > FORMAT_VERSION:
        raise GraphFormatError(
            f"quantum graph format version {version} is newer than this nightshift reads ({FORMAT_VERSION}); upgrade"
        )
    try:
        header = json.loads(zlib.decompress(data[10:10 + head_len]))
    except (zlib.error, ValueError) as exc:
        raise GraphFormatError(f"corrupt quantum graph header: {exc}") from exc
    pos = 10 + head_len
    sections: dict[str, memoryview] = {}
    view = memoryview(data)
    while pos < len(data):
        (nlen,) = struct.unpack_from("<B", data, pos)
        name = bytes(data[pos + 1:pos + 1 + nlen]).decode()
        (size,) = struct.unpack_from("<Q", data, pos + 1 + nlen)
        start = pos + 9 + nlen
        if start + size > len(data):
            raise GraphFormatError(f"truncated quantum graph file (section {name!r})")
        sections[name] = view[start:start + size]
        pos = start + size
    try:
        return _assemble(header, sections)
    except KeyError as exc:
        raise GraphFormatError(f"quantum graph file lacks {exc}") from exc


def _assemble(header: dict[str, Any], s: Mapping[str, memoryview]) -> QuantumGraph:
    tasks = [_task_from_dict(d) for d in header["tasks"]]
    types = [DatasetType.from_dict(d) for d in header["dataset_types"]]
    runs = header["runs"]
    group_ids: list[list[dict[str, Any]]] = []
    for g in header["data_id_groups"]:
        dims = g["dimensions"]
        if not dims:
            group_ids.append([{} for _ in range(g["n"])])
        else:
            group_ids.append([dict(zip(dims, row, strict=True)) for row in zip(*g["columns"], strict=True)])
    did_group = np.frombuffer(s["did_group"], dtype="<u2").tolist()
    did_row = np.frombuffer(s["did_row"], dtype="<u4").tolist()
    data_ids = [group_ids[g][r] for g, r in zip(did_group, did_row, strict=True)]
    refs = _RefTable(types, runs, data_ids, bytes(s["ref_id"]), np.frombuffer(s["ref_type"], dtype="<u2").tolist(),
                     np.frombuffer(s["ref_run"], dtype="<u2").tolist(),
                     np.frombuffer(s["ref_did"], dtype="<u4").tolist())
    labels = [t.label for t in tasks]
    conn_names = header["connection_names"]
    q_task = np.frombuffer(s["q_task"], dtype="<u2").tolist()
    q_did = np.frombuffer(s["q_did"], dtype="<u4").tolist()
    q_start = np.frombuffer(s["q_start"], dtype="<u8").tolist()
    n_refs = header["n_refs"]
    links = _Links(np.frombuffer(s["links"], dtype="<u4" if n_refs < 2**32 else "<u8").tolist(),
                   np.frombuffer(zlib.decompress(s["link_conn"]), dtype="<u2").tolist(),
                   np.frombuffer(zlib.decompress(s["link_role"]), dtype="<u1").tolist(), refs)
    quanta: list[Quantum] = [
        _LazyQuantum(i, labels[ti], dict(data_ids[di]), links, conn_names[labels[ti]], q_start[i], q_start[i + 1])
        for i, (ti, di) in enumerate(zip(q_task, q_did, strict=True))
    ]
    init = header["init"]
    graph = QuantumGraph(
        tasks, quanta,
        init_inputs={lab: {n: refs[i] for n, i in m.items()} for lab, m in init["init_inputs"].items()},
        init_outputs={lab: {n: refs[i] for n, i in m.items()} for lab, m in init["init_outputs"].items()},
        metadata=header["metadata"],
    )
    graph._deps = links.dependencies(q_start)  # from indices: no DatasetRef needs to be built for this
    return graph


class _RefTable:
    """Dataset refs of a graph file, each built on first use (a worker needs only its quanta's)."""

    def __init__(self, types: list[DatasetType], runs: list[str], data_ids: list[dict[str, Any]], raw_ids: bytes,
                 ref_type: list[int], ref_run: list[int], ref_did: list[int]) -> None:
        self._args = (types, runs, data_ids, raw_ids, ref_type, ref_run, ref_did)
        self._cache: list[DatasetRef | None] = [None] * len(ref_type)

    def __len__(self) -> int:
        return len(self._cache)

    def __getitem__(self, i: int) -> DatasetRef:
        ref = self._cache[i]
        if ref is None:
            types, runs, data_ids, raw_ids, ref_type, ref_run, ref_did = self._args
            ref = self._cache[i] = DatasetRef(types[ref_type[i]], data_ids[ref_did[i]], runs[ref_run[i]],
                                              uuid.UUID(bytes=raw_ids[16 * i:16 * i + 16]))
        return ref


class _Links:
    """The quantum -> ref links of a graph file (ref index, connection index, role 0=input 1=output)."""

    def __init__(self, refs: list[int], conns: list[int], roles: list[int], table: _RefTable) -> None:
        self.refs, self.conns, self.roles, self.table = refs, conns, roles, table

    def dependencies(self, q_start: list[int]) -> list[list[int]]:
        producer = [-1] * len(self.table)
        refs, roles = self.refs, self.roles
        n = len(q_start) - 1
        for q in range(n):
            for k in range(q_start[q], q_start[q + 1]):
                if roles[k]:
                    producer[refs[k]] = q
        out: list[list[int]] = []
        for q in range(n):
            found = {producer[refs[k]] for k in range(q_start[q], q_start[q + 1]) if not roles[k]}
            found.discard(-1)
            found.discard(q)
            out.append(sorted(found))
        return out


class _LazyQuantum(Quantum):
    """A quantum read from a graph file: its inputs and outputs are materialized on first access."""

    def __init__(self, index: int, task_label: str, data_id: dict[str, Any], links: _Links, names: list[str],
                 start: int, end: int) -> None:
        self.index = index
        self.task_label = task_label
        self.data_id = data_id
        self._source: tuple[_Links, list[str], int, int] | None = (links, names, start, end)
        self._inputs: dict[str, list[DatasetRef]] = {}
        self._outputs: dict[str, list[DatasetRef]] = {}

    def _load(self) -> None:
        if self._source is None:
            return
        links, names, start, end = self._source
        for k in range(start, end):
            target = self._outputs if links.roles[k] else self._inputs
            target.setdefault(names[links.conns[k]], []).append(links.table[links.refs[k]])
        self._source = None

    @property
    def inputs(self) -> dict[str, list[DatasetRef]]:
        self._load()
        return self._inputs

    @inputs.setter
    def inputs(self, value: dict[str, list[DatasetRef]]) -> None:
        self._load()
        self._inputs = value

    @property
    def outputs(self) -> dict[str, list[DatasetRef]]:
        self._load()
        return self._outputs

    @outputs.setter
    def outputs(self, value: dict[str, list[DatasetRef]]) -> None:
        self._load()
        self._outputs = value


def write_graph(graph: QuantumGraph, path: str | os.PathLike[str]) -> int:
    """Write atomically (temp file + rename); returns the size in bytes."""
    data = graph_to_bytes(graph)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return len(data)


def read_graph(path: str | os.PathLike[str]) -> QuantumGraph:
    """Read a graph file.

    Raises
    ------
    GraphFormatError
        If it is not a readable quantum graph.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GraphFormatError(f"cannot read quantum graph {path}: {exc}") from exc
    return graph_from_bytes(data)
