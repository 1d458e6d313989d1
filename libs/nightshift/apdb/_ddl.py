"""SQL for the APDB layout: tables, partitions, metadata (see ``docs/apdb.md``)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ._schema import PIXEL_COLUMN, TableSpec, apdb_tables, last_columns, schema_version

__all__ = ["LAYOUT_VERSION", "Layout", "q"]

#: Version of nightshift's physical layout, recorded next to the apdb.yaml version.
#: 2: DiaObjectLast narrowed to apdb.yaml's DiaObjectLast columns (+ pixelId, apdbRecord);
#: no secondary indexes on DiaSource/DiaForcedSource (see ``Layout.upgrade_statements``).
LAYOUT_VERSION = "2"

#: Partitioned tables and their partition column.
PARTITIONED = {
    "DiaObject": "validityStartMjdTai",
    "DiaSource": "midpointMjdTai",
    "DiaForcedSource": "midpointMjdTai",
    "DiaSourceChunk": "mjdMax",
    "DiaForcedSourceChunk": "mjdMax",
}
#: DiaObjectLast keeps each row also as one fixed-width record (see _chunks.RecordCodec).
RECORD_COLUMN = "apdbRecord"
CHUNK_TABLES = {"DiaSource": "DiaSourceChunk", "DiaForcedSource": "DiaForcedSourceChunk"}


def q(name: str) -> str:
    """Quote an identifier (names come from apdb.yaml or code, never from users)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Layout:
    """Physical layout parameters; fixed at creation and stored in the metadata table."""

    schema: str
    partition_days: int
    index_depth: int
    chunk_depth: int

    def t(self, table: str) -> str:
        return f"{q(self.schema)}.{q(table)}"

    def window(self, mjd: float) -> int:
        return math.floor(mjd / self.partition_days)

    def partition_name(self, table: str, window: int) -> str:
        return f"{table}_p{window}"

    def create_statements(self) -> list[str]:
        specs = apdb_tables()
        stmts = [
            f"CREATE SCHEMA IF NOT EXISTS {q(self.schema)}",
            f"CREATE TABLE {self.t('metadata')} (name text PRIMARY KEY, value text NOT NULL)",
        ]
        obj = specs["DiaObject"]
        stmts.append(
            f"CREATE TABLE {self.t('DiaObject')} ({_columns(obj)}, "
            f'PRIMARY KEY ("diaObjectId", "validityStartMjdTai")) PARTITION BY RANGE ("validityStartMjdTai")'
        )
        stmts.append(
            f"CREATE TABLE {self.t('DiaObjectLast')} ({_columns(obj, last_columns())}, "
            f"{q(RECORD_COLUMN)} bytea NOT NULL, "
            f'PRIMARY KEY ("diaObjectId")) WITH (fillfactor = 50)'
        )
        stmts.append(f'CREATE INDEX ON {self.t("DiaObjectLast")} ("{PIXEL_COLUMN}")')
        src = specs["DiaSource"]
        stmts.append(
            f"CREATE TABLE {self.t('DiaSource')} ({_columns(src)}, "
            f'PRIMARY KEY ("diaSourceId", "midpointMjdTai")) PARTITION BY RANGE ("midpointMjdTai")'
        )
        fsrc = specs["DiaForcedSource"]
        stmts.append(
            f"CREATE TABLE {self.t('DiaForcedSource')} ({_columns(fsrc)}, "
            f'PRIMARY KEY ("diaObjectId", "visit", "detector", "midpointMjdTai")) '
            f'PARTITION BY RANGE ("midpointMjdTai")'
        )
        for chunk in CHUNK_TABLES.values():
            stmts.append(
                f"CREATE TABLE {self.t(chunk)} ("
                '"chunkPixel" bigint NOT NULL, "mjdMin" double precision NOT NULL, '
                '"mjdMax" double precision NOT NULL, "chunkId" bigint GENERATED ALWAYS AS IDENTITY, '
                '"nRows" integer NOT NULL, "data" bytea NOT NULL, '
                'PRIMARY KEY ("chunkPixel", "mjdMax", "chunkId")) PARTITION BY RANGE ("mjdMax")'
            )
        return stmts

    def upgrade_statements(self, version: str) -> list[str]:
        """Statements bringing a schema of layout ``version`` to :data:`LAYOUT_VERSION` (data kept)."""
        if version == LAYOUT_VERSION:
            return []
        if version != "1":
            raise ValueError(f"no upgrade from APDB layout {version!r}")
        keep = {*last_columns(), PIXEL_COLUMN, RECORD_COLUMN}
        drop = [n for n in apdb_tables()["DiaObject"].names if n not in keep]
        s = q(self.schema)
        return [
            f"ALTER TABLE {self.t('DiaObjectLast')} " + ", ".join(f"DROP COLUMN IF EXISTS {q(n)}" for n in drop),
            f'DROP INDEX IF EXISTS {s}."DiaSource_diaObjectId_idx"',
            f'DROP INDEX IF EXISTS {s}."DiaSource_visit_detector_idx"',
            f'DROP INDEX IF EXISTS {s}."DiaForcedSource_visit_detector_idx"',
            f"UPDATE {self.t('metadata')} SET value = '{LAYOUT_VERSION}' WHERE name = 'version:nightshift.apdb'",
        ]

    def metadata_rows(self) -> dict[str, str]:
        return {
            "version:ApdbSchema": schema_version(),
            "version:nightshift.apdb": LAYOUT_VERSION,
            "config:partition_days": str(self.partition_days),
            "config:pixelization": "healpix-nested",
            "config:index_depth": str(self.index_depth),
            "config:chunk_depth": str(self.chunk_depth),
        }

    def partition_statements(self, table: str, windows: Iterable[int]) -> list[str]:
        stmts = []
        for w in sorted(set(windows)):
            lo, hi = w * self.partition_days, (w + 1) * self.partition_days
            name = self.partition_name(table, w)
            stmts.append(
                f"CREATE TABLE IF NOT EXISTS {self.t(name)} PARTITION OF {self.t(table)} "
                f"FOR VALUES FROM ({lo}) TO ({hi})"
            )
            if table in CHUNK_TABLES.values():
                stmts.append(f'ALTER TABLE {self.t(name)} ALTER COLUMN "data" SET STORAGE EXTERNAL')
        return stmts


def _columns(spec: TableSpec, only: tuple[str, ...] | None = None) -> str:
    cols = [c for c in spec.columns if only is None or c.name in only]
    parts = [f"{q(c.name)} {c.pg_type}{'' if c.nullable else ' NOT NULL'}" for c in cols]
    parts.append(f"{q(PIXEL_COLUMN)} bigint NOT NULL")
    return ", ".join(parts)
