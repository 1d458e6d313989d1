"""`make demo`'s main job runs end to end against the real local stack."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from nightshift_dev.demo import run_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_every_step(kafka_bootstrap: str, pg_dsn: str, s3_endpoint: str) -> None:
    lines: list[str] = []
    # In a thread of its own: the demo's asyncio.run() must not replace the main
    # thread's event loop, which the async tests of this session share.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(run_demo, lines.append).result(timeout=600)
    text = "\n".join(lines)
    assert "8 raw.arrived round-tripped through Apache Kafka" in text
    assert "1 poison message sent to the dead-letter topic" in text
    assert "put 9 calexps" in text and "found 4 datasets" in text and "50x50 cutout" in text
    assert "replaying the last visit stored 0 new DIA sources" in text
    assert "'succeeded': 9" in text and "re-run memoized 9 of 9 quanta" in text
    assert "on 2 runner services over Kafka" in text
    assert lines[-1] == "demo finished"
