"""Apache Kafka, one KRaft node (broker + controller) on loopback."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from ._maven import resolve_jars
from ._process import check_port_free, port_open, read_pid, run_checked, spawn, stop_pid, wait_ready, which
from ._settings import StackSettings

NAME = "kafka"


def _paths(s: StackSettings) -> dict[str, Path]:
    base = s.state_dir / NAME
    return {
        "base": base,
        "data": base / "data",
        "config": base / "server.properties",
        "log": base / "server.log",
        "pid": base / "kafka.pid",
        "jars": s.cache_dir / "jars" / "kafka",
    }


def bootstrap(s: StackSettings) -> str:
    return f"{s.host}:{s.kafka_port}"


def _write_config(s: StackSettings, p: dict[str, Path]) -> None:
    p["config"].write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{s.host}:{s.kafka_controller_port}",
                f"listeners=PLAINTEXT://{s.host}:{s.kafka_port},CONTROLLER://{s.host}:{s.kafka_controller_port}",
                f"advertised.listeners=PLAINTEXT://{s.host}:{s.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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
    if read_pid(p["pid"]) is not None and ready(s):
        return
    java = which("java")
    jars = resolve_jars(s.deploy_dir / "kafka" / "pom.xml", p["jars"])
    check_port_free("Kafka", s.host, s.kafka_port, "NIGHTSHIFT_KAFKA_PORT")
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
    wait_ready("Kafka", lambda: ready(s), timeout, p["log"], alive=alive)


def ready(s: StackSettings) -> bool:
    """The broker answers a metadata request."""
    if not port_open(s.host, s.kafka_port):
        return False
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap(s), "log_level": 0}).list_topics(timeout=2)
    except Exception:  # any KafkaException means "not yet"
        return False
    return True


def stop(s: StackSettings) -> bool:
    return stop_pid(_paths(s)["pid"], timeout=30.0)


def running(s: StackSettings) -> bool:
    return read_pid(_paths(s)["pid"]) is not None


def env(s: StackSettings) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP": bootstrap(s)}


def log_file(s: StackSettings) -> Path:
    return _paths(s)["log"]
