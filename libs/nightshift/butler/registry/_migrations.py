"""Explicit, versioned schema migrations (never run silently, REQ-0003)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from ._schema import RegistryTables

__all__ = ["MIGRATIONS"]


def _v1_to_v2(conn: sa.Connection, tables: RegistryTables) -> str:
    """Schema 2 added data-quality flags on datasets (REQ-0089)."""
    tables.dataset_quality.create(conn, checkfirst=True)
    return "1 -> 2: created table dataset_quality (data-quality flags)"


def _v2_to_v3(conn: sa.Connection, tables: RegistryTables) -> str:
    """Schema 3 records which execution wrote a quantum's outputs (``quantum.execution_id``)."""
    quantum = tables.quantum
    columns = {c["name"] for c in sa.inspect(conn).get_columns(quantum.name, schema=quantum.schema)}
    if "execution_id" not in columns:
        column = quantum.c.execution_id
        ddl_type = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {conn.dialect.identifier_preparer.format_table(quantum)} "
                             f"ADD COLUMN execution_id {ddl_type}"))
    return "2 -> 3: added column quantum.execution_id (which execution wrote a quantum's outputs)"


#: from-version -> step that upgrades to from-version + 1 and describes itself.
MIGRATIONS: dict[int, Callable[[sa.Connection, RegistryTables], str]] = {1: _v1_to_v2, 2: _v2_to_v3}
