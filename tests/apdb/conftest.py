"""Fixtures: a fresh APDB schema per test on the real local PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nightshift.apdb import ApdbSettings, AsyncApdb


@pytest.fixture
def apdb_settings(pg_dsn: str, unique_name: str) -> ApdbSettings:
    return ApdbSettings(dsn=pg_dsn, schema_name=f"apdb_{unique_name}", pool_min_size=0, pool_max_size=6)


@pytest.fixture
async def apdb(apdb_settings: ApdbSettings) -> AsyncIterator[AsyncApdb]:
    db = AsyncApdb(apdb_settings)
    await db.open()
    await db.create()
    try:
        yield db
    finally:
        await db.drop()
        await db.close()
