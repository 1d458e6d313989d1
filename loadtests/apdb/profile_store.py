"""Where a store's time goes: client validation/encoding vs each server statement.

Replays the steps of ``AsyncApdb.store`` for visit ``--visit`` of the benchmark sky
inside one transaction that is rolled back (nothing is written): times validation,
the encoding of each stream, each COPY, and prints ``EXPLAIN (ANALYZE, BUFFERS, WAL)``
of the DiaObjectLast upsert. (Creates the visit's monthly partitions if missing.)

    .venv/bin/python loadtests/apdb/profile_store.py --schema apdb_bench --centres 14 --visit 1050
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from nightshift.apdb import ApdbSettings, AsyncApdb, SkyField, _store
from nightshift.apdb._ddl import CHUNK_TABLES, RECORD_COLUMN, q
from nightshift.apdb._schema_ops import ensure_partitions
from nightshift.apdb._store import _cols, _last_plan


async def main(args: argparse.Namespace) -> None:
    sky = SkyField(centres=args.centres, density=5200.0, sources_per_visit=10_000, forced_per_visit=10_000)
    v = sky.visit(args.visit)
    async with AsyncApdb(ApdbSettings(schema_name=args.schema)) as apdb:
        layout = await apdb.layout()
        t = time.perf_counter()
        p = _store._prepare(layout, v.mjd, v.objects, v.sources, v.forced_sources)
        print(f"validate + pixels: {time.perf_counter() - t:.3f}s")
        streams = {}
        for name in ("DiaSource", "DiaForcedSource", "DiaObject"):
            t = time.perf_counter()
            streams[name] = _store._encode(p, name, 0, 1)
            print(f"encode {name}: {time.perf_counter() - t:.3f}s, {len(streams[name][0]) / 1e6:.1f} MB")
        t = time.perf_counter()
        last_stream, last_names = _store._encode_last(p)
        print(f"encode DiaObjectLast staging: {time.perf_counter() - t:.3f}s, {len(last_stream) / 1e6:.1f} MB")
        w = layout.window(v.mjd)
        tables = ("DiaObject", "DiaSource", "DiaForcedSource", *CHUNK_TABLES.values())
        await ensure_partitions(apdb.pool, layout, {table: {w} for table in tables}, set())
        async with apdb.pool.acquire() as conn:
            tr = conn.transaction()
            await tr.start()
            try:
                for name, (stream, names) in streams.items():
                    t = time.perf_counter()
                    await conn.copy_to_table(
                        name, source=memoryview(stream), columns=names, schema_name=layout.schema, format="binary"
                    )
                    print(f"COPY {name}: {time.perf_counter() - t:.3f}s")
                t = time.perf_counter()
                stage = await _store._stage(conn, "DiaObjectLast", last_stream, last_names)
                print(f"staging COPY DiaObjectLast: {time.perf_counter() - t:.3f}s")
                plan = _last_plan()
                last = [*plan.target_columns(), RECORD_COLUMN]
                updates = ", ".join(f"{q(n)} = EXCLUDED.{q(n)}" for n in last if n != "diaObjectId")
                sql = (
                    f"INSERT INTO {layout.t('DiaObjectLast')} AS l ({_cols(last)}) "
                    f'SELECT {", ".join(plan.select_exprs())}, s.{q(RECORD_COLUMN)} FROM pg_temp.{q(stage)} s '
                    f'ORDER BY s."diaObjectId" ON CONFLICT ("diaObjectId") DO UPDATE SET {updates} '
                    f'WHERE l."validityStartMjdTai" <= EXCLUDED."validityStartMjdTai"'
                )
                t = time.perf_counter()
                rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, WAL) {sql}")
                print(f"upsert DiaObjectLast: {time.perf_counter() - t:.3f}s")
                for r in rows:
                    print("   ", r[0])
            finally:
                await tr.rollback()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--schema", default="apdb_bench")
    ap.add_argument("--centres", type=int, default=14)
    ap.add_argument("--visit", type=int, default=1050)
    os.environ.setdefault("PG_DSN", "postgresql://nightshift@127.0.0.1:15433/nightshift")
    asyncio.run(main(ap.parse_args()))
