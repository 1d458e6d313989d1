"""A service on the real broker and database: crash safety, graceful drain, health and metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from nightshift.events import AsyncProducer, DatasetStored, encode, ensure_topics

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).with_name("effect_service.py")


def start_service(topic: str, group: str, table: str, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), topic, group, table], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None  # both are PIPEs
    line = proc.stdout.readline()
    assert line.startswith("READY"), (
        f"service did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
    )
    proc.port = int(line.split("port=")[1])  # type: ignore[attr-defined]  # the service's HTTP port, for the test
    return proc


async def wait_count(conn: asyncpg.Connection, sql: str, at_least: int, timeout: float) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        n = int(await conn.fetchval(sql))
        if n >= at_least or asyncio.get_running_loop().time() > deadline:
            return n
        await asyncio.sleep(0.1)


async def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(
    kafka_bootstrap: str, pg_dsn: str, unique_name: str
) -> None:
    topic, group, table = f"stored.{unique_name}", f"g-{unique_name}", f"crash_{unique_name}"
    ensure_topics(kafka_bootstrap, [topic, topic + ".dlq"], partitions=2)
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(f"CREATE TABLE {table}_deliveries (n bigserial PRIMARY KEY, event_id text NOT NULL)")
    await conn.execute(f"CREATE TABLE {table}_effects (event_id text PRIMARY KEY)")
    n = 400
    events = [DatasetStored(dataset_id=uuid.uuid4(), dataset_type="raw", run="r", uri=f"s3://b/{i}") for i in range(n)]
    async with AsyncProducer(kafka_bootstrap) as producer:
        await asyncio.gather(*[await producer.enqueue(topic, encode(e)) for e in events])
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "PG_DSN": pg_dsn}
    try:
        first = start_service(topic, group, table, {**env, "STALL_AFTER": "100"})  # stuck after 100 deliveries
        assert await wait_count(conn, f"SELECT count(*) FROM {table}_deliveries", 100, 120) >= 100
        first.send_signal(signal.SIGKILL)  # mid-batch: no drain, no commit of the batch in flight
        first.communicate(timeout=30)  # reaps it and closes its pipes
        killed_at = await conn.fetchval(f"SELECT count(*) FROM {table}_effects")
        assert 0 < killed_at <= 100  # the stalled handlers recorded nothing: the rest is left to the next run

        second = start_service(topic, group, table, env)
        done = await wait_count(conn, f"SELECT count(*) FROM {table}_effects", n, 240)
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=30)
        assert second.returncode == 0, err[-2000:]
        assert "STOPPED" in out and '"message": "drained and stopped"' in err  # JSON logs on stderr

        assert done == n
        effects = {r["event_id"] for r in await conn.fetch(f"SELECT event_id FROM {table}_effects")}
        assert effects == {e.event_id for e in events}  # nothing lost
        deliveries = await conn.fetchval(f"SELECT count(*) FROM {table}_deliveries")
        assert deliveries >= n  # at-least-once: redeliveries allowed, effects not doubled
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}_deliveries, {table}_effects")
        await conn.close()


async def test_health_readiness_and_metrics(kafka_bootstrap: str, pg_dsn: str, unique_name: str) -> None:
    topic, group, table = f"stored.{unique_name}", f"g-{unique_name}", f"health_{unique_name}"
    ensure_topics(kafka_bootstrap, [topic, topic + ".dlq"], partitions=1)
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(f"CREATE TABLE {table}_deliveries (n bigserial PRIMARY KEY, event_id text NOT NULL)")
    await conn.execute(f"CREATE TABLE {table}_effects (event_id text PRIMARY KEY)")
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "PG_DSN": pg_dsn}
    proc = start_service(topic, group, table, env)
    try:
        async with AsyncProducer(kafka_bootstrap) as producer:
            await producer.send(topic, encode(DatasetStored(dataset_id=uuid.uuid4(), dataset_type="raw", run="r", uri="s3://b/k")))
            await producer.send(topic, b"garbage")
        assert await wait_count(conn, f"SELECT count(*) FROM {table}_effects", 1, 120) == 1
        base = f"http://127.0.0.1:{proc.port}"  # type: ignore[attr-defined]  # set by start_service
        handled = f'nightshift_events_total{{status="handled",topic="{topic}"}} 1.0'
        dead = f'nightshift_events_total{{status="dead_lettered",topic="{topic}"}} 1.0'
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200 and (await r.json())["ready"] is True
            deadline = asyncio.get_running_loop().time() + 120  # deadlock guard: both events get counted
            while True:
                async with http.get(f"{base}/metrics") as r:
                    text = await r.text()
                if (handled in text and dead in text) or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert handled in text
            assert dead in text
            assert 'nightshift_service_up{service="effect-test"} 1.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        await conn.execute(f"DROP TABLE IF EXISTS {table}_deliveries, {table}_effects")
        await conn.close()
    assert proc.returncode == 0
