"""Quantum graph structure, compact versioned serialization, loading in another process, picture."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from pipe_support import COLLECTIONS

from nightshift.butler._butler import Butler
from nightshift.pipe import FORMAT_VERSION, GraphFormatError, Pipeline, QuantumGraph, build_quantum_graph
from nightshift.pipe.examples import EXAMPLE_PIPELINE


@pytest.fixture
def graph(repo: Butler) -> QuantumGraph:
    pipe = Pipeline.from_yaml(EXAMPLE_PIPELINE)
    pipe.add_override_string("calibrate:measure.threshold=4.0")
    return build_quantum_graph(repo.registry, pipe, collections=COLLECTIONS, run="u/g/run")


def _fingerprint(g: QuantumGraph) -> list[tuple]:
    return [
        (q.task_label, q.data_id, {k: [(r.id, r.dataset_type.name, dict(r.data_id), r.run) for r in v]
                                   for k, v in q.inputs.items()},
         {k: [(r.id, r.dataset_type, dict(r.data_id), r.run) for r in v] for k, v in q.outputs.items()})
        for q in g.quanta
    ]


def test_round_trip_is_exact(graph: QuantumGraph, tmp_path: Path) -> None:
    size = graph.save(tmp_path / "g.qg")
    loaded = QuantumGraph.load(tmp_path / "g.qg")
    assert _fingerprint(loaded) == _fingerprint(graph)
    assert loaded.dependencies() == graph.dependencies()
    assert loaded.metadata == json.loads(json.dumps(graph.metadata))
    assert loaded.init_outputs == graph.init_outputs
    node, orig = loaded.tasks["calibrate"], graph.tasks["calibrate"]
    assert node.config == orig.config and node.config_hash == orig.config_hash
    assert node.overrides == orig.overrides and node.code_version == orig.code_version
    assert [q.id for q in loaded.quanta] == [q.id for q in graph.quanta]
    assert size == (tmp_path / "g.qg").stat().st_size < 20_000  # compact: 16 quanta, ~60 refs


def test_loads_in_another_process(graph: QuantumGraph, tmp_path: Path) -> None:
    graph.save(tmp_path / "g.qg")
    code = ("import json,sys; from nightshift.pipe import QuantumGraph; g = QuantumGraph.load(sys.argv[1]); "
            "print(json.dumps([g.counts(), str(g.quanta[5].id), g.tasks['calibrate'].config.measure.threshold]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "g.qg")], capture_output=True, text=True,
                         check=True)
    counts, qid, threshold = json.loads(out.stdout)
    assert counts == graph.counts() and qid == str(graph.quanta[5].id) and threshold == 4.0


def test_format_is_versioned(graph: QuantumGraph) -> None:
    data = graph.to_bytes()
    assert data[:4] == b"NSQG" and struct.unpack_from("<H", data, 4)[0] == FORMAT_VERSION
    newer = data[:4] + struct.pack("<H", FORMAT_VERSION + 1) + data[6:]
    with pytest.raises(GraphFormatError, match="newer"):
        QuantumGraph.from_bytes(newer)
    with pytest.raises(GraphFormatError, match="magic"):
        QuantumGraph.from_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(GraphFormatError, match="truncated"):
        QuantumGraph.from_bytes(data[:-10])


def test_descendants_and_subset(graph: QuantumGraph) -> None:
    first = graph.quanta_for("calibrate")[0]
    desc = graph.descendants(first.index)
    assert {graph.quanta[i].task_label for i in desc} == {"visit_summary", "survey_summary"}
    sub = graph.subset([first.index])
    assert len(sub) == 1 and sub.dependencies() == [[]]


def test_picture_png(graph: QuantumGraph, tmp_path: Path) -> None:
    graph.plot(tmp_path / "q.png")
    graph.plot(tmp_path / "t.png", max_quanta=3)  # task-level picture for big graphs
    for name in ("q.png", "t.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
