"""The main job of ``make demo``: the most complete end-to-end run nightshift can do today.

Each step talks to the real local stack (started by ``nightshift dev up``) and
prints what it did. Steps are added as capabilities land.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Message
from confluent_kafka.admin import AdminClient

from nightshift.events import (
    AsyncProducer,
    Event,
    EventConsumer,
    NextVisit,
    RawArrived,
    dlq_topic,
    encode,
    ensure_topics,
)

from ._demo_butler import apdb_step, butler_step, pipeline_step
from .devstack import stack_env

Echo = Callable[[str], None]


async def _events_step(bootstrap: str, echo: Echo) -> None:
    """nextVisit + one raw.arrived per detector through the broker, plus one poison message."""
    run_tag = uuid.uuid4().hex[:8]
    # Topics of this run only (carrying the nextVisit and raw.arrived subjects), removed at the end,
    # so a re-run never sees an earlier run's messages.
    subjects = {f"nextVisit.demo-{run_tag}": "nextVisit", f"raw.arrived.demo-{run_tag}": "raw.arrived"}
    topics = list(subjects)
    nv_topic, raw_topic = topics
    ensure_topics(bootstrap, topics + [dlq_topic(t) for t in topics], partitions=2)
    visit = int(datetime.now(UTC).strftime("%Y%m%d")) * 100000 + int(time.time()) % 100000
    detectors = list(range(8))
    next_visit = NextVisit(
        instrument="LSSTCam", group_id=f"demo-{run_tag}", visit=visit,
        day_obs=int(datetime.now(UTC).strftime("%Y%m%d")), survey="demo", ra_deg=53.1, dec_deg=-28.1,
        rotation_deg=0.0, physical_filter="r_57", exposure_time_s=30.0, n_snaps=1, detectors=detectors,
    )
    raws = [
        RawArrived(
            instrument="LSSTCam", group_id=next_visit.group_id, visit=visit, detector=d, snap=0,
            uri=f"s3://raw/LSSTCam/{visit}/{d:03d}.fits", size_bytes=18_000_000,
            checksum=hashlib.sha256(f"{visit}/{d}".encode()).hexdigest(), observed_at=datetime.now(UTC),
        )
        for d in detectors
    ]
    received: dict[str, list[Event]] = {"nextVisit": [], "raw.arrived": []}
    done = asyncio.get_running_loop().create_future()

    async def handler(event: Event, msg: Message) -> None:
        received[event.SUBJECT].append(event)
        if len(received["raw.arrived"]) == len(raws) and received["nextVisit"] and not done.done():
            done.set_result(None)

    async with AsyncProducer(bootstrap) as producer:
        consumer = EventConsumer(bootstrap, f"demo-{run_tag}", topics, handler, producer, subjects=subjects)
        task = asyncio.create_task(consumer.run())
        await asyncio.wait_for(consumer.assigned.wait(), 60)
        t0 = time.perf_counter()
        sent = [await producer.enqueue(nv_topic, encode(next_visit))]
        sent += [await producer.enqueue(raw_topic, encode(r), key=str(r.detector)) for r in raws]
        sent.append(await producer.enqueue(raw_topic, b"\x00\x00\x00\x00\x02garbage"))
        await asyncio.gather(*sent)
        await asyncio.wait_for(done, 60)
        elapsed = time.perf_counter() - t0
        for _ in range(100):  # the poison message is dead-lettered in the same batch or the next
            if consumer.stats.dead_lettered:
                break
            await asyncio.sleep(0.05)
        await consumer.close()
        await task
    echo(f"events    : nextVisit for visit {visit} and {len(raws)} raw.arrived round-tripped through Apache Kafka "
         f"at {bootstrap} in {elapsed * 1000:.0f} ms (Avro, Confluent wire format)")
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive its futures
    deleted = admin.delete_topics(topics + [dlq_topic(t) for t in topics])
    for future in deleted.values():
        future.result(30)
    echo(f"            {consumer.stats.dead_lettered} poison message sent to the dead-letter topic with reason: "
         f"{consumer.stats.dlq_reasons[0] if consumer.stats.dlq_reasons else '-'}")


def run_demo(echo: Echo = print) -> None:
    """Run every demo step against the local stack."""
    env = stack_env()
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    echo("nightshift demo — against the local stack (Apache Kafka, PostgreSQL, S3Proxy)")
    asyncio.run(_events_step(env["KAFKA_BOOTSTRAP"], echo))
    butler_step(env, echo)
    apdb_step(env, echo)
    pipeline_step(env, echo)
    echo("demo finished")
