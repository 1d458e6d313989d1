"""Resolve a server's jars (or its distribution archive) from Maven Central with ``mvn``, cached by pom hash."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path

from ._errors import StackError
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


def resolve_archive(pom: Path, out_dir: Path) -> Path:
    """Fetch the one ``tar.gz`` dependency of ``pom`` from Maven Central and unpack it into ``out_dir`` once.

    Like :func:`resolve_jars`, a marker holding the pom's SHA-256 makes a second
    call free and a version bump re-resolve. The archive itself stays only in
    Maven's local repository (``~/.m2``); ``out_dir`` holds the unpacked tree.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    marker = out_dir / ".resolved"
    if marker.is_file() and marker.read_text() == digest:
        return out_dir
    mvn = which("mvn")
    staging = out_dir.with_name(out_dir.name + ".partial")
    download = out_dir.with_name(out_dir.name + ".download")
    for folder in (staging, download):
        shutil.rmtree(folder, ignore_errors=True)
    run_checked(
        [
            mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={download}", "-DincludeTypes=tar.gz",
        ],
        what=f"fetching the archive of {pom} from Maven Central",
    )
    archives = sorted(download.glob("*.tar.gz"))
    if len(archives) != 1:
        raise StackError(f"expected one tar.gz dependency in {pom}, Maven copied {[a.name for a in archives]}")
    staging.mkdir(parents=True)
    with tarfile.open(archives[0]) as tar:
        tar.extractall(staging, filter="data")
    shutil.rmtree(download, ignore_errors=True)
    (staging / ".resolved").write_text(digest)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return out_dir
