"""Where the load tests find the stack, and a quick check that every server answers before anything starts."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from ._errors import LoadTestError

__all__ = ["StackAddresses"]

_HINT = 'start it with `nightshift dev up` and export its addresses with `eval "$(nightshift dev env)"`'


@dataclass(frozen=True)
class StackAddresses:
    """Addresses of the servers a load test drives (from the environment ``nightshift dev env`` prints)."""

    kafka: str
    pg_dsn: str
    s3_endpoint: str
    schema_registry: str

    @classmethod
    def from_env(cls) -> StackAddresses:
        """Read ``KAFKA_BOOTSTRAP``, ``PG_DSN``, ``S3_ENDPOINT``, ``SCHEMA_REGISTRY_URL`` (or NIGHTSHIFT_ forms)."""
        env = os.environ

        def pick(*names: str) -> str:
            for n in names:
                if env.get(n):
                    return env[n]
            raise LoadTestError(f"{' / '.join(names)} is not set: the load test does not know where the stack is; "
                                + _HINT)

        return cls(
            kafka=pick("NIGHTSHIFT_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP"),
            pg_dsn=pick("NIGHTSHIFT_APDB_DSN", "PG_DSN"),
            s3_endpoint=pick("NIGHTSHIFT_S3_ENDPOINT_URL", "S3_ENDPOINT"),
            schema_registry=pick("NIGHTSHIFT_SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_URL"),
        )

    def check(self, timeout: float = 10.0, *, need: tuple[str, ...] = ("kafka", "pg", "s3", "registry")) -> None:
        """Fail at once, naming the server, if one of ``need`` does not answer within ``timeout`` seconds.

        Raises
        ------
        LoadTestError
            A server is down or refuses the connection.
        """
        if "kafka" in need:
            admin = AdminClient({"bootstrap.servers": self.kafka, "socket.connection.setup.timeout.ms": 5000})
            try:
                admin.list_topics(timeout=timeout)
            except KafkaException as exc:
                raise LoadTestError(f"Kafka at {self.kafka} does not answer ({exc}); {_HINT}") from exc
        if "pg" in need:
            u = urlparse(self.pg_dsn)
            self._tcp("PostgreSQL", u.hostname or "127.0.0.1", u.port or 5432, timeout)
        if "s3" in need:
            u = urlparse(self.s3_endpoint)
            self._tcp("the S3 server", u.hostname or "127.0.0.1", u.port or 80, timeout)
        if "registry" in need:
            try:
                with urllib.request.urlopen(self.schema_registry.rstrip("/") + "/subjects", timeout=timeout):
                    pass
            except (urllib.error.URLError, OSError) as exc:
                raise LoadTestError(f"the schema registry at {self.schema_registry} does not answer ({exc}); "
                                    + _HINT) from exc

    @staticmethod
    def _tcp(name: str, host: str, port: int, timeout: float) -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as exc:
            raise LoadTestError(f"{name} at {host}:{port} does not answer ({exc}); {_HINT}") from exc
