"""``nightshift pipeline``: build-graph, run, show-graph, show-config (thin over nightshift.pipe's script functions)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..pipe import (
    QuantumGraph,
    QuantumReport,
    QuantumStatus,
    build_graph,
    load_pipeline,
    make_executor,
    show_config,
    show_graph,
)
from ._errors import cli_errors

_F = TypeVar("_F", bound=Callable[..., Any])

_overrides = [
    click.option("-c", "--config", "overrides", multiple=True, metavar="LABEL:FIELD=VALUE",
                 help="Config override, e.g. calibrate:measure.threshold=4 (repeatable, recorded)."),
    click.option("-C", "--config-file", "override_files", multiple=True, metavar="LABEL:FILE",
                 help="YAML file of overrides for one task (repeatable, recorded)."),
]
_query = [
    click.option("-i", "--input", "collections", multiple=True, required=True, help="Input collection (repeatable)."),
    click.option("-o", "--output-run", "run", required=True, help="Output RUN collection."),
    click.option("-d", "--where", default="", help="Data query on the inputs, e.g. 'visit IN (1..10)'."),
    click.option("--output-type", "outputs", multiple=True, help="Campaign by outputs: desired dataset type."),
    click.option("--output-where", default="", help="Restrict the desired outputs' data IDs."),
    click.option("--step", "steps", multiple=True, help="Plan only these steps."),
]


def _with(options: list[Callable[[Any], Any]]) -> Callable[[_F], _F]:
    """Decorate a command with a list of click options."""

    def deco(func: _F) -> _F:
        for opt in reversed(options):
            func = opt(func)
        return func

    return deco


@click.group()
def pipeline() -> None:
    """Pipelines: pre-flight a quantum graph, run it, inspect it.

    \b
      nightshift pipeline show-config PIPELINE.yaml -c calibrate:gain=2
      nightshift pipeline build-graph REPO PIPELINE.yaml -i raw/all -o u/me/run1 -d "visit < 10" --save run1.qg
      nightshift pipeline show-graph run1.qg --png run1.png
      nightshift pipeline run REPO --graph run1.qg --executor multiprocess -j 4
      nightshift pipeline run REPO --graph run1.qg --executor kafka   # runner services over Kafka
    """


@pipeline.command("show-config")
@cli_errors
@click.argument("pipeline_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--label", default=None, help="Only this task.")
@_with(_overrides)
def show_config_cmd(pipeline_file: str, label: str | None, overrides: tuple[str, ...],
                    override_files: tuple[str, ...]) -> None:
    """Print the final config of each task (YAML) with the overrides that made it."""
    click.echo(show_config(load_pipeline(pipeline_file, overrides, override_files), label), nl=False)


@pipeline.command("build-graph")
@cli_errors
@click.argument("repo", type=click.Path(exists=True, file_okay=False))
@click.argument("pipeline_file", type=click.Path(exists=True, dir_okay=False))
@_with(_overrides + _query)
@click.option("--save", "save", type=click.Path(dir_okay=False), help="Write the graph file here.")
@click.option("--png", type=click.Path(dir_okay=False), help="Also draw the graph as a PNG.")
def build_graph_cmd(repo: str, pipeline_file: str, overrides: tuple[str, ...], override_files: tuple[str, ...],
                    collections: tuple[str, ...], run: str, where: str, outputs: tuple[str, ...], output_where: str,
                    steps: tuple[str, ...], save: str | None, png: str | None) -> None:
    """Pre-flight: build the quantum graph of PIPELINE_FILE over REPO's data (exit 1 if empty)."""
    pipe = load_pipeline(pipeline_file, overrides, override_files)
    graph = build_graph(repo, pipe, collections=collections, run=run, where=where, outputs=outputs,
                        output_where=output_where, steps=steps)
    if save:
        size = graph.save(save)
        click.echo(f"saved {save} ({size} bytes)")
    if png:
        graph.plot(png)
    click.echo(show_graph(graph))
    if not len(graph):
        sys.exit(1)


@pipeline.command("show-graph")
@cli_errors
@click.argument("graph_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--quanta", is_flag=True, help="List every quantum with its dependencies.")
@click.option("--png", type=click.Path(dir_okay=False), help="Draw the graph as a PNG.")
def show_graph_cmd(graph_file: str, quanta: bool, png: str | None) -> None:
    """Summarize a saved quantum graph (and draw it)."""
    graph = QuantumGraph.load(graph_file)
    click.echo(show_graph(graph, list_quanta=quanta))
    if png:
        graph.plot(png)
        click.echo(f"wrote {png}")


@pipeline.command("run")
@cli_errors
@click.argument("repo", type=click.Path(exists=True, file_okay=False))
@click.option("--graph", "graph_file", type=click.Path(exists=True, dir_okay=False), help="A saved graph.")
@click.option("-p", "--pipeline", "pipeline_file", type=click.Path(exists=True, dir_okay=False),
              help="Or: a pipeline to pre-flight first (needs -i and -o).")
@_with(_overrides)
@click.option("-i", "--input", "collections", multiple=True, help="Input collection (with --pipeline).")
@click.option("-o", "--output-run", "run", help="Output RUN collection (with --pipeline).")
@click.option("-d", "--where", default="", help="Data query (with --pipeline).")
@click.option("--executor", "kind", type=click.Choice(["inprocess", "multiprocess", "dask", "kafka"]),
              default="inprocess", show_default=True,
              help="Where quanta run: this process, a local process pool, a Dask cluster, or the runner "
                   "services over Kafka (python -m nightshift_services.runner).")
@click.option("-j", "--processes", type=int, default=None, help="Worker processes (multiprocess).")
@click.option("--dask-scheduler", default=None, help="Dask scheduler address (dask).")
@click.option("--kafka-bootstrap", envvar=["NIGHTSHIFT_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP"], default=None,
              help="Kafka brokers of the runner fleet (kafka; default from KAFKA_BOOTSTRAP).")
@click.option("--topic-prefix", default="", help="Topic prefix of the runner fleet (kafka).")
@click.option("--quantum-timeout", type=float, default=None,
              help="Seconds after which a quantum no runner answered fails (kafka; default: wait).")
@click.option("--no-memoize", is_flag=True, help="Existing outputs are errors instead of being reused.")
@click.option("--stage-dir", type=click.Path(file_okay=False), default=None,
              help="Node-local scratch: copy the inputs there, run against it, move the outputs back.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False), help="Write the JSON run report here.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--log-level", default="WARNING", show_default=True, help="Logging level of pre-flight and run.")
def run_cmd(repo: str, graph_file: str | None, pipeline_file: str | None, overrides: tuple[str, ...],
            override_files: tuple[str, ...], collections: tuple[str, ...], run: str | None, where: str, kind: str,
            processes: int | None, dask_scheduler: str | None, kafka_bootstrap: str | None, topic_prefix: str,
            quantum_timeout: float | None, no_memoize: bool, stage_dir: str | None, report_file: str | None,
            progress: bool | None, log_level: str) -> None:
    """Execute a quantum graph (exit 1 if any quantum failed or was blocked)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    # the framework sets up the standard logging of each phase (REQ-0025): pre-flight and run get the level
    if graph_file:
        graph = QuantumGraph.load(graph_file)
    elif pipeline_file and collections and run:
        pipe = load_pipeline(pipeline_file, overrides, override_files)
        graph = build_graph(repo, pipe, collections=collections, run=run, where=where, log_level=log_level)
    else:
        raise click.UsageError("give --graph FILE, or --pipeline FILE with -i and -o")
    if not len(graph):
        click.echo(f"nothing to run: {graph.explanation or 'empty graph'}", err=True)
        sys.exit(1)
    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=console,
                   disable=not (progress if progress is not None else console.is_terminal), transient=False)
    counts = {s: 0 for s in ("succeeded", "memoized", "failed", "blocked")}
    task_id = bar.add_task("quanta", total=len(graph), status="")

    def on_quantum(rep: QuantumReport) -> None:
        if rep.status is not QuantumStatus.PENDING:
            counts[rep.status.value] += 1
            bar.update(task_id, advance=1, status=" ".join(f"{k}={v}" for k, v in counts.items() if v))

    executor = make_executor(kind, repo, processes=processes, scheduler=dask_scheduler, memoize=not no_memoize,
                             progress=on_quantum, log_level=log_level, kafka_bootstrap=kafka_bootstrap,
                             topic_prefix=topic_prefix, quantum_timeout=quantum_timeout, stage_dir=stage_dir)
    with bar, tempfile.TemporaryDirectory() as tmp:
        path = graph_file or str(Path(tmp) / "graph.qg")
        if not graph_file and kind != "inprocess":
            graph.save(path)
        report = executor.run(graph, graph_path=path if kind != "inprocess" else None)
    if report_file:
        Path(report_file).write_text(report.to_json())
    c = report.counts()
    click.echo(f"{c['succeeded']} succeeded, {c['memoized']} memoized, {c['failed']} failed, {c['blocked']} blocked "
               f"in {report.wall_seconds:.2f} s")
    for q in report.failures()[:10]:
        click.echo(f"FAILED {q.task_label} {q.data_id}: {q.error}", err=True)
    if not report.ok:
        sys.exit(1)
