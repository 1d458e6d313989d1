"""Fixtures of the pipeline tests: real butler repositories (SQLite registry, POSIX datastore)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pipe_support import make_repo  # noqa: E402

from nightshift.butler._butler import Butler  # noqa: E402


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Butler]:
    """A repository with 3 visits x 4 detectors of ``raw`` and 4 ``bias`` frames."""
    butler = make_repo(tmp_path / "repo")
    yield butler
    butler.close()
