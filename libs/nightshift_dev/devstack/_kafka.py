"""Apache Kafka, one KRaft node (broker + controller) on loopback.

Two client listeners: PLAINTEXT (``KAFKA_BOOTSTRAP``) and SASL_PLAINTEXT with
SCRAM-SHA-512 (``KAFKA_SASL_BOOTSTRAP``), the mechanism of Rubin's alert stream.
The SCRAM user ``nightshift`` gets a random password, generated once into
``.stack/kafka/sasl.password`` (mode 600) and upserted through the admin API at
every start, so a storage directory formatted before the listener existed gets it too.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import StackError
from ._maven import resolve_jars
from ._process import check_port_free, port_open, read_pid, run_checked, spawn, stop_pid, wait_ready, which
from ._settings import StackSettings

if TYPE_CHECKING:
    from nightshift.events import KafkaSettings

NAME = "kafka"
log = logging.getLogger(__name__)
SASL_USER = "nightshift"
SASL_MECHANISM = "SCRAM-SHA-512"


def _paths(s: StackSettings) -> dict[str, Path]:
    base = s.state_dir / NAME
    return {
        "base": base,
        "data": base / "data",
        "config": base / "server.properties",
        "log": base / "server.log",
        "pid": base / "kafka.pid",
        "sasl_password": base / "sasl.password",
        "jars": s.cache_dir / "jars" / "kafka",
    }


def bootstrap(s: StackSettings) -> str:
    return f"{s.host}:{s.kafka_port}"


def sasl_bootstrap(s: StackSettings) -> str:
    return f"{s.host}:{s.kafka_sasl_port}"


def sasl_password(s: StackSettings) -> str:
    """The SCRAM password of the stack's user, created on first use (mode 600)."""
    path = _paths(s)["sasl_password"]
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _write_config(s: StackSettings, p: dict[str, Path]) -> None:
    p["config"].write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{s.host}:{s.kafka_controller_port}",
                f"listeners=PLAINTEXT://{s.host}:{s.kafka_port},SASL_PLAINTEXT://{s.host}:{s.kafka_sasl_port},"
                f"CONTROLLER://{s.host}:{s.kafka_controller_port}",
                f"advertised.listeners=PLAINTEXT://{s.host}:{s.kafka_port},SASL_PLAINTEXT://{s.host}:{s.kafka_sasl_port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
                # SASL/SCRAM-SHA-512 as on Rubin's alert stream; credentials live in the metadata log.
                f"sasl.enabled.mechanisms={SASL_MECHANISM}",
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                f"log.dirs={p['data']}",
                "num.partitions=4",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=8",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # Topics are created explicitly by nightshift.events.ensure_topics,
                # so a misspelt topic name is an error rather than a new topic.
                "auto.create.topics.enable=false",
                "log.retention.hours=168",
                "",
            ]
        )
    )


def _classpath(jars: Path) -> str:
    return f"{jars}/*"


def start(s: StackSettings, timeout: float = 90.0) -> None:
    """Start the broker (resolving jars and formatting storage the first time)."""
    p = _paths(s)
    if read_pid(p["pid"]) is not None and _metadata_ok(s):
        if port_open(s.host, s.kafka_sasl_port):
            _ensure_scram_user(s)
        else:
            # Reused as it is: plaintext clients keep working; SASL clients get the hint.
            log.warning("%s", no_sasl_listener_hint(s))
        return
    java = which("java")
    jars = resolve_jars(s.deploy_dir / "kafka" / "pom.xml", p["jars"])
    check_port_free("Kafka", s.host, s.kafka_port, "NIGHTSHIFT_KAFKA_PORT")
    check_port_free("Kafka SASL listener", s.host, s.kafka_sasl_port, "NIGHTSHIFT_KAFKA_SASL_PORT")
    check_port_free("Kafka controller", s.host, s.kafka_controller_port, "NIGHTSHIFT_KAFKA_CONTROLLER_PORT")
    p["base"].mkdir(parents=True, exist_ok=True)
    _write_config(s, p)
    log4j = s.deploy_dir / "kafka" / "log4j2.yaml"
    jvm = [java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={log4j}", "-cp", _classpath(jars)]
    if not (p["data"] / "meta.properties").is_file():
        # The log directory survives down/up; it is formatted only once.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        run_checked(
            [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(p["config"])],
            what="formatting the Kafka storage directory",
        )
    alive = spawn([*jvm, "kafka.Kafka", str(p["config"])], p["log"], p["pid"])
    wait_ready("Kafka", lambda: _metadata_ok(s), timeout, p["log"], alive=alive)
    _ensure_scram_user(s)
    wait_ready("Kafka's SASL listener", lambda: ready(s), timeout, p["log"], alive=alive)


def no_sasl_listener_hint(s: StackSettings) -> str:
    return (
        f"the running Kafka broker has no SASL listener on {sasl_bootstrap(s)}: it was started by an older "
        "nightshift. Restart it to get one: `nightshift dev down kafka && nightshift dev up`."
    )


def _metadata_ok(s: StackSettings, sasl: bool = False) -> bool:
    port = s.kafka_sasl_port if sasl else s.kafka_port
    if not port_open(s.host, port):
        return False
    from confluent_kafka.admin import AdminClient

    config = client_settings(s, sasl=sasl).librdkafka_config()
    try:
        AdminClient({**config, "log_level": 0}).list_topics(timeout=2)
    except Exception:  # any KafkaException means "not yet"
        return False
    return True


def _ensure_scram_user(s: StackSettings, timeout: float = 30.0) -> None:
    """Create or update the SCRAM-SHA-512 credential of the stack's user (idempotent)."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._scram import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    admin = AdminClient({"bootstrap.servers": bootstrap(s), "log_level": 0})
    upsert = UserScramCredentialUpsertion(
        SASL_USER, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), sasl_password(s).encode()
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.alter_user_scram_credentials([upsert])[SASL_USER].result(timeout=10)
            return
        except Exception as exc:  # the controller may still be electing itself
            if time.monotonic() > deadline:
                raise StackError(f"could not create the Kafka SCRAM user {SASL_USER!r}: {exc}") from exc
            time.sleep(0.5)


def client_settings(s: StackSettings, sasl: bool = False) -> KafkaSettings:
    """Client settings for the stack's plaintext listener, or its SASL/SCRAM one."""
    from nightshift.events import KafkaSettings

    if not sasl:
        return KafkaSettings(bootstrap_servers=bootstrap(s))
    return KafkaSettings(
        bootstrap_servers=sasl_bootstrap(s), security_protocol="SASL_PLAINTEXT", sasl_mechanism=SASL_MECHANISM,
        sasl_username=SASL_USER, sasl_password=sasl_password(s),
    )


def ready(s: StackSettings) -> bool:
    """The broker answers a metadata request on both listeners (the SASL one authenticated)."""
    return _metadata_ok(s) and _metadata_ok(s, sasl=True)


def stop(s: StackSettings) -> bool:
    return stop_pid(_paths(s)["pid"], timeout=30.0)


def running(s: StackSettings) -> bool:
    return read_pid(_paths(s)["pid"]) is not None


def env(s: StackSettings) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP": bootstrap(s),
        "KAFKA_SASL_BOOTSTRAP": sasl_bootstrap(s),
        "KAFKA_SASL_MECHANISM": SASL_MECHANISM,
        "KAFKA_SASL_USERNAME": SASL_USER,
        "KAFKA_SASL_PASSWORD": sasl_password(s),
    }


def log_file(s: StackSettings) -> Path:
    return _paths(s)["log"]
