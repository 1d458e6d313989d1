"""S3Proxy with its filesystem backend: a real S3 server over HTTP.

Chosen over moto's server because it persists objects to disk (restart tests
are meaningful), implements SigV4 authentication and multipart uploads the way
AWS and MinIO do, and runs on the JDK the stack already needs for Kafka.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._maven import resolve_jars
from ._process import check_port_free, port_open, read_pid, spawn, stop_pid, wait_ready, which
from ._settings import StackSettings

NAME = "s3"
DEFAULT_ACCESS_KEY = "nightshift"
DEFAULT_SECRET_KEY = "nightshift-local-secret"  # local dev server only; override from the environment


def _paths(s: StackSettings) -> dict[str, Path]:
    base = s.state_dir / NAME
    return {
        "base": base,
        "data": base / "data",
        "config": base / "s3proxy.properties",
        "log": base / "server.log",
        "pid": base / "s3proxy.pid",
        "jars": s.cache_dir / "jars" / "s3proxy",
    }


def endpoint(s: StackSettings) -> str:
    return f"http://{s.host}:{s.s3_port}"


def credentials() -> tuple[str, str]:
    return (
        os.environ.get("NIGHTSHIFT_S3_ACCESS_KEY", DEFAULT_ACCESS_KEY),
        os.environ.get("NIGHTSHIFT_S3_SECRET_KEY", DEFAULT_SECRET_KEY),
    )


def start(s: StackSettings, timeout: float = 60.0) -> None:
    p = _paths(s)
    if read_pid(p["pid"]) is not None and ready(s):
        return
    java = which("java")
    jars = resolve_jars(s.deploy_dir / "s3proxy" / "pom.xml", p["jars"])
    check_port_free("S3Proxy", s.host, s.s3_port, "NIGHTSHIFT_S3_PORT")
    p["data"].mkdir(parents=True, exist_ok=True)
    access, secret = credentials()
    p["config"].touch(mode=0o600, exist_ok=True)
    p["config"].write_text(
        "\n".join(
            [
                f"s3proxy.endpoint=http://{s.host}:{s.s3_port}",
                "s3proxy.authorization=aws-v2-or-v4",
                f"s3proxy.identity={access}",
                f"s3proxy.credential={secret}",
                "jclouds.provider=filesystem",
                f"jclouds.filesystem.basedir={p['data']}",
                "",
            ]
        )
    )
    os.chmod(p["config"], 0o600)
    logback = s.deploy_dir / "s3proxy" / "logback.xml"
    argv = [
        java, "-Xms64m", "-Xmx512m", f"-Dlogback.configurationFile={logback}", "-cp", f"{jars}/*",
        "org.gaul.s3proxy.Main", "--properties", str(p["config"]),
    ]
    alive = spawn(argv, p["log"], p["pid"])
    wait_ready("S3Proxy", lambda: ready(s), timeout, p["log"], alive=alive)


def ready(s: StackSettings) -> bool:
    return port_open(s.host, s.s3_port)


def running(s: StackSettings) -> bool:
    return read_pid(_paths(s)["pid"]) is not None


def stop(s: StackSettings) -> bool:
    return stop_pid(_paths(s)["pid"])


def env(s: StackSettings) -> dict[str, str]:
    access, secret = credentials()
    return {
        "S3_ENDPOINT": endpoint(s),
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        # botocore >= 1.36 sends CRC trailers by default, which S3Proxy (like
        # older MinIO and Ceph) rejects; checksums only where the API needs them.
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }


def log_file(s: StackSettings) -> Path:
    return _paths(s)["log"]
