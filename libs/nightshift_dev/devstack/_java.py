"""Find a JDK of at least a given feature version, the way a user's machine has one installed.

Order: ``$JAVA_HOME``, the ``java`` on ``PATH``, then the JDKs installed side by
side in the usual places (``/usr/lib/jvm/*`` on Debian, Ubuntu and Fedora,
``/Library/Java/JavaVirtualMachines/*`` on macOS, SDKMAN's candidates). The
newest one that is new enough wins among the side-by-side ones.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._errors import MissingToolError

JVM_DIRS = (
    Path("/usr/lib/jvm"),
    Path("/usr/lib64/jvm"),
    Path("/Library/Java/JavaVirtualMachines"),
    Path.home() / ".sdkman" / "candidates" / "java",
)
_VERSION = re.compile(r'(?:JAVA_VERSION=|version )"(\d+)(?:\.(\d+))?')


@dataclass(frozen=True)
class Jdk:
    """A ``java`` executable and the feature version (17, 21, 25, ...) of its JDK."""

    java: Path
    version: int


def _feature_version(text: str) -> int | None:
    match = _VERSION.search(text)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older call themselves "1.8.0".
    return int(match.group(2) or 0) if major == 1 else major


def jdk_version(java: Path) -> int | None:
    """Feature version of the JDK of ``java``: from its ``release`` file, else from ``java -version``."""
    home = java.resolve().parent.parent
    release = home / "release"
    if release.is_file():
        version = _feature_version(release.read_text(errors="replace"))
        if version is not None:
            return version
    try:
        result = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _feature_version(result.stderr + result.stdout)


def _installed(dirs: tuple[Path, ...]) -> list[Path]:
    found = []
    for root in dirs:
        if not root.is_dir():
            continue
        for home in sorted(root.iterdir()):
            for java in (home / "bin" / "java", home / "Contents" / "Home" / "bin" / "java"):
                if java.is_file() and os.access(java, os.X_OK):
                    found.append(java)
    return found


def find_java(minimum: int, purpose: str, dirs: tuple[Path, ...] = JVM_DIRS) -> Jdk:
    """The ``java`` of a JDK >= ``minimum``; :class:`MissingToolError` naming what to install if none.

    Parameters
    ----------
    minimum : int
        Lowest feature version accepted (e.g. 21).
    purpose : str
        What needs it, for the error message (e.g. ``"Apicurio Registry"``).
    dirs : tuple of Path
        Folders holding side-by-side JDKs.
    """
    seen: list[str] = []
    java_home = os.environ.get("JAVA_HOME")
    candidates: list[tuple[str, Path]] = []
    if java_home:
        candidates.append(("JAVA_HOME", Path(java_home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(("PATH", Path(on_path)))
    for where, java in candidates:
        if not java.is_file():
            continue
        version = jdk_version(java)
        if version is not None and version >= minimum:
            return Jdk(java, version)
        seen.append(f"{java} ({where}): Java {version if version is not None else '?'}")
    best: Jdk | None = None
    for java in _installed(dirs):
        version = jdk_version(java)
        seen.append(f"{java}: Java {version if version is not None else '?'}")
        if version is not None and version >= minimum and (best is None or version > best.version):
            best = Jdk(java, version)
    if best is not None:
        return best
    found = "; ".join(dict.fromkeys(seen)) or "no JDK at all"
    raise MissingToolError(
        f"{purpose} needs Java {minimum} or newer, and this machine has none ({found}). "
        f"Install a JDK {minimum}+ (e.g. `apt-get install -y openjdk-{minimum}-jdk-headless`, or Temurin "
        f"{minimum}+ from https://adoptium.net) or point JAVA_HOME at one; `deploy/bootstrap.sh` tries the first."
    )
