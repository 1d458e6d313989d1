"""Apicurio Registry 3 on loopback: a schema registry with a Confluent-compatible API.

The server comes from Maven Central (``io.apicurio:apicurio-registry-app``,
classifier ``all``, a tar.gz of a Quarkus fast-jar; ``deploy/apicurio/pom.xml``),
unpacked once into the cache and run with ``java -jar quarkus-run.jar`` on a
JDK >= 21 found by :func:`~nightshift_dev.devstack._java.find_java`. Storage is
in-memory (H2): every start is a fresh registry, and ``up`` registers the
nightshift event schemas and every ``lsst-alert-packet`` alert schema under
their fixed ids (:func:`nightshift.events.register_schemas`).
"""

from __future__ import annotations

from pathlib import Path

from ._errors import StackError
from ._java import find_java
from ._maven import resolve_archive
from ._process import check_port_free, port_open, read_pid, spawn, stop_pid, wait_ready
from ._settings import StackSettings

NAME = "registry"
MIN_JAVA = 21  # Apicurio 3's classes are version 65


def _paths(s: StackSettings) -> dict[str, Path]:
    base = s.state_dir / NAME
    return {
        "base": base,
        "log": base / "server.log",
        "pid": base / "registry.pid",
        "tmp": base / "tmp",
        "app": s.cache_dir / "apicurio",
    }


def root_url(s: StackSettings) -> str:
    return f"http://{s.host}:{s.registry_port}"


def url(s: StackSettings) -> str:
    """The Confluent-compatible API, the URL Confluent clients (``SchemaRegistryClient``) take."""
    from nightshift.events import ccompat_url

    return ccompat_url(root_url(s))


def start(s: StackSettings, timeout: float = 180.0) -> None:
    """Start the registry (fetching and unpacking it the first time), then register the schemas."""
    from nightshift.events import SchemaRegistryError, register_schemas

    p = _paths(s)
    if not (read_pid(p["pid"]) is not None and ready(s)):
        jdk = find_java(MIN_JAVA, "Apicurio Registry 3")
        app = resolve_archive(s.deploy_dir / "apicurio" / "pom.xml", p["app"])
        check_port_free("Apicurio Registry", s.host, s.registry_port, "NIGHTSHIFT_REGISTRY_PORT")
        p["tmp"].mkdir(parents=True, exist_ok=True)
        argv = [
            str(jdk.java), "-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", f"-Djava.io.tmpdir={p['tmp']}",
            f"-Dquarkus.http.host={s.host}", f"-Dquarkus.http.port={s.registry_port}",
            # The management interface (health, metrics) would listen on 0.0.0.0:9000: loopback, any free port.
            f"-Dquarkus.management.host={s.host}", "-Dquarkus.management.port=0",
            "-Dquarkus.http.access-log.enabled=false",
            # Fixed ids come in through the admin import, which by default wants an empty registry.
            "-Dapicurio.import.requireEmptyRegistry=false",
            "-jar", str(app / "quarkus-run.jar"),
        ]
        alive = spawn(argv, p["log"], p["pid"])
        wait_ready("Apicurio Registry", lambda: ready(s), timeout, p["log"], alive=alive)
    try:
        register_schemas(root_url(s))
    except SchemaRegistryError as exc:
        raise StackError(f"registering the schemas in the local registry failed: {exc}") from exc


def ready(s: StackSettings) -> bool:
    """The Confluent-compatible API answers."""
    if not port_open(s.host, s.registry_port):
        return False
    import httpx

    try:
        return httpx.get(f"{url(s)}/subjects", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def running(s: StackSettings) -> bool:
    return read_pid(_paths(s)["pid"]) is not None


def stop(s: StackSettings) -> bool:
    return stop_pid(_paths(s)["pid"], timeout=30.0)


def env(s: StackSettings) -> dict[str, str]:
    return {"SCHEMA_REGISTRY_URL": url(s)}


def log_file(s: StackSettings) -> Path:
    return _paths(s)["log"]
