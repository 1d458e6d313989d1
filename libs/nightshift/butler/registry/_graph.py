"""The pre-flight graph: data IDs linked to the datasets that can feed them (REQ-0083)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .._dataset_ref import DatasetRef

__all__ = ["DatasetGraph"]

DataIdKey = tuple[int | str, ...]


class DatasetGraph:
    """A bipartite graph of data-ID nodes and input datasets.

    Nodes are data IDs over :attr:`dimensions`; each is linked to the input
    datasets whose data IDs agree with it. Simple queries give graphs that
    are just flat lists (iterate :meth:`data_ids`).
    """

    def __init__(self, dimensions: Iterable[str]) -> None:
        self.dimensions: tuple[str, ...] = tuple(dimensions)
        self._nodes: dict[DataIdKey, dict[str, int | str]] = {}
        self._edges: dict[DataIdKey, dict[object, DatasetRef]] = {}

    def _key(self, data_id: Mapping[str, int | str]) -> DataIdKey:
        return tuple(data_id[d] for d in self.dimensions)

    def add_node(self, data_id: Mapping[str, int | str]) -> None:
        """Add a data-ID node (idempotent)."""
        key = self._key(data_id)
        if key not in self._nodes:
            self._nodes[key] = {d: data_id[d] for d in self.dimensions}
            self._edges[key] = {}

    def add_edge(self, data_id: Mapping[str, int | str], ref: DatasetRef) -> None:
        """Link a node to an input dataset."""
        self.add_node(data_id)
        self._edges[self._key(data_id)][ref.id] = ref

    def data_ids(self) -> list[dict[str, int | str]]:
        """All nodes, in insertion (sorted) order."""
        return [dict(v) for v in self._nodes.values()]

    def inputs(self, data_id: Mapping[str, int | str], dataset_type: str | None = None) -> list[DatasetRef]:
        """Input datasets linked to one node (optionally of one type)."""
        refs = self._edges.get(self._key(data_id), {}).values()
        return [r for r in refs if dataset_type is None or r.dataset_type.name == dataset_type]

    def datasets(self) -> list[DatasetRef]:
        """Every distinct input dataset in the graph."""
        seen: dict[object, DatasetRef] = {}
        for edges in self._edges.values():
            seen.update(edges)
        return list(seen.values())

    def edges(self) -> Iterator[tuple[dict[str, int | str], DatasetRef]]:
        """(data ID, input dataset) pairs."""
        for key, refs in self._edges.items():
            for ref in refs.values():
                yield dict(self._nodes[key]), ref

    def __len__(self) -> int:
        return len(self._nodes)

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly form (for pre-flight in another process)."""
        return {
            "dimensions": list(self.dimensions),
            "nodes": [
                {"data_id": dict(self._nodes[k]), "inputs": [r.to_dict() for r in self._edges[k].values()]}
                for k in self._nodes
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetGraph:
        """Inverse of :meth:`to_dict`."""
        graph = cls(data["dimensions"])
        for node in data["nodes"]:
            graph.add_node(node["data_id"])
            for ref in node["inputs"]:
                graph.add_edge(node["data_id"], DatasetRef.from_dict(ref))
        return graph
