"""Resolve a server's jars from Maven Central with ``mvn``, cached by pom hash."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from ._process import run_checked, which


def resolve_jars(pom: Path, out_dir: Path) -> Path:
    """Copy the runtime dependencies of ``pom`` into ``out_dir`` once.

    A marker holding the pom's SHA-256 makes a second call free and a pom
    change (e.g. a Kafka version bump) re-resolve.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    marker = out_dir / ".resolved"
    if marker.is_file() and marker.read_text() == digest:
        return out_dir
    mvn = which("mvn")
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    run_checked(
        [
            mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
        ],
        what=f"resolving jars of {pom} from Maven Central",
    )
    (staging / ".resolved").write_text(digest)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return out_dir
