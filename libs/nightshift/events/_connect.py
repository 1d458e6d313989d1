"""Fail fast when the brokers cannot be reached or refuse the client's credentials.

librdkafka retries a refused SASL login forever and only logs it, so a producer
with a wrong password would otherwise just time out its messages 30 s later.
:func:`check_connection` asks for cluster metadata with an error callback and
turns an authentication or TLS failure into :class:`KafkaAuthenticationError`
at once.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from ._errors import KafkaAuthenticationError, KafkaConnectionError
from ._settings import KafkaSettings, kafka_settings

__all__ = ["check_connection"]

_REFUSED = {KafkaError._AUTHENTICATION, KafkaError._SSL}
_POLL_S = 0.25


def _scrub(text: str, settings: KafkaSettings) -> str:
    """``text`` with the secrets of ``settings`` masked (librdkafka does not echo them; belt and braces)."""
    for secret in (settings.sasl_password, settings.ssl_key_password):
        if secret is not None and secret.get_secret_value():
            text = text.replace(secret.get_secret_value(), "**********")
    return text


def check_connection(kafka: str | KafkaSettings, timeout: float = 30.0) -> int:
    """Connect, authenticate and read cluster metadata; return the number of brokers.

    Parameters
    ----------
    kafka : KafkaSettings or str
        Settings, or a bootstrap string (other settings from the environment).
    timeout : float
        Seconds to wait for an answer when the brokers are unreachable. A refused
        login or TLS handshake fails at the first attempt, without waiting.

    Raises
    ------
    KafkaAuthenticationError
        The brokers refused the SASL credentials or the TLS handshake. The
        message names the user and mechanism, never the password.
    KafkaConnectionError
        No broker answered within ``timeout``.
    """
    settings = kafka_settings(kafka)
    errors: list[KafkaError] = []
    # log_level 0: what went wrong goes into the exception rather than to stderr.
    config: dict[str, Any] = {**settings.librdkafka_config(), "error_cb": errors.append, "log_level": 0}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return len(admin.list_topics(timeout=max(0.05, min(_POLL_S, deadline - time.monotonic()))).brokers)
        except KafkaException as exc:
            last = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        admin.poll(0)  # serves error_cb
        refused = next((e for e in errors if e.code() in _REFUSED), None)
        if refused is not None:
            what = "the TLS handshake" if refused.code() == KafkaError._SSL else "the SASL login"
            fix = (
                "check NIGHTSHIFT_KAFKA_SSL_CA_LOCATION and the client certificate"
                if refused.code() == KafkaError._SSL
                else "check NIGHTSHIFT_KAFKA_SASL_USERNAME, NIGHTSHIFT_KAFKA_SASL_PASSWORD and "
                "NIGHTSHIFT_KAFKA_SASL_MECHANISM"
            )
            raise KafkaAuthenticationError(
                _scrub(f"Kafka at {settings.describe()} refused {what}: {refused.str()}; {fix}", settings)
            )
        if time.monotonic() >= deadline:
            detail = errors[-1].str() if errors else (last.str() if last is not None else "no answer")
            raise KafkaConnectionError(
                _scrub(
                    f"no Kafka broker answered at {settings.describe()} within {timeout:.0f} s ({detail}); "
                    "is the broker running and is NIGHTSHIFT_KAFKA_BOOTSTRAP (or KAFKA_BOOTSTRAP) right?",
                    settings,
                )
            )
