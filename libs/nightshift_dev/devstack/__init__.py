"""The local stack: real Apache Kafka, PostgreSQL, an S3 server, a schema registry and a WebDAV server on loopback.

Used by ``make demo``, ``make test`` and the pytest fixtures. Each server is
started by nightshift itself from packages of this machine's registries::

    nightshift dev up       # start (or reuse) all five; first run resolves jars
    nightshift dev env      # shell lines: KAFKA_BOOTSTRAP=..., PG_DSN=..., S3_ENDPOINT=..., SCHEMA_REGISTRY_URL=...,
                            #   DAV_ENDPOINT=..., DAV_TOKEN=...
    nightshift dev status
    nightshift dev down     # stop; data (Kafka log dirs, PG cluster, S3 objects, WebDAV files) is kept;
                            #   the registry is in-memory
"""

from ._errors import MissingToolError, StackError
from ._settings import StackSettings, project_root
from ._stack import COMPONENTS, down, stack_env, status, up

__all__ = [
    "COMPONENTS",
    "MissingToolError",
    "StackError",
    "StackSettings",
    "down",
    "project_root",
    "stack_env",
    "status",
    "up",
]
