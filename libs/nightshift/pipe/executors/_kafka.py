"""The Kafka runner fleet: quanta as ``quantum.planned`` events (REQ-0019, REQ-0002).

Submitting side: :class:`KafkaExecutor` is an :class:`Executor` like the
others: the common core walks the graph, and its "pool" publishes each ready
quantum as a ``quantum.planned`` event (a pointer into the saved graph plus
the butler to use) and resolves the quantum's future when a runner reports
``quantum.completed`` or ``quantum.failed`` for it.

Runner side: :class:`QuantumEventHandler` is what the ``runner`` service
(``nightshift_services.runner``) runs under
:class:`nightshift.events.EventConsumer`. Runner processes in one consumer
group share the quanta. A runner that dies mid-quantum leaves its events
uncommitted; another runner gets them. A redelivered quantum whose outputs
were committed before its runner died is not run again: the provenance of its
outputs names this execution, so it is answered SUCCEEDED (MEMOIZED is kept
for outputs of earlier executions, REQ-0031), and redelivery has no second
effect.

The graph file must be readable by every runner (one machine, a shared file
system); pass ``graph_path`` to :meth:`Executor.run` to choose where it is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, Unpack, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ..._exceptions import NightshiftError
from ...events import (
    PRODUCER_DEFAULTS,
    AsyncProducer,
    Event,
    EventError,
    KafkaSettings,
    QuantumCompleted,
    QuantumFailed,
    QuantumPlanned,
    check_connection,
    decode,
    dlq_topic,
    encode,
    ensure_topics,
    kafka_settings,
)
from .._graph import QuantumGraph
from .._report import QuantumReport, QuantumStatus
from .._runner import HOST, ButlerSpec
from ._core import Executor, ExecutorOptions, WorkerSetup, _runner_for, run_quanta_in_worker

__all__ = ["KafkaExecutor", "QuantumEventError", "QuantumEventHandler", "QuantumTopics"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

_log = logging.getLogger("nightshift.pipe.executor")
_NO_LEADER_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART}


class QuantumEventError(NightshiftError):
    """A ``quantum.planned`` event this runner cannot execute (it goes to the dead-letter topic)."""

    error_type = "unrunnable_quantum"
    retriable = False


@dataclass(frozen=True)
class QuantumTopics:
    """The three topics between executors and runners (per-deployment prefixes keep fleets apart)."""

    planned: str = "quantum.planned"
    completed: str = "quantum.completed"
    failed: str = "quantum.failed"

    @classmethod
    def with_prefix(cls, prefix: str) -> QuantumTopics:
        """``<prefix>quantum.planned`` etc.; an empty prefix gives the standard names."""
        return cls(prefix + cls.planned, prefix + cls.completed, prefix + cls.failed)

    def all(self) -> tuple[str, str, str]:
        """The three topic names."""
        return (self.planned, self.completed, self.failed)

    def subjects(self) -> dict[str, str]:
        """Event subject carried by each topic (for :class:`~nightshift.events.EventConsumer`)."""
        return {self.planned: "quantum.planned", self.completed: "quantum.completed", self.failed: "quantum.failed"}


def _small_int(value: Any, upper: int | None = None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (upper is not None and value > upper):
        return None
    number: int = value
    return number


def planned_event(graph: QuantumGraph, index: int, setup: WorkerSetup, execution_id: str) -> QuantumPlanned:
    """The ``quantum.planned`` event of quantum ``index`` of a graph saved at ``setup.graph_path``."""
    q = graph.quanta[index]
    node = graph.tasks[q.task_label]
    did = dict(q.data_id)
    spec = setup.butler
    instrument = did.get("instrument")
    return QuantumPlanned(
        quantum_id=q.id, task_label=q.task_label,
        instrument=str(instrument) if instrument not in (None, "") else None,
        visit=_small_int(did.get("visit")), detector=_small_int(did.get("detector"), 1000),
        data_id={k: str(v) for k, v in did.items()},
        inputs=[r.id for r in q.input_refs()], outputs=[r.id for r in q.output_refs()],
        config_hash=node.config_hash, code_version=node.code_version,
        execution_id=execution_id, graph_uri=setup.graph_path, quantum_index=index,
        butler_repo=spec.repo if spec is not None else None, run=spec.run if spec is not None else None,
        collections=list(spec.collections) if spec is not None else [], memoize=setup.memoize,
    )


def result_event(planned: QuantumPlanned, report: QuantumReport) -> QuantumCompleted | QuantumFailed:
    """The ``quantum.completed`` or ``quantum.failed`` event answering ``planned``."""
    end = report.end if report.end is not None else time.time()
    common: dict[str, Any] = dict(
        quantum_id=planned.quantum_id, task_label=planned.task_label, visit=planned.visit,
        detector=planned.detector, host=report.host or HOST, execution_id=planned.execution_id,
        pid=report.pid if report.pid is not None else os.getpid(),
    )
    if report.status in (QuantumStatus.SUCCEEDED, QuantumStatus.MEMOIZED):
        return QuantumCompleted(
            **common, outputs=planned.outputs, duration_s=max(0.0, report.seconds or 0.0),
            completed_at=datetime.fromtimestamp(end, UTC), memoized=report.status is QuantumStatus.MEMOIZED,
            n_actual_inputs=report.n_actual_inputs or 0,
        )
    return QuantumFailed(
        **common, error_type=report.error_type or "unknown", message=report.error or "", retriable=False,
        failed_at=datetime.fromtimestamp(end, UTC), traceback=report.traceback,
    )


def report_from_event(event: QuantumCompleted | QuantumFailed, graph: QuantumGraph, index: int) -> QuantumReport:
    """Turn a runner's answer back into the executor core's :class:`QuantumReport`."""
    q = graph.quanta[index]
    rep = QuantumReport(index, q.task_label, dict(q.data_id), host=event.host, pid=event.pid)
    if isinstance(event, QuantumCompleted):
        rep.status = QuantumStatus.MEMOIZED if event.memoized else QuantumStatus.SUCCEEDED
        rep.end = event.completed_at.timestamp()
        rep.start = rep.end - event.duration_s
        rep.n_actual_inputs, rep.n_outputs = event.n_actual_inputs, len(event.outputs)
    else:
        rep.status = QuantumStatus.FAILED
        rep.start = rep.end = event.failed_at.timestamp()
        rep.error_type, rep.error, rep.traceback = event.error_type, event.message, event.traceback
    return rep


def _failed_now(index: int, task_label: str, data_id: dict[str, Any], error_type: str, error: str,
                **where: Any) -> QuantumReport:
    """A FAILED report of a quantum that did not run (start = end = now)."""
    now = time.time()
    return QuantumReport(index, task_label, data_id, status=QuantumStatus.FAILED, start=now, end=now,
                         error_type=error_type, error=error, **where)


# -- runner side ---------------------------------------------------------------------------------
def _run_planned(setup: WorkerSetup, index: int, quantum_id: uuid.UUID) -> QuantumReport:
    runner = _runner_for(setup)
    if index >= len(runner.graph.quanta):
        raise QuantumEventError(f"quantum index {index} is outside the graph at {setup.graph_path} "
                                f"({len(runner.graph.quanta)} quanta)")
    if runner.graph.quanta[index].id != quantum_id:
        raise QuantumEventError(f"quantum {index} of {setup.graph_path} is not {quantum_id}: the graph file "
                                "was replaced after the quantum was planned")
    return runner.run(index)


def _run_guarded(setup: WorkerSetup, event: QuantumPlanned, max_attempts: int) -> QuantumReport:
    """Run a planned quantum unless it already killed its runner ``max_attempts`` times."""
    assert event.quantum_index is not None
    marker = Path(f"{setup.graph_path}.attempts") / str(event.quantum_id)
    try:
        previous = marker.read_text().splitlines() if marker.exists() else []
        if len(previous) >= max_attempts:
            return _failed_now(
                event.quantum_index, event.task_label, dict(event.data_id), "crash_loop",
                f"the quantum was started {len(previous)} times and its runner died each time "
                f"(attempts: {'; '.join(previous)}); not starting it again", host=HOST, pid=os.getpid())
        marker.parent.mkdir(exist_ok=True)
        with open(marker, "a") as f:  # one line per attempt, appended atomically
            f.write(f"{HOST} pid {os.getpid()} at {datetime.now(UTC).isoformat(timespec='seconds')}\n")
    except OSError as exc:  # the graph's directory is read-only here: run without the guard
        _log.warning("cannot count attempts of quantum %s in %s: %s", event.quantum_id, marker.parent, exc)
        marker = None  # type: ignore[assignment]  # no attempts file: nothing to remove below
    report = _run_planned(setup, event.quantum_index, event.quantum_id)
    if marker is not None:
        with contextlib.suppress(OSError):
            marker.unlink()  # the quantum ended (either way): a later redelivery may run it again
    return report


class QuantumEventHandler:
    """Executes ``quantum.planned`` events and answers on ``quantum.completed``/``quantum.failed``.

    Quanta run one at a time on a dedicated thread (never on the event
    loop); the graph of the last execution stays loaded between quanta.

    Parameters
    ----------
    producer : AsyncProducer
        Started producer for the answers.
    topics : QuantumTopics
        Where answers go.
    deferred_timeout : float
        Seconds a quantum waits for a deferred input (REQ-0030).
    max_attempts : int
        Crash-loop guard: a quantum that was started this many times without
        finishing (each time its runner died) is answered FAILED instead of
        being run again, so one poison quantum cannot take down the fleet
        runner after runner. Attempts are counted in a file next to the graph
        file (``<graph>.attempts/<quantum id>``), which every runner can reach.
    """

    def __init__(self, producer: AsyncProducer, topics: QuantumTopics | None = None, *,
                 deferred_timeout: float = 300.0, max_attempts: int = 3) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.producer = producer
        self.topics = topics or QuantumTopics()
        self.deferred_timeout = deferred_timeout
        self.max_attempts = max_attempts
        self._thread = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="quantum-runner")
        self.executed = 0

    async def __call__(self, event: Event, message: Message | None = None) -> None:
        """Run the quantum of ``event`` and publish the result (errors of the task are results, not raises).

        Raises
        ------
        QuantumEventError
            The event is not a quantum of a saved graph (no ``graph_uri``); dead-lettered by the consumer.
        """
        if not isinstance(event, QuantumPlanned):
            raise QuantumEventError(f"expected a quantum.planned event, got {event.SUBJECT!r}")
        if event.graph_uri is None or event.quantum_index is None:
            raise QuantumEventError(
                f"quantum {event.quantum_id} ({event.task_label}) has no graph_uri/quantum_index: this runner "
                "executes quanta of saved quantum graphs (quantum.planned v2)")
        spec = ButlerSpec(event.butler_repo, tuple(event.collections), event.run or "") \
            if event.butler_repo is not None else None
        setup = WorkerSetup(event.graph_uri, spec, event.memoize, None, self.deferred_timeout,
                            execution_id=event.execution_id)
        loop = asyncio.get_running_loop()
        try:
            report = await loop.run_in_executor(self._thread, _run_guarded, setup, event, self.max_attempts)
        except Exception as exc:  # noqa: BLE001 - unreadable graph, mismatched quantum: report, do not retry
            report = _failed_now(event.quantum_index, event.task_label, dict(event.data_id),
                                 getattr(exc, "error_type", None) or type(exc).__name__,
                                 f"the runner could not load the quantum: {type(exc).__name__}: {exc}",
                                 host=HOST, pid=os.getpid())
        answer = result_event(event, report)
        topic = self.topics.completed if isinstance(answer, QuantumCompleted) else self.topics.failed
        await self.producer.send_event(answer, topic=topic, key=str(event.quantum_id))
        self.executed += 1

    def close(self) -> None:
        """Stop the runner thread (after its current quantum)."""
        self._thread.shutdown(wait=True)


# -- submitting side -----------------------------------------------------------------------------
@dataclass
class _Submission:
    future: cf.Future[list[QuantumReport]]
    remaining: int
    reports: list[QuantumReport] = field(default_factory=list)


class _KafkaPool(cf.Executor):
    """Publishes quanta and resolves their futures from the runners' answers.

    The answer topics are read from their end offsets taken *before* the
    first quantum is published (explicit assignment, no group rebalance), so
    no answer can be missed and answers of other executions are skipped.
    """

    def __init__(self, kafka: KafkaSettings, topics: QuantumTopics, graph: QuantumGraph, *, execution_id: str,
                 quantum_timeout: float | None, stall_warning_s: float, config: dict[str, Any]) -> None:
        self.graph = graph
        self.topics = topics
        self.execution_id = execution_id
        self.quantum_timeout = quantum_timeout
        self.stall_warning_s = stall_warning_s
        self._subjects = topics.subjects()
        client = kafka.librdkafka_config()
        self._producer = Producer({**PRODUCER_DEFAULTS, **client, "linger.ms": 1, **config})
        self._consumer = Consumer({**client, "group.id": f"nightshift-executor-{self.execution_id}",
                                   "enable.auto.commit": False, "auto.offset.reset": "latest", **config})
        self._pending: dict[uuid.UUID, tuple[_Submission, int, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_answer = time.monotonic()
        self._warned = False
        try:
            self._assign_at_end((topics.completed, topics.failed))
        except BaseException:
            self._consumer.close()
            raise
        self._listener = threading.Thread(target=self._listen, name="kafka-executor-answers", daemon=True)
        self._listener.start()

    def _assign_at_end(self, topics: tuple[str, ...], wait_s: float = 20.0) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._consumer.assign(self._end_offsets(topics))
                return
            except KafkaException as exc:  # a topic created a moment ago may have no leader yet
                if not exc.args[0].retriable() and exc.args[0].code() not in _NO_LEADER_YET \
                        or time.monotonic() > deadline:
                    raise EventError(f"cannot read the runners' answers on {list(topics)}: {exc}") from exc
                time.sleep(0.2)

    def _end_offsets(self, topics: tuple[str, ...]) -> list[TopicPartition]:
        metadata = self._consumer.list_topics(timeout=10)
        assignment = []
        for topic in topics:
            if topic not in metadata.topics or metadata.topics[topic].error is not None:
                raise EventError(f"topic {topic!r} does not exist; create it (ensure_topics) or start the runners")
            for p in metadata.topics[topic].partitions:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                assignment.append(TopicPartition(topic, p, high))
        return assignment

    # called by the executor core, on its thread
    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> cf.Future[_T]:
        if fn is not run_quanta_in_worker:
            raise TypeError("the Kafka pool runs only run_quanta_in_worker(setup, indices)")
        setup, batch = cast("tuple[WorkerSetup, list[int]]", args)  # run_quanta_in_worker's (setup, indices)
        future: cf.Future[list[QuantumReport]] = cf.Future()
        sub = _Submission(future, len(batch))
        deadline = time.monotonic() + self.quantum_timeout if self.quantum_timeout is not None else float("inf")
        for index in batch:
            event = planned_event(self.graph, index, setup, self.execution_id)
            with self._lock:
                self._pending[event.quantum_id] = (sub, index, deadline)
            self._produce(event, index)
        return cast("cf.Future[_T]", future)  # fn is run_quanta_in_worker (checked above): _T is list[QuantumReport]

    def _produce(self, event: QuantumPlanned, index: int) -> None:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._resolve_failure(event.quantum_id, "publish_failed",
                                      f"could not publish the quantum to {self.topics.planned!r}: {err.str()}")
        value = encode(event)
        while True:
            try:
                self._producer.produce(self.topics.planned, value=value, key=str(event.quantum_id),
                                       on_delivery=delivered)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: wait for deliveries (backpressure)
        self._producer.poll(0)

    def _resolve(self, quantum_id: uuid.UUID, make: Any) -> None:
        with self._lock:
            entry = self._pending.pop(quantum_id, None)
        if entry is None:
            return  # an answer to a redelivered quantum that was answered already
        sub, index, _ = entry
        sub.reports.append(make(index))
        sub.remaining -= 1
        if sub.remaining == 0 and not sub.future.done():
            sub.future.set_result(sub.reports)

    def _resolve_failure(self, quantum_id: uuid.UUID, error_type: str, message: str) -> None:
        def make(index: int) -> QuantumReport:
            q = self.graph.quanta[index]
            return _failed_now(index, q.task_label, dict(q.data_id), error_type, message)
        self._resolve(quantum_id, make)

    def _listen(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0)  # serve delivery callbacks while the core waits
            try:
                messages = self._consumer.consume(num_messages=500, timeout=0.1)
            except Exception as exc:  # noqa: BLE001 - keep listening; the timeout bounds a dead broker
                _log.warning("reading runner answers failed: %s", exc)
                continue
            for msg in messages:
                if msg.error() is not None:
                    _log.warning("reading runner answers: %s", msg.error())
                    continue
                self._handle(msg)
            self._check_deadlines()

    def _handle(self, msg: Message) -> None:
        topic = msg.topic()
        assert topic is not None  # a message without an error has its topic
        try:
            # a tombstone (no value) is "0 bytes, too short" to the decoder, a DecodeError like any bad body
            event = decode(msg.value() or b"", expected_subject=self._subjects[topic])
        except EventError as exc:
            _log.warning("skipping an undecodable answer on %s[%d]@%d: %s", msg.topic(), msg.partition(),
                         msg.offset(), exc)
            return
        if not isinstance(event, QuantumCompleted | QuantumFailed) or event.execution_id != self.execution_id:
            return
        self._last_answer = time.monotonic()
        self._resolve(event.quantum_id, lambda index: report_from_event(event, self.graph, index))

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._pending:
                self._last_answer = now
                return
            late = [qid for qid, (_, _, deadline) in self._pending.items() if deadline < now]
        for qid in late:
            self._resolve_failure(qid, "quantum_timeout",
                                  f"no runner answered within {self.quantum_timeout:g} s (are runners consuming "
                                  f"{self.topics.planned!r}? is one stuck?)")
        if not self._warned and now - self._last_answer > self.stall_warning_s:
            self._warned = True
            _log.warning("no runner has answered for %.0f s; are runners consuming %r?", self.stall_warning_s,
                         self.topics.planned)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._stop.set()
        self._listener.join()
        with self._lock:
            left = list(self._pending)
        for qid in left:
            self._resolve_failure(qid, "executor_stopped", "the executor stopped before a runner answered")
        try:
            self._consumer.close()
        finally:
            remaining = self._producer.flush(10)
            if remaining:
                _log.warning("%d quantum events were not acknowledged by the broker", remaining)


class KafkaExecutor(Executor):
    """Runs quanta on a fleet of runner services over Kafka.

    Parameters
    ----------
    repo : str or os.PathLike, optional
        Butler repository, at a path every runner can open (None: no butler I/O).
    bootstrap : KafkaSettings or str
        Kafka brokers and authentication (:class:`~nightshift.events.KafkaSettings`); a
        ``host:port`` string takes the rest from the ``NIGHTSHIFT_KAFKA_*`` environment.
    topics : QuantumTopics, optional
        Topics of the fleet (standard names by default).
    max_in_flight : int
        Quanta published but not answered at once (backpressure on the topic).
    quantum_timeout : float, optional
        Seconds after which an unanswered quantum is FAILED (None: wait; long quanta are normal).
    stall_warning_s : float
        Log a warning when no runner answered for this long while quanta are pending.
    create_topics : bool
        Create the three topics and the dead-letter topic if missing.
    config : mapping, optional
        Extra librdkafka settings for the executor's producer and consumer.
    **kwargs
        See :class:`Executor`.
    """

    name = "kafka"

    def __init__(self, repo: str | os.PathLike[str] | None = None, *, bootstrap: str | KafkaSettings,
                 topics: QuantumTopics | None = None, max_in_flight: int = 256, quantum_timeout: float | None = None,
                 stall_warning_s: float = 30.0, create_topics: bool = True, config: dict[str, Any] | None = None,
                 **kwargs: Unpack[ExecutorOptions]) -> None:
        super().__init__(repo, **kwargs)
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if quantum_timeout is not None and quantum_timeout <= 0:
            raise ValueError(f"quantum_timeout must be > 0, got {quantum_timeout}")
        self.kafka = kafka_settings(bootstrap)
        self.bootstrap = self.kafka.bootstrap_servers
        self.topics = topics or QuantumTopics()
        self._max_in_flight = max_in_flight
        self.quantum_timeout = quantum_timeout
        self.stall_warning_s = stall_warning_s
        self.create_topics = create_topics
        self.config = dict(config or {})

    @property
    def max_in_flight(self) -> int:
        """Quanta published and not answered yet, at most."""
        return self._max_in_flight

    @contextlib.contextmanager
    def _pool(self, graph: QuantumGraph, setup: WorkerSetup) -> Iterator[cf.Executor]:
        if self.create_topics:
            ensure_fleet_topics(self.kafka, self.topics)  # checks the connection first
        else:
            check_connection(self.kafka)  # refused credentials fail here, at once
        pool = _KafkaPool(self.kafka, self.topics, graph, execution_id=setup.execution_id or uuid.uuid4().hex,
                          quantum_timeout=self.quantum_timeout,
                          stall_warning_s=self.stall_warning_s, config=self.config)
        _log.info("execution %s: publishing %d quanta to %r", pool.execution_id, len(graph), self.topics.planned)
        try:
            yield pool
        finally:
            pool.shutdown()


def ensure_fleet_topics(kafka: str | KafkaSettings, topics: QuantumTopics) -> None:
    """Create the fleet's topics and the planned topic's dead-letter topic (idempotent)."""
    ensure_topics(kafka, [*topics.all(), dlq_topic(topics.planned)])
