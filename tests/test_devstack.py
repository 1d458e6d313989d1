"""The local stack is made of real servers that answer real clients."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from confluent_kafka.admin import AdminClient

from nightshift_dev.devstack import MissingToolError, StackError, StackSettings, stack_env
from nightshift_dev.devstack._java import find_java
from nightshift_dev.devstack._process import check_port_free, which


@pytest.mark.integration
def test_kafka_is_apache_kafka_in_kraft_mode(kafka_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    meta = admin.list_topics(timeout=10)
    assert len(meta.brokers) == 1
    # A KRaft cluster has a controller quorum; describe_cluster answers with it.
    cluster = admin.describe_cluster().result(timeout=10)
    assert cluster.cluster_id


@pytest.mark.integration
async def test_postgres_is_a_real_server(pg_dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg_dsn)
    try:
        version = await conn.fetchval("SHOW server_version_num")
        user = await conn.fetchval("SELECT current_user")
    finally:
        await conn.close()
    assert int(version) >= 130000
    assert user == "nightshift"


@pytest.mark.integration
def test_s3_server_round_trip(s3_endpoint: str, unique_name: str) -> None:
    env = stack_env(names=["s3"])
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    )
    s3.create_bucket(Bucket=unique_name)
    s3.put_object(Bucket=unique_name, Key="raw/visit=1/det=2.fits", Body=b"SIMPLE  =")
    body = s3.get_object(Bucket=unique_name, Key="raw/visit=1/det=2.fits")["Body"].read()
    assert body == b"SIMPLE  ="
    # Wrong credentials are refused: the server really authenticates.
    bad = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="nobody", aws_secret_access_key="wrong",
        region_name="us-east-1",
    )
    with pytest.raises(Exception, match="AccessDenied|InvalidAccessKeyId|Forbidden|SignatureDoesNotMatch"):
        bad.list_objects_v2(Bucket=unique_name)


@pytest.mark.integration
def test_webdav_server_is_wsgidav_behind_a_bearer_token(dav_endpoint: str, unique_name: str) -> None:
    """The stack's WebDAV server speaks WebDAV (MKCOL, PUT, ranged GET, PROPFIND) and wants its bearer token."""
    import httpx

    env = stack_env(names=["dav"])
    assert env["DAV_ENDPOINT"] == dav_endpoint and dav_endpoint.startswith("dav://127.0.0.1:")
    base = "http://" + dav_endpoint.split("://", 1)[1]
    auth = {"Authorization": f"Bearer {env['DAV_TOKEN']}"}
    with httpx.Client(headers=auth, timeout=30) as client:
        assert client.request("MKCOL", f"{base}/{unique_name}/").status_code == 201
        assert client.put(f"{base}/{unique_name}/f.txt", content=b"0123456789").status_code == 201
        part = client.get(f"{base}/{unique_name}/f.txt", headers={"Range": "bytes=3-5"})
        assert (part.status_code, part.content) == (206, b"345")
        listing = client.request("PROPFIND", f"{base}/{unique_name}/", headers={"Depth": "1"})
        assert listing.status_code == 207 and b"f.txt" in listing.content
        options = client.options(f"{base}/").headers
        assert options["dav"] == "1,2" and options["server"].lower().startswith("cheroot/")  # wsgidav in cheroot
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic bm9ib2R5Ondyb25n"}):
        refused = httpx.get(f"{base}/{unique_name}/f.txt", headers=headers, timeout=30)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")


def test_dev_up_prints_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dev up`` shows addresses, never the WebDAV token, S3 secret or Kafka password (``dev env`` is for eval)."""
    from click.testing import CliRunner

    from nightshift_dev import cli as _dev

    monkeypatch.setattr(_dev, "up", lambda names=None: {"DAV_ENDPOINT": "dav://h:1", "DAV_TOKEN": "tok-123",
                                                        "AWS_SECRET_ACCESS_KEY": "s3c", "KAFKA_SASL_PASSWORD": "pw"})
    out = CliRunner().invoke(_dev.dev, ["up", "dav"]).output
    assert "DAV_ENDPOINT=dav://h:1" in out
    assert "tok-123" not in out and "s3c" not in out and "pw" not in out


def test_missing_tool_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingToolError, match=r"'initdb' was not found.*apt-get install -y postgresql"):
        which("initdb")


@pytest.mark.integration
def test_busy_port_is_reported_with_the_variable_to_change(pg_dsn: str) -> None:
    s = StackSettings()
    with pytest.raises(StackError, match=rf"port 127.0.0.1:{s.pg_port} is already in use.*NIGHTSHIFT_PG_PORT"):
        check_port_free("PostgreSQL", "127.0.0.1", s.pg_port, "NIGHTSHIFT_PG_PORT")


@pytest.mark.integration
@pytest.mark.slow
def test_kafka_data_survives_down_and_up(kafka_bootstrap: str, unique_name: str) -> None:
    from confluent_kafka import Consumer, Producer

    from nightshift.events import ensure_topics
    from nightshift_dev.devstack import down, up

    topic = f"restart.{unique_name}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i in range(5):
        producer.produce(topic, value=f"m{i}".encode())
    assert producer.flush(20) == 0

    assert down(names=["kafka"]) == ["kafka"]
    assert up(names=["kafka"])["KAFKA_BOOTSTRAP"] == kafka_bootstrap

    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": unique_name, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    import time

    deadline = time.monotonic() + 120  # a deadlock guard: the loop ends as soon as the 5 messages are read
    while len(got) < 5 and time.monotonic() < deadline:
        got += [m.value() for m in consumer.consume(10, 0.5) if m.error() is None]
    consumer.close()
    assert got == [f"m{i}".encode() for i in range(5)]


def fake_jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 1\n")
    java.chmod(0o755)
    (home / "release").write_text(f'IMPLEMENTOR="test"\nJAVA_VERSION="{version}"\n')
    return java


def test_a_jdk_21_is_found_beside_an_older_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """JAVA_HOME and PATH hold a Java 17 (as here); the newest JDK >= 21 of the JVM folder wins."""
    jvm = tmp_path / "jvm"
    old = fake_jdk(jvm, "java-17-openjdk-amd64", "17.0.15")
    fake_jdk(jvm, "temurin-21-jdk-amd64", "21.0.5")
    newest = fake_jdk(jvm, "temurin-25-jdk-amd64", "25.0.3")
    monkeypatch.setenv("JAVA_HOME", str(old.parent.parent))
    monkeypatch.setenv("PATH", str(old.parent))
    jdk = find_java(21, "Apicurio Registry 3", dirs=(jvm,))
    assert (jdk.java, jdk.version) == (newest, 25)
    # A JAVA_HOME that is new enough is taken as the user's choice.
    chosen = fake_jdk(tmp_path / "opt", "jdk-22", "22.0.1")
    monkeypatch.setenv("JAVA_HOME", str(chosen.parent.parent))
    assert find_java(21, "Apicurio Registry 3", dirs=(jvm,)).java == chosen


def test_no_jdk_21_names_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jvm = tmp_path / "jvm"
    fake_jdk(jvm, "java-17-openjdk-amd64", "17.0.15")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingToolError, match=r"Apicurio Registry 3 needs Java 21 or newer.*Java 17.*"
                                               r"apt-get install -y openjdk-21-jdk-headless"):
        find_java(21, "Apicurio Registry 3", dirs=(jvm,))


@pytest.mark.integration
def test_registry_is_apicurio_with_a_confluent_compatible_api(schema_registry_url: str) -> None:
    import httpx

    assert schema_registry_url.endswith("/apis/ccompat/v7")
    root = schema_registry_url.removesuffix("/apis/ccompat/v7")
    info = httpx.get(f"{root}/apis/registry/v3/system/info", timeout=30).json()
    assert info["version"].startswith("3.")
    assert "alert-packet" in httpx.get(f"{schema_registry_url}/subjects", timeout=30).json()
