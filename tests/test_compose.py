"""docker-compose.yml cannot run here (no Docker engine); check what can be checked."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from nightshift.events import all_topics

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"ingest", "registry", "datastore-writer", "planner", "runner", "alert-publisher"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_names_the_real_parts_and_every_service() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["minio"]["image"].startswith("minio/minio")
    assert set(services) >= SERVICES
    for name in SERVICES:
        svc = services[name]
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"  # one image for all
        assert svc["command"] == [f"nightshift_services.{name.replace('-', '_')}"]
        assert svc["environment"]["NIGHTSHIFT_SERVICE_NAME"] == name
    assert (ROOT / "deploy" / "Dockerfile").is_file()


def test_compose_creates_every_topic_the_code_uses() -> None:
    script = compose()["services"]["topics"]["command"][0]
    loop = re.search(r"for t in (.*?);", script)
    assert loop is not None, script
    created = set(loop.group(1).split())
    assert set(all_topics()) <= created


def test_compose_takes_secrets_from_the_environment_only() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for key in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        for value in re.findall(rf"^\s*{key}:\s*(\S+)", text, flags=re.MULTILINE):
            assert value.startswith("${"), f"{key} must come from the environment, not {value!r}"
