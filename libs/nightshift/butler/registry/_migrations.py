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


#: from-version -> step that upgrades to from-version + 1 and describes itself.
MIGRATIONS: dict[int, Callable[[sa.Connection, RegistryTables], str]] = {1: _v1_to_v2}
