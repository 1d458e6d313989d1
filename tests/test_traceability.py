"""docs/requirements.md stays true: every requirement id of the seed has one row, every test it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "requirements.md"
SEED_NAME = Path("shared") / "seed" / "LDM-556-middleware-requirements.txt"
# "ID: DMS-MWST-REQ-0028"; the seed misprints two as "REO" (DMS-MWST-REO-0007, -0016): any letter is read as REQ
SEED_ID = re.compile(r"^ID:\s*DMS-MW(BT|ST)-RE[A-Z0-9]-(\d{4})\b", re.M)
# the "Pending" section's LDF items have bare numbers ("ID: 16 (Priority: 2)"), not DMS ids
PENDING_ID = re.compile(r"^ID:\s*\d+\s*\(Priority", re.M)


def _clone_roots() -> list[Path]:
    """This checkout's root and, for a ``git worktree``, the root of the clone it belongs to."""
    roots = [ROOT]
    git = ROOT / ".git"
    if git.is_file():  # "gitdir: <clone>/.git/worktrees/<name>"
        m = re.match(r"gitdir:\s*(.+)", git.read_text().strip())
        if m:
            gitdir = Path(m.group(1))
            common = gitdir / "commondir"
            common_dir = (gitdir / common.read_text().strip()).resolve() if common.exists() else gitdir.parents[1]
            roots.append(common_dir.parent)
    return roots


def seed_path() -> Path:
    """``<repo>/../shared/seed/LDM-556-middleware-requirements.txt``: the seed sits beside the clone."""
    candidates = [root.parent / SEED_NAME for root in _clone_roots()]
    for path in candidates:
        if path.is_file():
            return path
    pytest.fail("the requirements seed is missing: expected it beside the clone, at "
                + " or ".join(str(p) for p in candidates)
                + " (copy the project's shared/ directory next to the repository)")


def seed_ids() -> list[str]:
    """Every requirement id the seed defines, in its order, with the seed's "REO" misprint read as REQ."""
    text = seed_path().read_text()
    ids = [f"DMS-MW{area}-REQ-{num}" for area, num in SEED_ID.findall(text)]
    id_lines = re.findall(r"^ID:.*$", text, re.M)
    unread = [line for line in id_lines if not SEED_ID.match(line) and not PENDING_ID.match(line)]
    assert not unread, f"ID lines of the seed this test cannot read (fix the pattern, not the table): {unread}"
    return ids


def _rows() -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in DOC.read_text().splitlines() if line.startswith("| DMS-")]


def test_the_seed_is_read_whole() -> None:
    ids = seed_ids()
    assert len(ids) == len(set(ids)) == 127, "LDM-556 defines 96 butler (MWBT) and 31 SuperTask (MWST) ids"
    assert "DMS-MWST-REQ-0007" in ids and "DMS-MWST-REQ-0016" in ids  # printed "REO" in the seed


def test_each_seed_id_has_one_row_with_a_status() -> None:
    rows = _rows()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), f"ids listed twice: {sorted({i for i in ids if ids.count(i) > 1})}"
    seed = seed_ids()
    missing = [i for i in seed if i not in ids]
    assert not missing, f"seed ids with no row in docs/requirements.md: {missing}"
    invented = sorted(set(ids) - set(seed))
    assert not invented, f"rows for ids the seed does not define: {invented}"
    for r in rows:
        assert r[3].startswith(("met", "partial", "not yet")), f"{r[0]}: unknown status {r[3]!r}"
        if r[3].startswith("met"):
            assert r[4] and r[5], f"{r[0]} is met but names no module or no test"


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
