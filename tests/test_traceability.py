"""docs/requirements.md stays true: every requirement id appears once, every test it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "requirements.md"
SEED = ROOT.parent / "shared" / "seed" / "LDM-556-middleware-requirements.txt"


def _rows() -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in DOC.read_text().splitlines() if line.startswith("| DMS-")]


def test_each_id_once_with_a_status() -> None:
    rows = _rows()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "a requirement id is listed twice"
    for r in rows:
        assert r[3].startswith(("met", "partial", "not yet")), f"{r[0]}: unknown status {r[3]!r}"
        if r[3].startswith("met"):
            assert r[4] and r[5], f"{r[0]} is met but names no module or no test"
    if SEED.exists():  # the seed lives next to the checkout on the project's machines
        seed_ids = set(re.findall(r"DMS-MW(?:BT|ST)-REQ-\d{4}", SEED.read_text()))
        assert seed_ids <= set(ids), f"ids missing from the traceability table: {sorted(seed_ids - set(ids))}"


def test_cited_tests_and_modules_exist() -> None:
    missing = []
    for r in _rows():
        for path, names in re.findall(r"(tests/[\w/]+\.py)((?:::\w+)*)", r[5]):
            f = ROOT / path
            text = f.read_text() if f.exists() else ""
            for name in [n for n in names.split("::") if n] or [""]:
                if not f.exists() or (name and not re.search(rf"^\s*(?:async\s+def|def|class) {name}\b", text, re.M)):
                    missing.append(f"{r[0]}: {path}::{name}")
        for module in re.findall(r"(libs/nightshift/[\w/.]+\.(?:py|yaml))", r[4]):
            if not (ROOT / module).exists():
                missing.append(f"{r[0]}: {module}")
    assert not missing, "docs/requirements.md cites what does not exist:\n" + "\n".join(missing)
