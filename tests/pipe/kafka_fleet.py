"""The runner fleet of the Kafka executor tests: real runner services, quick to notice a dead member."""

from __future__ import annotations

from pathlib import Path

from nightshift.events import KafkaSettings
from nightshift_dev.fleet import LocalRunnerFleet


class RunnerFleet(LocalRunnerFleet):
    """:class:`LocalRunnerFleet` logging to ``log_dir``, with a 6 s Kafka session timeout (fast rebalances)."""

    def __init__(self, bootstrap: str | KafkaSettings, log_dir: Path, **settings: str) -> None:
        super().__init__(bootstrap, log_dir, **{"session_timeout_ms": "6000", **settings})
