"""Errors of the load tests."""

from __future__ import annotations

from nightshift import NightshiftError

__all__ = ["LoadTestError"]


class LoadTestError(NightshiftError, RuntimeError):
    """A load test cannot run or cannot go on (stack down, topic missing, broker refusing writes, guard hit)."""

    error_type = "loadtest"
