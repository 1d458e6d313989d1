"""Riding out a broker restart: which Kafka errors are transient, and an offset commit that retries them.

A broker restart (or a coordinator move) makes a synchronous offset commit fail with
``NOT_COORDINATOR``, ``COORDINATOR_LOAD_IN_PROGRESS``, ``_TRANSPORT``, ... for a few
seconds; a rebalance it triggers makes it fail with ``UNKNOWN_MEMBER_ID``,
``ILLEGAL_GENERATION`` or ``REBALANCE_IN_PROGRESS``. :func:`commit_offsets` retries
the first kind with capped exponential backoff until a deadline, gives up on the
second kind (the batch is redelivered to whoever owns the partitions next:
at-least-once, handlers are idempotent) and raises :class:`CommitError` on anything
else, naming the error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter

from ._errors import EventError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors of a broker restart or coordinator move: the same commit succeeds once the broker is back.
TRANSIENT_KAFKA_ERRORS: frozenset[int] = frozenset({
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._MSG_TIMED_OUT,
    KafkaError._WAIT_COORD,
    KafkaError._RESOLVE,
})

#: Errors saying the group moved on (a rebalance): this member's commit cannot succeed any more, and the
#: partitions' next owner (possibly this member again) is given the uncommitted messages again.
REBALANCE_KAFKA_ERRORS: frozenset[int] = frozenset({
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError.STALE_MEMBER_EPOCH,
})

COMMIT_RETRIES = Counter(
    "nightshift_kafka_commit_retries_total", "Offset commits retried after a transient broker error", ["code"],
)
COMMITS = Counter(
    "nightshift_kafka_commits_total", "Offset commits by outcome (committed, rebalanced, stopped, failed)",
    ["outcome"],
)


class CommitError(EventError):
    """An offset commit failed for good: a non-retriable error, or the brokers stayed away past the deadline.

    Nothing of the batch is lost: its messages are redelivered after a restart.
    """

    error_type = "commit"


def is_transient(err: KafkaError) -> bool:
    """True if ``err`` goes away by itself once the broker is back (never for a fatal error)."""
    if err.fatal():
        return False
    return err.code() in TRANSIENT_KAFKA_ERRORS or bool(err.retriable())


def skip_consumer_error(msg: Message) -> bool:
    """Whether a consumed ``msg`` carries no event to handle: a partition's end, or a transient error
    while the brokers are away (librdkafka reconnects by itself; logged). False for an event.

    Raises
    ------
    confluent_kafka.KafkaException
        Any other consumer error.
    """
    err = msg.error()
    if err is None:
        return False
    if err.code() == KafkaError._PARTITION_EOF:
        return True
    if is_transient(err):  # a broker restart (_TRANSPORT, _ALL_BROKERS_DOWN, ...): librdkafka reconnects
        log.warning("consumer error, waiting for the brokers: %s", err.str())
        return True
    raise KafkaException(err)


def _commit_error(consumer: Consumer, offsets: Sequence[TopicPartition]) -> KafkaError | None:
    """Commit once; the request's error, else the first partition's error, else None."""
    try:
        result = consumer.commit(offsets=list(offsets), asynchronous=False)
    except KafkaException as exc:
        err: KafkaError = exc.args[0]
        return err
    for tp in result or []:
        if tp.error is not None:
            part_err: KafkaError = tp.error
            return part_err
    return None


def commit_offsets(
    consumer: Consumer,
    offsets: Sequence[TopicPartition],
    *,
    timeout_s: float = 300.0,
    backoff_s: float = 0.2,
    max_backoff_s: float = 5.0,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], object] = time.sleep,
) -> bool:
    """Commit ``offsets`` synchronously, riding out a broker restart.

    Parameters
    ----------
    consumer : confluent_kafka.Consumer
        Called from the thread that owns it.
    offsets : sequence of TopicPartition
        The next offsets to read (last handled + 1).
    timeout_s : float
        How long transient errors (:data:`TRANSIENT_KAFKA_ERRORS`) are retried before giving up.
    backoff_s, max_backoff_s : float
        First pause between attempts, doubled up to ``max_backoff_s``.
    should_stop : callable
        Checked between attempts: when it returns True the commit is abandoned (the batch is redelivered).
    sleep : callable
        Pause between attempts (e.g. ``threading.Event.wait`` to wake up at once on a stop).

    Returns
    -------
    bool
        True if committed; False if a rebalance or a stop made the commit moot (the uncommitted
        messages are redelivered: at-least-once).

    Raises
    ------
    CommitError
        A non-retriable error, or transient ones for longer than ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    first_failure: float | None = None
    last_code: int | None = None
    attempts = 0
    pause = backoff_s
    while True:
        attempts += 1
        attempt_started = time.monotonic()  # one attempt can block for long (librdkafka waits for the coordinator)
        err = _commit_error(consumer, offsets)
        if err is None:
            if first_failure is not None:
                log.warning("offset commit succeeded after %d attempts (%.1f s of %s)", attempts,
                            time.monotonic() - first_failure, KafkaError(last_code).name() if last_code else "?")
            COMMITS.labels("committed").inc()
            return True
        code = err.code()
        if code == KafkaError._NO_OFFSET:  # nothing to commit (already committed): nothing lost
            COMMITS.labels("committed").inc()
            return True
        if code in REBALANCE_KAFKA_ERRORS:
            log.warning("offset commit abandoned after a rebalance (%s): the batch will be redelivered", err.name())
            COMMITS.labels("rebalanced").inc()
            return False
        if not is_transient(err):
            COMMITS.labels("failed").inc()
            raise CommitError(
                f"offset commit failed with a non-retriable error {err.name()}: {err.str()}; the uncommitted "
                "messages are redelivered after a restart"
            )
        now = time.monotonic()
        if first_failure is None:
            first_failure = attempt_started
        if code != last_code:  # log once per state change, not once per attempt
            log.warning("offset commit failed with %s (%s): retrying for up to %.0f s", err.name(), err.str(),
                        max(deadline - now, 0.0))
            last_code = code
        COMMIT_RETRIES.labels(err.name()).inc()
        if now >= deadline:
            COMMITS.labels("failed").inc()
            raise CommitError(
                f"offset commit kept failing with {err.name()} ({err.str()}) for {now - first_failure:.0f} s "
                f"({attempts} attempts): the brokers or the group coordinator stayed unreachable; raise the "
                "commit timeout to ride out longer outages"
            )
        if should_stop():
            log.warning("offset commit abandoned on stop while the broker is away: the batch will be redelivered")
            COMMITS.labels("stopped").inc()
            return False
        sleep(min(pause, max(deadline - now, 0.0)))
        pause = min(pause * 2, max_backoff_s)


def retry_kafka(
    call: Callable[[], T],
    what: str,
    *,
    timeout_s: float = 300.0,
    backoff_s: float = 0.5,
    max_backoff_s: float = 5.0,
    retry_if: Callable[[KafkaError], bool] = is_transient,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call ``call()`` until it does not raise a transient :class:`KafkaException`, for up to ``timeout_s``.

    For the blocking librdkafka calls of a service loop that a broker restart makes fail for a while
    (``committed``, ``abort_transaction``, ``commit_transaction``, ...). Logs once per error code;
    a fatal or non-transient error (per ``retry_if``), or the deadline, re-raises the last exception.
    """
    deadline = time.monotonic() + timeout_s
    last_code: int | None = None
    pause = backoff_s
    while True:
        try:
            result = call()
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            now = time.monotonic()
            if err.fatal() or not retry_if(err) or now >= deadline:
                raise
            if err.code() != last_code:
                log.warning("%s failed with %s (%s): retrying for up to %.0f s", what, err.name(), err.str(),
                            deadline - now)
                last_code = err.code()
            sleep(min(pause, deadline - now))
            pause = min(pause * 2, max_backoff_s)
            continue
        if last_code is not None:
            log.warning("%s succeeded after the broker came back", what)
        return result
