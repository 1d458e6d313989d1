"""Kafka runner fleet benchmark: the framework's cost per quantum when quanta travel as events.

Starts ``--runners`` real runner services (``python -m nightshift_services.runner``)
on topics of their own, pre-flights the three-step no-op pipeline
(``nightshift/pipe/examples/noop_pipeline.yaml``) over V x D quanta without
butler I/O, and runs it with :class:`nightshift.pipe.KafkaExecutor` and, in
the same run for comparison, :class:`nightshift.pipe.InProcessExecutor`.

Measured: quanta/s and wall ms per quantum for both, the fixed cost of one
execution (a one-quantum graph: topic assignment, publish, answer) over
``--repeat`` runs, and the Level-1 latency: the wall time of one visit's graph
(D detector quanta, the visit's quantum and the global one, submitted as one
execution to the warm fleet, as Alert Production would per visit) over
``--visit-repeat`` runs, p50/p95/max. No-op quanta: this is the framework's
share of a visit's latency, not the science's.

Needs the local stack's Kafka (``nightshift dev up``). Prints one JSON
document, then one summary line.

Usage::

    .venv/bin/python loadtests/kafka_executor_bench.py [--visits 20] [--detectors 189] [--runners 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


def _pct(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"p50": round(statistics.median(s), 3), "p95": round(s[min(len(s) - 1, round(0.95 * (len(s) - 1)))], 3),
            "max": round(s[-1], 3), "n": len(s)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--visits", type=int, default=20)
    ap.add_argument("--detectors", type=int, default=189)
    ap.add_argument("--runners", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5, help="one-quantum executions for the fixed cost")
    ap.add_argument("--visit-repeat", type=int, default=10, help="one-visit executions for the Level-1 latency")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from pipeline_bench import _make_registry

    from nightshift.pipe import InProcessExecutor, Pipeline, build_quantum_graph
    from nightshift.pipe.examples import NOOP_PIPELINE
    from nightshift.pipe.executors import KafkaExecutor
    from nightshift_dev.fleet import LocalRunnerFleet

    doc: dict[str, Any] = {"visits": args.visits, "detectors": args.detectors, "runners": args.runners,
                           "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        reg = _make_registry(Path(tmp) / "repo", args.visits, args.detectors)
        graph = build_quantum_graph(reg, Pipeline.from_yaml(NOOP_PIPELINE), collections=["raw/all"], run="bench/run")
        visit = build_quantum_graph(reg, Pipeline.from_yaml(NOOP_PIPELINE), collections=["raw/all"], run="bench/run",
                                    where="visit = 0")
        reg.close()
        visit_path = Path(tmp) / "visit.qg"
        visit.save(visit_path)
        path = Path(tmp) / "g.qg"
        graph.save(path)
        one = graph.subset([0])
        one_path = Path(tmp) / "one.qg"
        one.save(one_path)
        n = len(graph)
        doc["quanta"] = n

        t = time.perf_counter()
        InProcessExecutor(None).run(graph).raise_for_failures()
        wall = time.perf_counter() - t
        doc["inprocess"] = {"quanta_per_s": round(n / wall, 1), "ms_per_quantum": round(1000 * wall / n, 3)}

        with LocalRunnerFleet(args.bootstrap, tmp, log_level="WARNING", max_batch="100") as fleet:
            fleet.start(args.runners)
            executor = KafkaExecutor(None, bootstrap=args.bootstrap, topics=fleet.topics, quantum_timeout=300)
            executor.run(one, graph_path=one_path).raise_for_failures()  # warm: runners assigned, graph loaded
            fixed = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                executor.run(one, graph_path=one_path).raise_for_failures()
                fixed.append(time.perf_counter() - t)
            per_visit = []
            for _ in range(args.visit_repeat):
                t = time.perf_counter()
                executor.run(visit, graph_path=visit_path).raise_for_failures()
                per_visit.append(time.perf_counter() - t)
            t = time.perf_counter()
            report = executor.run(graph, graph_path=path)
            wall = time.perf_counter() - t
            report.raise_for_failures()
            pids = {q.pid for q in report.quanta}
        doc["kafka"] = {"quanta_per_s": round(n / wall, 1), "ms_per_quantum": round(1000 * wall / n, 3),
                        "wall_s": round(wall, 2), "runner_processes_used": len(pids),
                        "one_quantum_execution_s_median": round(statistics.median(fixed), 3),
                        "one_quantum_execution_s": _pct(fixed),
                        "one_visit_execution_s": {"quanta": len(visit), **_pct(per_visit)}}
    print(json.dumps(doc, indent=2))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    k, i = doc["kafka"], doc["inprocess"]
    v = k["one_visit_execution_s"]
    print(f"kafka fleet ({args.runners} runners): {k['quanta_per_s']} quanta/s, {k['ms_per_quantum']} ms/quantum "
          f"over {n} no-op quanta; one-quantum execution {k['one_quantum_execution_s_median']} s; "
          f"one visit ({len(visit)} quanta) p50/p95/max {v['p50']}/{v['p95']}/{v['max']} s; "
          f"in-process {i['quanta_per_s']} quanta/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
