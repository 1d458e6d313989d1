"""Produce and consume N small events through the real broker; report throughput and latency.

Usage::

    nightshift dev up kafka
    .venv/bin/python loadtests/kafka_roundtrip.py --events 20000              # throughput (burst)
    .venv/bin/python loadtests/kafka_roundtrip.py --events 10000 --rate 1000  # latency at a set rate

Prints one JSON object, then a one-line summary. The producer is the idempotent
``AsyncProducer`` (acks=all); the consumer is ``EventConsumer`` (decode +
validate + commit per batch), both in this process, so the latency includes
encode, broker round trip, decode, validation and the handler call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import time
import uuid

import numpy as np
from confluent_kafka import Message

from nightshift.events import AsyncProducer, DatasetStored, Event, EventConsumer, encode, ensure_topics


async def run(bootstrap: str, n: int, partitions: int, rate: float | None) -> dict[str, object]:
    topic = f"bench.stored.{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic, topic + ".dlq"], partitions=partitions)
    latencies = np.zeros(n)
    seen = 0
    done = asyncio.get_running_loop().create_future()

    async def handler(event: Event, msg: Message) -> None:
        nonlocal seen
        sent_ns = struct.unpack(">q", dict(msg.headers())["sent_ns"])[0]
        latencies[seen] = (time.time_ns() - sent_ns) / 1e6
        seen += 1
        if seen == n and not done.done():
            done.set_result(None)

    async with AsyncProducer(bootstrap) as producer:
        consumer = EventConsumer(bootstrap, f"bench-{topic}", [topic], handler, producer, max_batch=500,
                                 concurrency=64, subjects={topic: "dataset.stored"})
        task = asyncio.create_task(consumer.run())
        await asyncio.wait_for(consumer.assigned.wait(), 60)
        payloads = [
            encode(DatasetStored(dataset_id=uuid.uuid4(), dataset_type="calexp", run="bench", uri=f"s3://b/{i}"))
            for i in range(n)
        ]
        start = time.perf_counter()
        futures = []
        for i, p in enumerate(payloads):
            if rate and i % 50 == 0:
                # Paced mode: latency at a sustainable rate rather than the backlog of a burst.
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            futures.append(await producer.enqueue(topic, p, headers=[("sent_ns", struct.pack(">q", time.time_ns()))]))
        await asyncio.gather(*futures)
        produced_s = time.perf_counter() - start
        await asyncio.wait_for(done, 300)
        total_s = time.perf_counter() - start
        await consumer.close()
        await task
    return {
        "benchmark": "kafka_roundtrip",
        "events": n,
        "partitions": partitions,
        "offered_rate_per_s": rate or "burst",
        "event_bytes": int(np.mean([len(p) for p in payloads])),
        "produce_events_per_s": round(n / produced_s),
        "end_to_end_events_per_s": round(n / total_s),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 2),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 2),
        "latency_ms_max": round(float(latencies.max()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=float, default=None, help="events/s to offer; default: as fast as possible")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    args = parser.parse_args()
    result = asyncio.run(run(args.bootstrap, args.events, args.partitions, args.rate))
    print(json.dumps(result))
    print(
        f"kafka_roundtrip: {result['events']} events offered at {result['offered_rate_per_s']}/s, "
        f"{result['end_to_end_events_per_s']} ev/s end-to-end, "
        f"latency p50 {result['latency_ms_p50']} ms p99 {result['latency_ms_p99']} ms"
    )


if __name__ == "__main__":
    main()
