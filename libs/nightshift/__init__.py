"""nightshift: data middleware for a survey telescope.

Subpackages
-----------
events
    Avro event models, the Confluent wire format, asyncio Kafka producer/consumer.
service
    The base every Alert Production service stands on: settings, JSON logs,
    Prometheus metrics, health endpoints, graceful shutdown.
devstack
    The local stack of real servers (Apache Kafka, PostgreSQL, S3Proxy) used by
    the demo and the tests.
"""

from ._exceptions import NightshiftError

__all__ = ["NightshiftError", "__version__"]
__version__ = "0.1.0"
