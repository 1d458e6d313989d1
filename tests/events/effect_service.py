"""A small real service for the crash tests: records each delivery and an idempotent effect in PostgreSQL.

Run as ``python effect_service.py TOPIC GROUP TABLE`` with ``KAFKA_BOOTSTRAP``
and ``PG_DSN`` set; it stops gracefully on SIGTERM. With ``STALL_AFTER=N`` set,
handlers that start after N deliveries were recorded never finish, so a test can
kill the service mid-batch at a known point rather than racing it.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg
from confluent_kafka import Message

from nightshift.events import AsyncProducer, Event, EventConsumer
from nightshift.service import Service, ServiceSettings, setup_logging


async def main(topic: str, group: str, table: str) -> None:
    import os

    settings = ServiceSettings(service_name="effect-test", http_port=0, drain_timeout_s=10, max_batch=20, concurrency=4)
    setup_logging(settings.service_name, "INFO")
    pool = await asyncpg.create_pool(os.environ["PG_DSN"], min_size=1, max_size=4)
    stall_after = int(os.environ["STALL_AFTER"]) if os.environ.get("STALL_AFTER") else None
    recorded = 0
    never = asyncio.Event()

    async def handler(event: Event, msg: Message) -> None:
        nonlocal recorded
        if stall_after is not None and recorded >= stall_after:
            await never.wait()  # stuck mid-batch until the test kills the process
        recorded += 1
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"INSERT INTO {table}_deliveries (event_id) VALUES ($1)", event.event_id)
            # The effect is keyed by the event id: a redelivered event has no second effect.
            await conn.execute(
                f"INSERT INTO {table}_effects (event_id) VALUES ($1) ON CONFLICT DO NOTHING", event.event_id
            )
        await asyncio.sleep(0.01)

    def consumers(producer: AsyncProducer) -> list[EventConsumer]:
        return [EventConsumer(settings.kafka, group, [topic], handler, producer,
                              max_batch=settings.max_batch, concurrency=settings.concurrency,
                              subjects={topic: "dataset.stored"}, config={"session.timeout.ms": 6000})]

    service = Service(settings, consumers)
    try:
        await service.run()  # prints READY port=...
    finally:
        await pool.close()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
