"""The service base: settings from the environment, JSON logs, Prometheus metrics,
health endpoints and graceful drain on SIGTERM."""

from ._logging import JsonFormatter, setup_logging
from ._service import Service, ServiceConsumer, ThreadedLoop
from ._settings import ServiceSettings

__all__ = ["JsonFormatter", "Service", "ServiceConsumer", "ServiceSettings", "ThreadedLoop", "setup_logging"]
