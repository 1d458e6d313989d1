"""The built wheel works outside the checkout: the event schemas travel inside it as package data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# Run by the wheel's own venv, in a temp dir: the catalog must come from the installed package.
CHECK = """
import json, sys
from pathlib import Path
import nightshift, nightshift.events as ev
venv = Path(sys.prefix).resolve()
assert Path(nightshift.__file__).resolve().is_relative_to(venv), nightshift.__file__
catalog = ev.default_catalog()
event = ev.NextVisit(instrument="LSSTCam", group_id="g", visit=1, day_obs=20260101, survey="s", ra_deg=1.0,
                     dec_deg=-2.0, rotation_deg=0.0, physical_filter="r_57", exposure_time_s=30.0, n_snaps=1,
                     detectors=[0, 1])
print(json.dumps({"dir": str(ev.schemas_dir().resolve()), "in_venv": ev.schemas_dir().resolve().is_relative_to(venv),
                  "subjects": sorted(catalog.subjects), "roundtrip": ev.decode(ev.encode(event)) == event}))
"""


def test_the_wheel_carries_the_schemas_and_loads_them_outside_the_checkout(tmp_path: Path) -> None:
    # Build from a copy, so the checkout gets no build/ or egg-info folders.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("libs", "services", "schemas"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], check=True)
    (wheel,) = dist.glob("nightshift-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "nightshift/events/schemas/manifest.json" in names
    assert "nightshift/events/schemas/events/nextVisit.v1.avsc" in names
    # development tooling is not part of the library package
    assert not [n for n in names if n.startswith(("nightshift/devstack/", "nightshift/demo"))]

    # A fresh venv without system site-packages; the wheel alone, installed without an index.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--find-links", str(dist),
                    "nightshift"], check=True)
    # Its dependencies (numpy, fastavro, pydantic, ...) come from this venv's site-packages on PYTHONPATH.
    # A PYTHONPATH entry's .pth files are not run, so the editable finder of this checkout stays off.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIGHTSHIFT_", "PYTHON"))}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    run = tmp_path / "elsewhere"
    run.mkdir()
    out = subprocess.run([str(python), "-c", CHECK], cwd=run, env=env, check=True, capture_output=True, text=True)
    got = json.loads(out.stdout)
    assert got["in_venv"], got["dir"]
    assert not Path(got["dir"]).is_relative_to(ROOT)
    manifest = json.loads((ROOT / "schemas" / "manifest.json").read_text())
    assert got["subjects"] == sorted(manifest["subjects"])
    assert got["roundtrip"] is True
