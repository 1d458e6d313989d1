"""Cold start: opening a POSIX + SQLite repository imports no formatter library and no boto3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nightshift.butler._butler import Butler

HEAVY = ("astropy", "boto3", "botocore", "pyarrow", "fastavro", "numpy", "sqlalchemy.dialects.postgresql")


def _loaded_after(script: str) -> set[str]:
    code = f"{script}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_butler_construction_imports_no_heavy_library(tmp_path: Path) -> None:
    Butler.create(tmp_path / "repo").close()
    loaded = _loaded_after(f"from nightshift.butler import Butler\nButler({str(tmp_path / 'repo')!r})")
    assert sorted(m for m in loaded if m.split(".")[0] in {h.split(".")[0] for h in HEAVY[:-1]}) == []
    assert HEAVY[-1] not in loaded


def _setup(repo: Path) -> str:
    Butler.create(repo).close()
    return (
        "from nightshift.butler import Butler, DatasetType\n"
        f"b = Butler({str(repo)!r}, run='r')\n"
        "b.registry.insert_dimension_records('instrument', [{'name': 'Cam', 'visit_max': 10, 'detector_max': 10}])\n"
        "b.register_dataset_type(DatasetType('m', ['instrument'], 'StructuredDataDict'))\n"
        "b.register_dataset_type(DatasetType('t', ['instrument'], 'AstropyTable'))\n"
        "b.put({'a': 1}, 'm', instrument='Cam')\n"
        "assert b.get('m', instrument='Cam') == {'a': 1}\n"
    )


def test_heavy_libraries_come_with_the_formatter_that_needs_them(tmp_path: Path) -> None:
    loaded = _loaded_after(_setup(tmp_path / "json"))
    assert sorted(m for m in loaded if m.split(".")[0] in ("astropy", "pyarrow", "fastavro", "boto3")) == []
    loaded = _loaded_after(
        _setup(tmp_path / "fits") + "from astropy.table import Table\nb.put(Table({'x': [1]}), 't', instrument='Cam')\n"
    )
    assert "astropy.io.fits" in loaded and "pyarrow" not in loaded
