"""Storing and reading DIA objects, sources and forced sources on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from astropy.table import MaskedColumn, Table
from astropy.time import Time

from nightshift.apdb import (
    ApdbConnectionError,
    ApdbSchemaError,
    ApdbSettings,
    ApdbValidationError,
    AsyncApdb,
    Circle,
    ConvexPolygon,
    SkyField,
    apdb_tables,
    prune,
    random_positions,
    schema_version,
    simulate_visit,
    stats,
)

pytestmark = pytest.mark.integration

RA0, DEC0 = 150.0, 2.0


def assert_same(a: pa.Table, b: pa.Table, key: str | list[str]) -> None:
    keys = [key] if isinstance(key, str) else key
    assert a.num_rows == b.num_rows
    assert a.column_names == b.column_names
    a = a.sort_by([(k, "ascending") for k in keys])
    b = b.sort_by([(k, "ascending") for k in keys])
    for name in a.column_names:
        x, y = a[name], b[name]
        if pa.types.is_floating(x.type):
            np.testing.assert_array_equal(x.to_numpy(), y.to_numpy(), err_msg=name)
        else:
            assert x.to_pylist() == y.to_pylist(), name


def visit(n: int, visit_id: int, mjd: float, *, seed: int = 0, ids: np.ndarray | None = None) -> tuple[pa.Table, ...]:
    ra, dec = random_positions(RA0, DEC0, 0.5, n, np.random.default_rng(0))  # the same sky every visit
    rng = np.random.default_rng(seed)
    ra = ra + rng.normal(scale=0.1 / 3600, size=n)  # measured positions scatter by ~0.1 arcsec
    ids = np.arange(1, n + 1, dtype=np.int64) if ids is None else ids
    objects, sources, forced = simulate_visit(visit_id, mjd, ra, dec, ids, rng=rng)
    # NULL floats travel as NaN: put some in a nullable float column.
    flux = sources["psfFlux"].to_numpy().copy()
    flux[::7] = np.nan
    sources = sources.set_column(sources.column_names.index("psfFlux"), "psfFlux", pa.array(flux))
    return objects, sources, forced


def to_astropy(t: pa.Table) -> Table:
    out = Table(masked=False)
    for name in t.column_names:
        col = t[name]
        if col.null_count:
            fill = "" if pa.types.is_string(col.type) else (False if pa.types.is_boolean(col.type) else 0)
            out[name] = MaskedColumn(
                col.fill_null(fill).to_numpy(zero_copy_only=False), mask=col.is_null().to_numpy(zero_copy_only=False)
            )
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


async def count(apdb: AsyncApdb, table: str, where: str = "TRUE") -> int:
    async with apdb.pool.acquire() as conn:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{apdb.settings.schema_name}"."{table}" WHERE {where}'))


async def test_create_records_schema_version_and_columns(apdb: AsyncApdb) -> None:
    meta = await apdb.metadata()
    assert meta["version:ApdbSchema"] == schema_version()
    assert meta["config:pixelization"] == "healpix-nested" and meta["config:index_depth"] == "16"
    async with apdb.pool.acquire() as conn:
        for table, spec in apdb_tables().items():
            cols = {
                r[0]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
                    apdb.settings.schema_name,
                    table,
                )
            }
            assert set(spec.names) <= cols, table
    with pytest.raises(ApdbSchemaError):
        await apdb.create()


async def test_missing_schema_is_a_schema_error(pg_dsn: str, unique_name: str) -> None:
    async with AsyncApdb(ApdbSettings(dsn=pg_dsn, schema_name=f"nope_{unique_name}", pool_min_size=0)) as db:
        with pytest.raises(ApdbSchemaError, match="nightshift apdb create"):
            await db.get_dia_objects(Circle(RA0, DEC0, 1.0))


@pytest.mark.parametrize("part_rows", [2500, 64])
async def test_store_then_read_back_every_column(
    apdb: AsyncApdb, monkeypatch: pytest.MonkeyPatch, part_rows: int
) -> None:
    monkeypatch.setattr("nightshift.apdb._store._PART_ROWS", part_rows)  # 64: the COPY streams go in 6 parts
    objects, sources, forced = visit(400, 1001, 60000.2)
    result = await apdb.store(Time(60000.2, format="mjd", scale="tai"), objects, sources, forced)
    assert (result.dia_objects, result.dia_sources, result.dia_forced_sources) == (400, 400, 400)

    region = Circle(RA0, DEC0, 0.3)
    got = await apdb.get_dia_objects(region)
    inside = region.contains(objects["ra"].to_numpy(), objects["dec"].to_numpy())
    assert 0 < got.num_rows == inside.sum() < 400  # the exact cut removed the overhang
    expected = objects.filter(pa.array(inside))
    expected = expected.add_column(1, "validityStartMjdTai", pa.array(np.full(expected.num_rows, 60000.2)))
    assert_same(got.drop_columns(["validityEndMjdTai"]), expected, "diaObjectId")

    all_ids = objects["diaObjectId"].to_numpy()
    got_src = await apdb.get_dia_sources(all_ids, 59000.0)
    assert_same(got_src, sources, "diaSourceId")
    assert got_src["psfFlux"].null_count == 0 and np.isnan(got_src["psfFlux"].to_numpy()).sum() == len(range(0, 400, 7))
    got_forced = await apdb.get_dia_forced_sources(all_ids, 59000.0)
    assert_same(got_forced, forced, ["diaObjectId", "visit", "detector"])
    # What SQL users see: NULLs where the input had nulls or NaN floats.
    assert await count(apdb, "DiaSource", '"psfFlux" IS NULL') == len(range(0, 400, 7))
    assert await count(apdb, "DiaSource", '"pixelFlags_bad" IS NULL') == sources["pixelFlags_bad"].null_count
    async with apdb.pool.acquire() as conn:  # the row table holds exactly the input, column by column
        rows = await conn.fetch(f'SELECT * FROM "{apdb.settings.schema_name}"."DiaSource" ORDER BY "diaSourceId"')
    want = sources.sort_by("diaSourceId")
    for name in want.column_names:
        expected = [None if isinstance(v, float) and np.isnan(v) else v for v in want[name].to_pylist()]
        got_col = [r[name] for r in rows]
        if pa.types.is_floating(want[name].type):
            np.testing.assert_allclose(
                np.array(got_col, dtype=float), np.array(expected, dtype=float), rtol=1e-6, err_msg=name
            )
        else:
            assert got_col == expected, name


async def test_astropy_and_numpy_inputs(apdb: AsyncApdb) -> None:
    objects, sources, forced = visit(50, 7, 60001.0)
    await apdb.store(60001.0, to_astropy(objects), to_astropy(sources), forced)
    got = await apdb.get_dia_sources(objects["diaObjectId"].to_numpy(), 0.0)
    assert_same(got, sources, "diaSourceId")
    arr = np.zeros(
        3,
        dtype=[("diaObjectId", "i8"), ("ra", "f8"), ("dec", "f8")]
        + [(f"{b}_psfFluxNdata", "i4") for b in "ugrizy"]
        + [("nDiaSources", "i4")],
    )
    arr["diaObjectId"] = [900, 901, 902]
    arr["ra"], arr["dec"] = RA0, DEC0
    result = await apdb.store(60002.0, arr)
    assert result.dia_objects == 3
    got = await apdb.get_dia_objects(Circle(RA0, DEC0, 0.01))
    assert {900, 901, 902} <= set(got["diaObjectId"].to_pylist())
    assert await count(apdb, "DiaSource") == 50


@pytest.mark.parametrize("part_rows", [2500, 64])
async def test_replay_leaves_one_copy(apdb: AsyncApdb, monkeypatch: pytest.MonkeyPatch, part_rows: int) -> None:
    monkeypatch.setattr("nightshift.apdb._store._PART_ROWS", part_rows)
    objects, sources, forced = visit(300, 11, 60010.0)
    first = await apdb.store(60010.0, objects, sources, forced)
    again = await apdb.store(60010.0, objects, sources, forced)
    assert (first.dia_sources, again.dia_sources, again.dia_objects, again.dia_forced_sources) == (300, 0, 0, 0)
    assert await count(apdb, "DiaSource") == 300
    assert await count(apdb, "DiaForcedSource") == 300
    assert await count(apdb, "DiaObject") == 300
    async with apdb.pool.acquire() as conn:
        assert await conn.fetchval(f'SELECT sum("nRows") FROM "{apdb.settings.schema_name}"."DiaSourceChunk"') == 300
    pre = await apdb.preload(Circle(RA0, DEC0, 1.0), 59000.0)
    assert pre.sources.num_rows == 300 and pre.forced_sources.num_rows == 300 and pre.objects.num_rows == 300


@pytest.mark.parametrize("part_rows", [2500, 64])
async def test_partial_replay_adds_only_new_rows(
    apdb: AsyncApdb, monkeypatch: pytest.MonkeyPatch, part_rows: int
) -> None:
    monkeypatch.setattr("nightshift.apdb._store._PART_ROWS", part_rows)
    objects, sources, forced = visit(200, 12, 60011.0)
    await apdb.store(60011.0, objects.slice(0, 100), sources.slice(0, 100), forced.slice(0, 100))
    result = await apdb.store(60011.0, objects, sources, forced)
    assert (result.dia_objects, result.dia_sources, result.dia_forced_sources) == (100, 100, 100)
    got = await apdb.get_dia_sources(objects["diaObjectId"].to_numpy(), 60000.0)
    assert_same(got, sources, "diaSourceId")


@pytest.mark.parametrize("part_rows", [2500, 64])
async def test_concurrent_writers_of_one_visit_store_one_copy(
    apdb: AsyncApdb, apdb_settings: ApdbSettings, monkeypatch: pytest.MonkeyPatch, part_rows: int
) -> None:
    monkeypatch.setattr("nightshift.apdb._store._PART_ROWS", part_rows)
    objects, sources, forced = visit(2000, 13, 60012.0)
    async with AsyncApdb(apdb_settings) as other:
        a, b = await asyncio.gather(
            apdb.store(60012.0, objects, sources, forced), other.store(60012.0, objects, sources, forced)
        )
    assert a.dia_sources + b.dia_sources == 2000
    assert a.dia_objects + b.dia_objects == 2000
    assert await count(apdb, "DiaSource") == 2000
    assert await count(apdb, "DiaObjectLast") == 2000
    async with apdb.pool.acquire() as conn:
        table = f'"{apdb.settings.schema_name}"."DiaForcedSourceChunk"'
        assert await conn.fetchval(f'SELECT sum("nRows") FROM {table}') == 2000


async def test_new_object_versions_and_history_window(apdb: AsyncApdb) -> None:
    o1, s1, f1 = visit(100, 21, 60000.0)
    o2, s2, f2 = visit(100, 22, 60100.0, seed=1)  # same objects, new measurements
    await apdb.store(60000.0, o1, s1, f1)
    await apdb.store(60100.0, o2, s2, f2)
    assert await count(apdb, "DiaObject") == 200  # two versions each
    assert await count(apdb, "DiaObjectLast") == 100
    got = await apdb.get_dia_objects(Circle(RA0, DEC0, 1.0))
    assert set(got["validityStartMjdTai"].to_pylist()) == {60100.0}
    # Replaying the older visit does not turn the clock back.
    await apdb.store(60000.0, o1, s1, f1)
    got = await apdb.get_dia_objects(Circle(RA0, DEC0, 1.0))
    assert set(got["validityStartMjdTai"].to_pylist()) == {60100.0}
    ids = got["diaObjectId"].to_numpy()
    assert (await apdb.get_dia_sources(ids, 59000.0)).num_rows == 200
    recent = await apdb.get_dia_sources(ids, 60050.0)
    assert set(recent["visit"].to_pylist()) == {22}
    assert (await apdb.get_dia_forced_sources(ids, 60050.0)).num_rows == 100
    # Monthly partitions: the two visits are 100 days apart.
    async with apdb.pool.acquire() as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = $1::regclass",
            f'"{apdb.settings.schema_name}"."DiaSource"',
        )
    assert n == 2


async def test_preload_cuts_histories_to_the_objects_in_the_field(apdb: AsyncApdb) -> None:
    objects, sources, forced = visit(500, 31, 60020.0)
    # Move one object's source 2 arcsec away from it: still its history.
    ra = sources["ra"].to_numpy().copy()
    ra[0] += 2.0 / 3600.0
    sources = sources.set_column(sources.column_names.index("ra"), "ra", pa.array(ra))
    await apdb.store(60020.0, objects, sources, forced)
    region = ConvexPolygon.from_radec(
        (RA0 - 0.3, RA0 + 0.3, RA0 + 0.3, RA0 - 0.3), (DEC0 - 0.3, DEC0 - 0.3, DEC0 + 0.3, DEC0 + 0.3)
    )
    pre = await apdb.preload(region, 59990.0)
    inside = region.contains(objects["ra"].to_numpy(), objects["dec"].to_numpy())
    assert pre.objects.num_rows == inside.sum() > 0
    ids = set(pre.objects["diaObjectId"].to_pylist())
    assert set(pre.sources["diaObjectId"].to_pylist()) == ids
    assert set(pre.forced_sources["diaObjectId"].to_pylist()) == ids
    assert pre.sources.num_rows == len(ids)
    by_ids = await apdb.get_dia_sources(sorted(ids), 59990.0)  # no region: positions looked up
    assert_same(by_ids, pre.sources, "diaSourceId")
    assert set(pre.timings) >= {"objects", "sources", "forced_sources", "total"}


@pytest.mark.parametrize(
    ("table", "column", "row", "value", "match"),
    [
        ("sources", "dec", 17, float("nan"), "'dec'.*row\\(s\\) \\[17\\]"),
        ("objects", "ra", 3, 361.0, "'ra'.*row\\(s\\) \\[3\\]"),
        ("forced", "dec", 5, -91.0, "'dec'.*row\\(s\\) \\[5\\]"),
        ("sources", "midpointMjdTai", 9, float("nan"), "'midpointMjdTai'.*row\\(s\\) \\[9\\]"),
        ("sources", "band", 4, "é", "'band'.*not ASCII in row\\(s\\) \\[4\\]"),
        ("forced", "band", 6, "gr", "'band'.*longer than 1.*row\\(s\\) \\[6\\]"),
        ("sources", "reliabilityVersion", 2, "v1.2.3.4", "'reliabilityVersion'.*row\\(s\\) \\[2\\]"),
    ],
)
async def test_bad_rows_are_rejected_before_any_write(
    apdb: AsyncApdb, table: str, column: str, row: int, value: float, match: str
) -> None:
    tables = dict(zip(("objects", "sources", "forced"), visit(50, 41, 60030.0), strict=True))
    t = tables[table]
    data = t[column].to_numpy(zero_copy_only=False).copy()
    data[row] = value
    tables[table] = t.set_column(t.column_names.index(column), column, pa.array(data))
    with pytest.raises(ApdbValidationError, match=match) as info:
        await apdb.store(60030.0, tables["objects"], tables["sources"], tables["forced"])
    assert info.value.column == column and info.value.rows == (row,)
    for name in ("DiaObject", "DiaObjectLast", "DiaSource", "DiaForcedSource", "DiaSourceChunk"):
        assert await count(apdb, name) == 0


async def test_missing_required_and_unknown_columns(apdb: AsyncApdb) -> None:
    objects, sources, forced = visit(10, 42, 60031.0)
    with pytest.raises(ApdbValidationError, match="required column 'visit' is missing") as info:
        await apdb.store(60031.0, objects, sources.drop_columns(["visit"]), forced)
    assert info.value.table == "DiaSource" and info.value.column == "visit"
    with pytest.raises(ApdbValidationError, match="unknown column"):
        await apdb.store(60031.0, objects.append_column("colour", pa.array(np.zeros(10))), sources, forced)
    dup = pa.concat_tables([sources, sources.slice(2, 1)])
    with pytest.raises(ApdbValidationError, match="repeats a primary key") as info:
        await apdb.store(60031.0, objects, dup, forced)
    assert info.value.rows == (10,)
    nulls = pc.if_else(pa.array([i == 4 for i in range(10)]), pa.scalar(None, pa.int64()), sources["visit"])
    with pytest.raises(ApdbValidationError, match="'visit' is NULL.*\\[4\\]"):
        with_nulls = sources.set_column(sources.column_names.index("visit"), "visit", nulls)
        await apdb.store(60031.0, objects, with_nulls, forced)
    assert await count(apdb, "DiaSource") == 0


async def test_lost_connection_rolls_back_the_visit_and_a_retry_succeeds(apdb: AsyncApdb, pg_dsn: str) -> None:
    schema = apdb.settings.schema_name
    o1, s1, f1 = visit(300, 51, 60040.0)
    await apdb.store(60040.0, o1, s1, f1)
    o2, s2, f2 = visit(300, 52, 60041.0, seed=2)
    blocker = await asyncpg.connect(pg_dsn)
    monitor = await asyncpg.connect(pg_dsn)  # outside any transaction: fresh pg_stat_activity snapshots
    try:
        # Hold a row lock so the store stops after writing DiaSource/DiaForcedSource/DiaObject rows.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(f'SELECT 1 FROM "{schema}"."DiaObjectLast" WHERE "diaObjectId" = 1 FOR UPDATE')
        task = asyncio.create_task(apdb.store(60041.0, o2, s2, f2))
        pid = await wait_for_lock_wait(monitor, schema, task)
        # The visit's sources are written but not committed; now the connection dies.
        assert await monitor.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(ApdbConnectionError) as info:
            await task
        assert info.value.retriable
        await tx.rollback()
    finally:
        await blocker.close()
        await monitor.close()
    assert await count(apdb, "DiaSource", "visit = 52") == 0
    assert await count(apdb, "DiaForcedSource", "visit = 52") == 0
    assert await count(apdb, "DiaObject", '"validityStartMjdTai" = 60041.0') == 0
    retry = await apdb.store(60041.0, o2, s2, f2)
    assert (retry.dia_objects, retry.dia_sources, retry.dia_forced_sources) == (300, 300, 300)
    assert await count(apdb, "DiaSource") == 600


async def test_stats_and_prune(apdb: AsyncApdb) -> None:
    for i, mjd in enumerate((60000.0, 60040.0, 60100.0)):
        o, s, f = visit(100, 60 + i, mjd)
        await apdb.store(mjd, o, s, f)
    st = await stats(apdb, exact=True)
    assert st["DiaSource"]["rows"] == 300 and st["DiaSource"]["partitions"] == 3
    assert st["DiaObjectLast"]["rows"] == 100 and st["DiaSourceChunk"]["bytes"] > 0
    result = await prune(apdb, 60060.0)
    # Windows are 30 days: [59970, 60000) is empty; [60000, 60030) and [60030, 60060) end by 60060.
    assert "DiaSource_p2000" in result["dropped"] and "DiaSource_p2001" in result["dropped"]
    assert result["closed_versions"] == 200
    assert await count(apdb, "DiaSource") == 100
    ids = np.arange(1, 101)
    assert (await apdb.get_dia_sources(ids, 0.0)).num_rows == 100
    o, s, f = visit(100, 70, 60001.0)  # a late visit for a pruned window recreates its partition
    assert (await apdb.store(60001.0, o, s, f)).dia_sources == 100


async def test_another_client_reads_the_stored_visit_for_the_next_field(
    apdb: AsyncApdb, apdb_settings: ApdbSettings
) -> None:
    """REQ-0028 shape: one client stores visit N, another reads the overlapping field N+1 and finds N's rows.

    REQ-0030 shape: the reader's preload runs as a background task while its owner does other work.
    """
    objects, sources, forced = visit(800, 81, 60050.0)
    stored = asyncio.Event()

    async def writer() -> None:
        await apdb.store(60050.0, objects, sources, forced)
        stored.set()

    async with AsyncApdb(apdb_settings) as reader:
        write_task = asyncio.create_task(writer())
        await stored.wait()
        next_field = Circle(RA0 + 0.3, DEC0, 0.5)  # overlaps visit N's field
        preload = asyncio.create_task(reader.preload(next_field, 60050.0 - 365))
        other_work = await asyncio.gather(*(asyncio.sleep(0.01, result=k) for k in range(3)))
        pre = await preload
        await write_task
    assert other_work == [0, 1, 2]
    inside = next_field.contains(objects["ra"].to_numpy(), objects["dec"].to_numpy())
    assert pre.objects.num_rows == inside.sum() > 0
    assert pre.sources.num_rows == inside.sum()
    assert set(pre.sources["visit"].to_pylist()) == {81}


PEER = Path(__file__).with_name("apdb_peer.py")


async def test_writer_and_reader_processes_round_trip_for_the_next_field(
    apdb: AsyncApdb, apdb_settings: ApdbSettings, pg_dsn: str
) -> None:
    """REQ-0028 behaviour: a writer process stores visit N; a reader process, already connected and
    waiting, then preloads the field of visit N+1 and gets exactly N's rows that fall in it.

    The time limit (25 s) is met by loadtests/apdb_bench.py, not asserted here.
    """
    env = {**os.environ, "NIGHTSHIFT_APDB_DSN": pg_dsn, "NIGHTSHIFT_APDB_SCHEMA_NAME": apdb_settings.schema_name}
    deadlock_guard = 120.0

    async def start(role: str, i: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(PEER), role, str(i), env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def last_json(proc: asyncio.subprocess.Process, send: bytes = b"") -> dict[str, Any]:
        out, err = await asyncio.wait_for(proc.communicate(send), deadlock_guard)
        assert proc.returncode == 0, err.decode()
        result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
        return result

    reader = await start("preload", 1)
    try:
        assert reader.stdout is not None and reader.stderr is not None
        ready = await asyncio.wait_for(reader.stdout.readline(), deadlock_guard)
        assert json.loads(ready or b"null") == {"ready": True}, (await reader.stderr.read()).decode()
        written = await last_json(await start("write", 0))
        got = await last_json(reader, b"go\n")  # told to go only once the writer's store has returned
    finally:
        if reader.returncode is None:
            reader.kill()
            await reader.wait()

    sky = SkyField()
    v = sky.visit(0)
    assert written["stored"] == {"visit": v.visit, "dia_objects": v.objects.num_rows,
                                 "dia_sources": v.sources.num_rows}
    field = sky.region(1)
    inside = field.contains(v.objects["ra"].to_numpy(), v.objects["dec"].to_numpy())
    expected_objects = set(np.asarray(v.objects["diaObjectId"])[inside].tolist())
    expected_sources = {s for s, o in zip(v.sources["diaSourceId"].to_pylist(), v.sources["diaObjectId"].to_pylist(),
                                          strict=True) if o in expected_objects}
    assert 0 < len(expected_objects) < v.objects.num_rows  # the fields overlap, and only partly
    assert set(got["object_ids"]) == expected_objects
    assert sorted(got["source_ids"]) == sorted(expected_sources)
    assert got["source_visits"] == [v.visit]
    assert set(got["forced_object_ids"]) <= expected_objects
async def wait_for_lock_wait(monitor: asyncpg.Connection, schema: str, task: asyncio.Task[object]) -> int:
    """The backend pid of the store ``task`` once it waits on a lock of DiaObjectLast (its last step)."""
    deadline = time.monotonic() + 120  # a deadlock guard only: the store stays blocked on the lock
    while not task.done() and time.monotonic() < deadline:
        pid = await monitor.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'nightshift-apdb' "
            "AND wait_event_type = 'Lock' AND query LIKE $1",
            f'%"{schema}"."DiaObjectLast"%',
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.05)  # poll interval, not synchronization: the condition is re-checked
    ended = f" (it ended: {task.exception() if not task.cancelled() else 'cancelled'!r})" if task.done() else ""
    raise AssertionError("the store never reached the DiaObjectLast upsert" + ended)


async def test_cancelled_store_rolls_back_and_the_pool_stays_usable(apdb: AsyncApdb, pg_dsn: str) -> None:
    schema = apdb.settings.schema_name
    o1, s1, f1 = visit(100, 91, 60060.0)
    await apdb.store(60060.0, o1, s1, f1)
    o2, s2, f2 = visit(100, 92, 60061.0, seed=3)
    blocker = await asyncpg.connect(pg_dsn)
    monitor = await asyncpg.connect(pg_dsn)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(f'SELECT 1 FROM "{schema}"."DiaObjectLast" WHERE "diaObjectId" = 1 FOR UPDATE')
        task = asyncio.create_task(apdb.store(60061.0, o2, s2, f2))
        # cancel it once it has written the visit's sources and waits on the lock (not before it wrote anything)
        await wait_for_lock_wait(monitor, schema, task)
        assert await monitor.fetchval(  # the sources are written, not committed: invisible to others
            f'SELECT count(*) FROM "{schema}"."DiaSource" WHERE visit = 92') == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await tx.rollback()
    finally:
        await blocker.close()
        await monitor.close()
    assert await count(apdb, "DiaSource", "visit = 92") == 0
    assert (await apdb.store(60061.0, o2, s2, f2)).dia_sources == 100
    assert await count(apdb, "DiaSource") == 200


async def test_upgrade_from_layout_1_keeps_data_and_reads(apdb: AsyncApdb) -> None:
    """A layout-1 schema (full-width DiaObjectLast, secondary indexes) is refused, then upgraded in place."""
    objects, sources, forced = visit(50, 7, 60020.0)
    await apdb.store(60020.0, objects, sources, forced)
    schema = apdb.settings.schema_name
    async with apdb.pool.acquire() as conn:  # make it look like layout 1
        await conn.execute(f'ALTER TABLE "{schema}"."DiaObjectLast" ADD COLUMN "u_psfFluxMean" real')
        await conn.execute(f'CREATE INDEX "DiaSource_diaObjectId_idx" ON "{schema}"."DiaSource" ("diaObjectId")')
        await conn.execute(f"UPDATE \"{schema}\".metadata SET value = '1' WHERE name = 'version:nightshift.apdb'")
    fresh = AsyncApdb(apdb.settings)
    async with fresh:
        with pytest.raises(ApdbSchemaError, match="upgrade"):
            await fresh.layout()
        assert await fresh.upgrade() == "2"
        assert await fresh.upgrade() == "2"  # idempotent
        got = await fresh.get_dia_objects(Circle(RA0, DEC0, 1.0))
        assert got.num_rows == 50
        r = await fresh.store(60021.0, *visit(50, 8, 60021.0))
        assert r.dia_sources == 50 and "upsert:DiaObjectLast" in r.timings
    async with apdb.pool.acquire() as conn:
        assert await conn.fetchval(f"SELECT to_regclass('\"{schema}\".\"DiaSource_diaObjectId_idx\"')") is None
        cols = {r[0] for r in await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
            f'"{schema}"."DiaObjectLast"',
        )}
    assert "u_psfFluxMean" not in cols and {"diaObjectId", "ra", "dec", "pixelId", "apdbRecord"} <= cols


def _encoder_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("apdb-encode")}


async def test_close_stops_the_encoder_thread_and_open_starts_a_new_one(apdb_settings: ApdbSettings) -> None:
    before = _encoder_threads()
    db = AsyncApdb(apdb_settings)
    await db.open()
    try:
        await db.create()
        objects, sources, forced = visit(20, 1, 60001.0)
        await db.store(60001.0, objects, sources, forced)
        mine = _encoder_threads() - before
        assert mine, "a store encodes its COPY streams on the client's encoder thread"
        await db.close()
        for thread in mine:
            thread.join(60)  # a deadlock guard; the thread ends once its executor is shut down
        assert not any(t.is_alive() for t in mine)
        await db.open()  # closed clients can be opened again, with a new encoder
        result = await db.store(60002.0, *visit(20, 2, 60002.0, seed=1, ids=np.arange(101, 121, dtype=np.int64)))
        assert result.dia_sources == 20
    finally:
        await db.open()
        await db.drop()
        await db.close()
