"""The blocking facade and `nightshift apdb` against the real PostgreSQL."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from nightshift.apdb import Apdb, ApdbSettings, Circle, random_positions, simulate_visit
from nightshift.cli import cli

pytestmark = pytest.mark.integration


def test_sync_facade_round_trip(pg_dsn: str, unique_name: str) -> None:
    settings = ApdbSettings(dsn=pg_dsn, schema_name=f"apdb_{unique_name}", pool_min_size=0)
    rng = np.random.default_rng(5)
    ra, dec = random_positions(20.0, -10.0, 0.3, 200, rng)
    objects, sources, forced = simulate_visit(5, 60005.0, ra, dec, np.arange(1, 201), rng=rng)
    with Apdb(settings) as apdb:
        apdb.create()
        try:
            assert apdb.store(60005.0, objects, sources, forced).dia_sources == 200
            got = apdb.get_dia_objects(Circle(20.0, -10.0, 0.5))
            assert got.num_rows == 200
            assert apdb.get_dia_sources(got["diaObjectId"].to_numpy(), 60000.0).num_rows == 200
            assert apdb.get_dia_forced_sources(got["diaObjectId"].to_numpy(), 60006.0).num_rows == 0
            pre = apdb.preload(Circle(20.0, -10.0, 0.5), 60000.0)
            assert (pre.objects.num_rows, pre.sources.num_rows, pre.forced_sources.num_rows) == (200, 200, 200)
            assert apdb.stats(exact=True)["DiaSource"]["rows"] == 200
            assert apdb.info()["metadata"]["config:chunk_depth"] == "7"
        finally:
            apdb.drop()
    apdb.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        apdb.metadata()


def test_cli_create_info_stats_prune(pg_dsn: str, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = f"apdb_{unique_name}"
    secret_dsn = pg_dsn.replace("nightshift@", "nightshift:s3cret-pw@")  # trust auth ignores the password
    monkeypatch.setenv("NIGHTSHIFT_APDB_DSN", secret_dsn)
    runner = CliRunner()
    try:
        result = runner.invoke(cli, ["apdb", "create", "--schema", schema, "--partition-days", "7"])
        assert result.exit_code == 0, result.output
        result = runner.invoke(cli, ["apdb", "create", "--schema", schema])
        assert result.exit_code == 1 and "already holds an APDB" in result.output
        result = runner.invoke(cli, ["apdb", "info", "--schema", schema])
        assert result.exit_code == 0, result.output
        info = json.loads(result.output)
        assert info["metadata"]["config:partition_days"] == "7"
        assert "s3cret-pw" not in result.output
        result = runner.invoke(cli, ["apdb", "stats", "--schema", schema, "--exact"])
        assert result.exit_code == 0 and json.loads(result.output)["DiaSource"]["rows"] == 0
        result = runner.invoke(cli, ["apdb", "prune", "--schema", schema, "--before-mjd", "60000"])
        assert result.exit_code == 0 and json.loads(result.output)["dropped"] == []
        result = runner.invoke(cli, ["apdb", "upgrade", "--schema", schema])  # current layout: a no-op
        assert result.exit_code == 0 and "at layout 2" in result.output, result.output
        result = runner.invoke(cli, ["apdb", "upgrade", "--schema", schema + "_missing"])
        assert result.exit_code == 1 and "nightshift apdb create" in result.output
    finally:
        with Apdb(ApdbSettings(dsn=pg_dsn, schema_name=schema, pool_min_size=0)) as apdb:
            apdb.drop()


def test_cli_without_dsn_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIGHTSHIFT_APDB_DSN", raising=False)
    monkeypatch.delenv("PG_DSN", raising=False)
    result = CliRunner().invoke(cli, ["apdb", "info"])
    assert result.exit_code == 2 and "NIGHTSHIFT_APDB_DSN" in result.output
