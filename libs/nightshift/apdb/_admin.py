"""Administrative operations behind ``nightshift apdb info | stats | prune``."""

from __future__ import annotations

from typing import Any

from astropy.time import Time

from ._apdb import AsyncApdb, to_mjd_tai
from ._ddl import PARTITIONED
from ._errors_map import wrapped

__all__ = ["info", "prune", "stats"]

_TABLES = ("DiaObject", "DiaObjectLast", "DiaSource", "DiaForcedSource", "DiaSourceChunk", "DiaForcedSourceChunk")


async def info(apdb: AsyncApdb) -> dict[str, Any]:
    """Schema name, metadata (apdb.yaml version, layout) and settings, without secrets."""
    meta = await apdb.metadata()
    settings = apdb.settings.model_dump(exclude={"dsn", "password"})
    return {"schema": apdb.settings.schema_name, "metadata": meta, "settings": settings}


async def stats(apdb: AsyncApdb, *, exact: bool = False) -> dict[str, Any]:
    """Per table: rows (planner estimate unless ``exact``), partitions and bytes on disk."""
    layout = await apdb.layout()
    out: dict[str, Any] = {}
    async with wrapped("reading APDB statistics"), apdb.pool.acquire() as conn:
        for table in _TABLES:
            parts = await conn.fetch(
                "SELECT c.oid::regclass::text AS name, c.reltuples::bigint AS rows, "
                "pg_total_relation_size(c.oid) AS bytes FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = $1::regclass",
                layout.t(table),
            )
            if parts:
                rows = sum(max(int(p["rows"]), 0) for p in parts)
                size = sum(int(p["bytes"]) for p in parts)
            else:
                row = await conn.fetchrow(
                    "SELECT GREATEST(reltuples, 0)::bigint AS rows, pg_total_relation_size(oid) AS bytes "
                    "FROM pg_class WHERE oid = $1::regclass",
                    layout.t(table),
                )
                assert row is not None  # the ::regclass cast has already failed if the table is missing
                rows, size = int(row["rows"]), int(row["bytes"])
            if exact:
                rows = int(await conn.fetchval(f"SELECT count(*) FROM {layout.t(table)}"))
            out[table] = {"rows": rows, "partitions": len(parts), "bytes": size}
    return out


async def prune(apdb: AsyncApdb, before: Time | float) -> dict[str, Any]:
    """Retention: drop whole partitions that end at or before ``before``; close DiaObject validity.

    Parameters
    ----------
    before : astropy.time.Time or float
        Cutoff (float: MJD TAI). Only partitions entirely older than it go.

    Returns
    -------
    dict
        ``dropped``: partition names; ``closed_versions``: DiaObject versions
        whose ``validityEndMjdTai`` was filled; ``expired_objects``: rows
        removed from DiaObjectLast.
    """
    cutoff = to_mjd_tai(before)
    layout = await apdb.layout()
    dropped: list[str] = []
    async with wrapped("pruning the APDB"), apdb.pool.acquire() as conn, conn.transaction():
        status = await conn.execute(
            f'WITH v AS (SELECT "diaObjectId" AS id, "validityStartMjdTai" AS s, '
            f'lead("validityStartMjdTai") OVER (PARTITION BY "diaObjectId" ORDER BY "validityStartMjdTai") AS n '
            f"FROM {layout.t('DiaObject')}) "
            f'UPDATE {layout.t("DiaObject")} h SET "validityEndMjdTai" = v.n FROM v '
            f'WHERE h."diaObjectId" = v.id AND h."validityStartMjdTai" = v.s AND v.n IS NOT NULL '
            f'AND h."validityEndMjdTai" IS NULL'
        )
        closed = int(status.rsplit(" ", 1)[-1])
        expired = await conn.execute(
            f'DELETE FROM {layout.t("DiaObjectLast")} WHERE "validityStartMjdTai" < $1', cutoff
        )
        for table in PARTITIONED:
            rows = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = $1::regclass",
                layout.t(table),
            )
            for r in rows:
                name: str = r["relname"]
                prefix = f"{table}_p"
                if not name.startswith(prefix) or not name[len(prefix) :].lstrip("-").isdigit():
                    continue
                window = int(name[len(prefix) :])
                if (window + 1) * layout.partition_days <= cutoff:
                    await conn.execute(f"DROP TABLE {layout.t(name)}")
                    dropped.append(name)
    apdb._partitions.difference_update(dropped)  # noqa: SLF001 - same package
    return {"dropped": sorted(dropped), "closed_versions": closed, "expired_objects": int(expired.rsplit(" ", 1)[-1])}
