"""One typed Kafka configuration: librdkafka dict, environment, secrets, and SASL/SCRAM on the real broker."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from pydantic import ValidationError

from nightshift.events import (
    AsyncProducer,
    DatasetStored,
    Event,
    EventConsumer,
    KafkaAuthenticationError,
    KafkaConnectionError,
    KafkaSettings,
    check_connection,
    dlq_topic,
    ensure_topics,
    kafka_settings,
)

PASSWORD = "pw-Zq8#not-for-logs"


def sasl(**overrides: object) -> KafkaSettings:
    values: dict[str, object] = {
        "bootstrap_servers": "broker-1:9096,broker-2:9096", "security_protocol": "SASL_SSL",
        "sasl_username": "alert-reader", "sasl_password": PASSWORD, **overrides,
    }
    return KafkaSettings(**values)  # type: ignore[arg-type]  # values of mixed types, validated by pydantic


# -- the settings object -----------------------------------------------------------------------
def test_librdkafka_config_maps_every_set_field_to_its_dotted_name(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    s = sasl(ssl_ca_location=ca, client_id="nightshift-test", socket_timeout_ms=30000,
             socket_keepalive_enable=True, broker_address_family="v4")
    assert s.librdkafka_config() == {
        "bootstrap.servers": "broker-1:9096,broker-2:9096",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",  # Rubin's mechanism is the default
        "sasl.username": "alert-reader",
        "sasl.password": PASSWORD,  # revealed here, and only here
        "ssl.ca.location": str(ca),
        "client.id": "nightshift-test",
        "socket.timeout.ms": 30000,
        "socket.keepalive.enable": True,
        "broker.address.family": "v4",
    }
    # Plaintext: no SASL keys at all, so librdkafka gets nothing it would ignore.
    assert KafkaSettings(bootstrap_servers="h:1").librdkafka_config() == {
        "bootstrap.servers": "h:1", "security.protocol": "PLAINTEXT",
    }


def test_dotted_librdkafka_names_are_accepted_and_unknown_ones_refused() -> None:
    s = KafkaSettings(**{"bootstrap.servers": "h:1", "socket.timeout.ms": 5000, "client.id": "x"})  # type: ignore[arg-type]  # aliases
    assert (s.bootstrap_servers, s.socket_timeout_ms, s.client_id) == ("h:1", 5000, "x")
    with pytest.raises(ValidationError, match="linger.ms"):
        KafkaSettings(**{"linger.ms": 5})  # type: ignore[arg-type]  # a producer property, not a connection one
    with pytest.raises(ValidationError, match="security_protocol"):
        KafkaSettings(security_protocol="SASL_TLS")
    with pytest.raises(ValidationError, match="sasl_mechanism"):
        sasl(sasl_mechanism="GSSAPI")


def test_the_password_shows_nowhere_but_in_the_librdkafka_dict() -> None:
    s = sasl(ssl_key_password="key-" + PASSWORD)
    for text in (repr(s), str(s), f"{s}", s.model_dump_json(), str(s.model_dump()), s.describe()):
        assert PASSWORD not in text
    assert "alert-reader" in s.describe() and "SCRAM-SHA-512" in s.describe()
    # A validation error does not echo its input, which may hold the password.
    with pytest.raises(ValidationError) as info:
        KafkaSettings(security_protocol="SASL_SSL", sasl_password=PASSWORD)
    assert PASSWORD not in str(info.value)
    assert "NIGHTSHIFT_KAFKA_SASL_USERNAME" in str(info.value)
    with pytest.raises(ValidationError) as info:
        sasl(socket_timeout_ms=-5)
    assert PASSWORD not in str(info.value) and "socket_timeout_ms" in str(info.value)


def test_sasl_needs_credentials_and_credentials_need_sasl() -> None:
    with pytest.raises(ValidationError, match="needs sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u")
    with pytest.raises(ValidationError, match="would not send them"):
        KafkaSettings(sasl_username="u", sasl_password=PASSWORD)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NIGHTSHIFT_KAFKA_BOOTSTRAP_SERVERS", "NIGHTSHIFT_KAFKA_BOOTSTRAP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "from-dev-env:19092")  # as `nightshift dev env` prints it
    assert KafkaSettings().bootstrap_servers == "from-dev-env:19092"
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_BOOTSTRAP", "specific:9092")  # the specific name wins
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_SASL_USERNAME", "alert-reader")
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_SOCKET_TIMEOUT_MS", "20000")
    s = KafkaSettings()
    assert s.librdkafka_config() == {
        "bootstrap.servers": "specific:9092", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alert-reader", "sasl.password": PASSWORD, "socket.timeout.ms": 20000,
    }
    # A bootstrap string (the call sites of earlier releases) keeps the environment's authentication.
    assert kafka_settings("other:9092").librdkafka_config()["sasl.username"] == "alert-reader"
    # ...and environment() recreates the settings in a child process.
    for key, value in s.environment().items():
        monkeypatch.setenv(key, value)
    assert KafkaSettings() == s


def test_service_settings_carry_kafka_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from nightshift.service import ServiceSettings

    monkeypatch.setenv("NIGHTSHIFT_KAFKA_BOOTSTRAP", "b:1")
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_SASL_USERNAME", "runner")
    monkeypatch.setenv("NIGHTSHIFT_KAFKA_SASL_PASSWORD", PASSWORD)
    s = ServiceSettings()
    assert s.kafka.sasl_username == "runner" and s.kafka_bootstrap == "b:1"
    assert PASSWORD not in repr(s)


# -- against the real broker ----------------------------------------------------------------------
def stored(i: int) -> DatasetStored:
    return DatasetStored(dataset_id=uuid.uuid4(), dataset_type="calexp", run="run/1", uri=f"s3://repo/c/{i}.fits")


@pytest.mark.integration
async def test_producer_and_consumer_authenticate_with_scram_sha_512(
    kafka_sasl: KafkaSettings, unique_name: str
) -> None:
    assert kafka_sasl.security_protocol == "SASL_PLAINTEXT" and kafka_sasl.sasl_mechanism == "SCRAM-SHA-512"
    topic = f"dataset.stored.{unique_name}"
    ensure_topics(kafka_sasl, [topic, dlq_topic(topic)], partitions=1)
    async with AsyncProducer(kafka_sasl) as producer:
        sent = [await producer.send_event(stored(i), topic=topic) for i in range(5)]
        assert [d.offset for d in sent] == list(range(5))

        got: list[Event] = []
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def handler(event: Event, _msg: object) -> None:
            got.append(event)
            if len(got) == 5 and not done.done():
                done.set_result(None)

        consumer = EventConsumer(kafka_sasl, f"g-{unique_name}", [topic], handler, producer,
                                 subjects={topic: "dataset.stored"})
        task = asyncio.create_task(consumer.run())
        try:
            await asyncio.wait_for(done, 60)  # deadlock guard only
        finally:
            await consumer.close(10)
            await task
    assert sorted(e.uri for e in got) == sorted(f"s3://repo/c/{i}.fits" for i in range(5))  # type: ignore[attr-defined]  # DatasetStored events
    # A plain confluent-kafka client with the same dict reads the same topic.
    c = Consumer({**kafka_sasl.librdkafka_config(), "group.id": f"plain-{unique_name}",
                  "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        values: list[bytes] = []
        for _ in range(120):  # deadlock guard: at most 120 polls of 0.5 s
            values += [m.value() for m in c.consume(10, 0.5) if m.error() is None]  # type: ignore[misc]  # error-free messages have a value
            if len(values) == 5:
                break
    finally:
        c.close()
    assert len(values) == 5


@pytest.mark.integration
async def test_a_wrong_password_fails_fast_with_a_clear_error_that_hides_it(
    kafka_sasl: KafkaSettings, unique_name: str
) -> None:
    bad = KafkaSettings(**{**kafka_sasl.model_dump(exclude_none=True), "sasl_password": PASSWORD})
    # The timeouts are far beyond what a refused login takes: getting KafkaAuthenticationError (not the
    # KafkaConnectionError of a timeout) shows the refusal was recognised at once.
    with pytest.raises(KafkaAuthenticationError) as info:
        check_connection(bad, timeout=300)
    message = str(info.value)
    assert PASSWORD not in message and PASSWORD not in repr(info.value)
    assert "refused the SASL login" in message and "nightshift" in message and "SCRAM-SHA-512" in message
    assert "NIGHTSHIFT_KAFKA_SASL_PASSWORD" in message  # says what to fix
    assert kafka_sasl.bootstrap_servers in message
    assert not info.value.retriable

    with pytest.raises(KafkaAuthenticationError):
        await AsyncProducer(bad, connect_timeout=300).start()
    with pytest.raises(KafkaAuthenticationError):
        ensure_topics(bad, [f"never.{unique_name}"], timeout=300)

    async def handler(event: Event, _msg: object) -> None:  # never called
        raise AssertionError("a consumer with a wrong password received a message")

    async with AsyncProducer(kafka_sasl) as producer:
        consumer = EventConsumer(bad, f"g-{unique_name}", [f"x.{unique_name}"], handler, producer,
                                 connect_timeout=300)
        with pytest.raises(KafkaAuthenticationError):
            await asyncio.wait_for(consumer.run(), 600)  # deadlock guard only


@pytest.mark.integration
def test_plaintext_clients_still_reach_the_plaintext_listener(kafka_bootstrap: str) -> None:
    assert check_connection(kafka_bootstrap, timeout=60) == 1


def test_unreachable_brokers_are_a_connection_error_naming_them() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}")
    with pytest.raises(KafkaConnectionError, match=rf"no Kafka broker answered at 127.0.0.1:{port}") as info:
        check_connection(settings, timeout=1)
    assert not isinstance(info.value, KafkaAuthenticationError) and info.value.retriable

