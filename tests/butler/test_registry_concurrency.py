"""Several writer processes on one repository (SQLite WAL + busy timeout; PostgreSQL transactions)."""

from __future__ import annotations

import multiprocessing

from registry_support import CALEXP, RegistryFactory, concurrent_writer, make_registry, populate  # noqa: F401


def test_concurrent_writer_processes(make_registry: RegistryFactory) -> None:
    reg = make_registry.create()
    populate(reg)
    reg.register_dataset_type(CALEXP)
    schema = next(s for r, s in make_registry._created if r is reg)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.starmap(concurrent_writer, [(reg.url, schema, w, 6) for w in range(3)])
    assert results == [24, 24, 24]
    for w in range(3):
        assert len(reg.query_datasets("calexp", f"w{w}")) == 24
    shared = reg.query_datasets("calexp", "shared")
    assert len(shared) == 3 * 6 and len({r.id for r in shared}) == 18
