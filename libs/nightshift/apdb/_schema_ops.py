"""The APDB schema's life: create, drop, read the metadata, upgrade the layout, add time partitions.

Plain functions over an asyncpg pool; :class:`~nightshift.apdb.AsyncApdb` calls them.
"""

from __future__ import annotations

import asyncpg

from ._ddl import LAYOUT_VERSION, Layout, q
from ._errors_map import wrapped
from ._exceptions import ApdbSchemaError
from ._schema import schema_version

__all__ = ["create_schema", "drop_schema", "ensure_partitions", "read_metadata", "recorded_layout", "upgrade_schema"]


async def create_schema(pool: asyncpg.Pool, layout: Layout, *, drop: bool = False) -> None:
    """Create the APDB tables of ``layout`` (see :meth:`AsyncApdb.create`)."""
    async with wrapped("creating the APDB schema"), pool.acquire() as conn, conn.transaction():
        if drop:
            await conn.execute(f"DROP SCHEMA IF EXISTS {q(layout.schema)} CASCADE")
        exists = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f"{q(layout.schema)}.{q('metadata')}"
        )
        if exists:
            raise ApdbSchemaError(f"schema {layout.schema!r} already holds an APDB (use drop=True to replace it)")
        for stmt in layout.create_statements():
            await conn.execute(stmt)
        await conn.executemany(
            f"INSERT INTO {layout.t('metadata')} (name, value) VALUES ($1, $2)",
            sorted(layout.metadata_rows().items()),
        )


async def drop_schema(pool: asyncpg.Pool, schema: str) -> None:
    """Drop the APDB schema and everything in it."""
    async with wrapped("dropping the APDB schema"), pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {q(schema)} CASCADE")


async def read_metadata(pool: asyncpg.Pool, schema: str) -> dict[str, str]:
    """The metadata table of the APDB in ``schema`` (schema version, layout parameters)."""
    async with wrapped("reading APDB metadata"), pool.acquire() as conn:
        try:
            rows = await conn.fetch(f"SELECT name, value FROM {q(schema)}.{q('metadata')}")
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError) as exc:
            raise ApdbSchemaError(f"no APDB in schema {schema!r}: run `nightshift apdb create`") from exc
    return {r["name"]: r["value"] for r in rows}


def _layout_of(schema: str, meta: dict[str, str]) -> Layout:
    return Layout(
        schema,
        int(meta["config:partition_days"]),
        int(meta["config:index_depth"]),
        int(meta["config:chunk_depth"]),
    )


async def upgrade_schema(pool: asyncpg.Pool, schema: str) -> str:
    """Bring the APDB in ``schema`` to the current layout (see :meth:`AsyncApdb.upgrade`); the version now."""
    meta = await read_metadata(pool, schema)
    version = meta.get("version:nightshift.apdb", "")
    layout = _layout_of(schema, meta)
    try:
        stmts = layout.upgrade_statements(version)
    except ValueError as exc:
        raise ApdbSchemaError(str(exc)) from None
    async with wrapped("upgrading the APDB layout"), pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"apdb-partitions:{layout.schema}")
        for stmt in stmts:
            await conn.execute(stmt)
    return LAYOUT_VERSION


def recorded_layout(schema: str, meta: dict[str, str]) -> Layout:
    """The layout ``meta`` records, if this nightshift can use it.

    Raises
    ------
    ApdbSchemaError
        The layout is older (run :meth:`AsyncApdb.upgrade`) or ``apdb.yaml`` differs from the installed one.
    """
    if meta.get("version:nightshift.apdb") != LAYOUT_VERSION:
        raise ApdbSchemaError(
            f"APDB layout version {meta.get('version:nightshift.apdb')!r} is not {LAYOUT_VERSION!r}"
            " (an older layout can be brought up to date with AsyncApdb.upgrade())"
        )
    if meta.get("version:ApdbSchema") != schema_version():
        raise ApdbSchemaError(
            f"APDB was created from apdb.yaml {meta.get('version:ApdbSchema')}, "
            f"installed lsst-sdm-schemas ships {schema_version()}; migrate or recreate it"
        )
    return _layout_of(schema, meta)


async def ensure_partitions(
    pool: asyncpg.Pool, layout: Layout, windows: dict[str, set[int]], known: set[str]
) -> None:
    """Create the time partitions of ``windows`` (table → window numbers) not in ``known``; add them to it."""
    todo = {
        table: {w for w in ws if layout.partition_name(table, w) not in known}
        for table, ws in windows.items()
    }
    todo = {t: ws for t, ws in todo.items() if ws}
    if not todo:
        return
    async with wrapped("creating APDB partitions"), pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"apdb-partitions:{layout.schema}")
        for table, ws in todo.items():
            existing = {
                r["relname"]
                for r in await conn.fetch(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = $1::regclass",
                    layout.t(table),
                )
            }
            missing = [w for w in ws if layout.partition_name(table, w) not in existing]
            for stmt in layout.partition_statements(table, missing):
                await conn.execute(stmt)
    for table, ws in todo.items():
        known.update(layout.partition_name(table, w) for w in ws)
