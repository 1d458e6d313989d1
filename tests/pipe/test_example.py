"""The worked example in docs/pipeline-example.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "pipeline-example.md"


def test_worked_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    runnable = [b for b in blocks if "Butler.create" in b]
    assert len(runnable) == 1
    exec(compile(runnable[0], str(DOC), "exec"), {"__name__": "docs_example"})  # noqa: S102 - our own doc
    out = capsys.readouterr().out
    assert "'succeeded': 11" in out and "ran on" in out
