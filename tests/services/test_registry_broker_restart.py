"""The registry service (its own confluent Consumer loop) rides out a restart of a private broker.

The broker is the ``own_kafka`` fixture's (never the shared one). The service registers a batch of
``dataset.stored`` events and holds it before its offset commit (the ``pause_before_offsets`` test
hook); the broker is stopped, the batch released (its commit meets the missing broker), the broker
started again, and a second wave produced: the same process registers every dataset exactly once
and dead-letters nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nightshift_dev.devstack import StackSettings
from nightshift_dev.devstack import _kafka as devkafka

from .test_registry_service import INSTRUMENT, _count, _dlq, _event, _produce, _wait, _write_files, repo, running

pytestmark = pytest.mark.integration

__all__ = ["repo"]  # the repository fixture of the registry service tests, used here too


def test_the_registry_service_keeps_registering_across_a_broker_restart(
        repo: Path, own_kafka: StackSettings, unique_name: str, tmp_path: Path) -> None:
    bootstrap = devkafka.bootstrap(own_kafka)
    run = f"{INSTRUMENT}/prompt/{unique_name}"
    topic = f"{unique_name}.dataset.stored"
    first = [_event(v, d, run) for v in range(2) for d in range(8)]
    second = [_event(v, d, run) for v in range(2, 4) for d in range(8)]
    _write_files(repo, first + second)
    gate = tmp_path / "pause-before-offsets"
    gate.touch()
    env = {
        **os.environ, "NIGHTSHIFT_KAFKA_BOOTSTRAP": bootstrap, "NIGHTSHIFT_TOPIC_PREFIX": f"{unique_name}.",
        "NIGHTSHIFT_CONSUMER_GROUP": f"registry-{unique_name}", "NIGHTSHIFT_BUTLER_REPO": str(repo),
        "NIGHTSHIFT_HTTP_PORT": "0", "NIGHTSHIFT_PARTITIONS": "4", "NIGHTSHIFT_LOG_LEVEL": "WARNING",
        "NIGHTSHIFT_MAX_BATCH": "8", "NIGHTSHIFT_DRAIN_TIMEOUT_S": "20", "NIGHTSHIFT_SESSION_TIMEOUT_MS": "6000",
        "NIGHTSHIFT_REGISTRY_TOKEN": "restart-test-token", "NIGHTSHIFT_API_PORT": "0",
        "NIGHTSHIFT_PAUSE_BEFORE_OFFSETS": str(gate),
    }
    with running(env) as svc:
        _produce(bootstrap, topic, first)
        reached = gate.with_name(gate.name + ".reached")
        _wait("a batch held before its offset commit", lambda: reached.exists() or svc.proc.poll() is not None)
        devkafka.stop(own_kafka)
        gate.unlink()  # the held batch commits its offsets while the broker is away
        devkafka.start(own_kafka)
        assert svc.proc.poll() is None, "the registry service exited while the broker was away"
        _produce(bootstrap, topic, second + first[:4])  # the redelivered ones are no second row
        _wait("every dataset registered",
              lambda: _count(repo, run) == len(first) + len(second) or svc.proc.poll() is not None)
        assert svc.proc.poll() is None, "the registry service exited across the broker restart"
        assert _dlq(bootstrap, topic + ".dlq", expected=0) == []
