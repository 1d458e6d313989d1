"""Session fixtures that start (or reuse) the real local stack.

Integration tests ask for ``kafka_bootstrap`` (or ``kafka_sasl``, the broker's
SASL/SCRAM-SHA-512 listener), ``pg_dsn``, ``s3_endpoint``, ``schema_registry_url`` or
``dav_endpoint`` (WebDAV; its token in ``DAV_TOKEN``); only the servers a test session needs are
started. If a server cannot start,
the tests that need it *fail* with the reason: they never skip and never fall
back to an in-process fake.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_asyncio import is_async_test

from nightshift.events import KafkaSettings
from nightshift_dev.devstack import StackError, StackSettings, up
from nightshift_dev.devstack._kafka import no_sasl_listener_hint
from nightshift_dev.devstack._process import port_open


def _start(name: str) -> dict[str, str]:
    try:
        env = up(names=[name])
    except StackError as exc:
        pytest.fail(f"the local {name} server could not start:\n{exc}", pytrace=False)
    os.environ.update(env)
    return env


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` of the real Apache Kafka broker."""
    return _start("kafka")["KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def kafka_sasl() -> KafkaSettings:
    """Client settings for the same broker's SASL_PLAINTEXT listener, SCRAM-SHA-512, with the stack's user."""
    env = _start("kafka")
    settings = KafkaSettings(
        bootstrap_servers=env["KAFKA_SASL_BOOTSTRAP"], security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=env["KAFKA_SASL_MECHANISM"], sasl_username=env["KAFKA_SASL_USERNAME"],
        sasl_password=env["KAFKA_SASL_PASSWORD"],
    )
    s = StackSettings()
    if not port_open(s.host, s.kafka_sasl_port):
        pytest.fail(no_sasl_listener_hint(s), pytrace=False)
    return settings


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of the real PostgreSQL server's ``nightshift`` database."""
    return _start("postgres")["PG_DSN"]


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """URL of the real S3 server (S3Proxy); credentials are exported to the environment."""
    return _start("s3")["S3_ENDPOINT"]


@pytest.fixture(scope="session")
def schema_registry_url() -> str:
    """Confluent-compatible URL of the real schema registry (Apicurio), with every schema under its fixed id."""
    return _start("registry")["SCHEMA_REGISTRY_URL"]


@pytest.fixture(scope="session")
def dav_endpoint() -> str:
    """``dav://host:port`` of the real WebDAV server (wsgidav); its bearer token is exported as ``DAV_TOKEN``."""
    return _start("dav")["DAV_ENDPOINT"]


@pytest.fixture
def unique_name() -> Iterator[str]:
    """A short unique suffix for topics, buckets, schemas and databases of one test."""
    yield "t" + uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class _OwnStack(StackSettings):
    """Stack settings whose state lives in a directory of the test's own (not ``NIGHTSHIFT_STACK_DIR``)."""

    own_state_dir: Path = field(default_factory=Path)

    @property
    def state_dir(self) -> Path:
        return self.own_state_dir


def _free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@pytest.fixture
def own_kafka() -> Iterator[StackSettings]:
    """A private single-node Kafka (free ports, a temporary state dir) that a test may stop and restart
    (``nightshift_dev.devstack._kafka.stop/start``) without touching the shared broker; stopped and
    deleted at teardown."""
    from nightshift_dev.devstack import _kafka

    state = Path(tempfile.mkdtemp(prefix="nightshift-own-kafka-"))
    port, controller, sasl = _free_ports(3)
    s = _OwnStack(kafka_port=port, kafka_controller_port=controller, kafka_sasl_port=sasl, own_state_dir=state)
    try:
        _kafka.start(s)
        yield s
    finally:
        _kafka.stop(s)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(autouse=True)
def _session_event_loop_stays_current(request: pytest.FixtureRequest) -> Iterator[None]:
    """Keep pytest-asyncio's session loop the main thread's current loop across synchronous tests.

    A synchronous test that runs ``asyncio.run`` (a CLI command through ``CliRunner``, a service's
    ``main``) leaves the main thread with no current event loop when it returns, and the next
    ``async`` test, which runs on the session loop, then fails with "There is no current event loop"
    (so a test's outcome would depend on which test ran before it).
    """
    if is_async_test(request.node):
        yield
        return
    runner = request.getfixturevalue("_session_scoped_runner")
    yield
    asyncio.set_event_loop(runner.get_loop())
