"""Security settings as kafka-python client configuration, and errors explained by setting.

:func:`client_config` is merged into every client's configuration by
:func:`service.kafka.clients.connection`. :func:`explain_client_error` is the one place that
decides whether a Kafka client error is a setting to fix (fatal: retrying cannot help) and
says which: the pipeline calls it when a session fails, ``vibewatch serve`` at start-up
through :func:`check_connection`.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

from kafka import errors

from service.config import KafkaSecuritySettings, KafkaSettings
from service.errors import ConfigError
from service.kafka.probe import ProbeFailure, probe

#: Exceptions that say nothing about the cause (kafka-python's bootstrap and request
#: time-outs, dropped connections): the probe finds out whether a setting is behind them.
_OPAQUE = (errors.KafkaTimeoutError, errors.KafkaConnectionError, errors.RequestTimedOutError)


def client_config(sec: KafkaSecuritySettings) -> dict[str, Any]:
    """kafka-python keyword arguments for ``sec`` (valid for consumers, producers, admins)."""
    config: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.protocol.endswith("SSL"):
        config |= {
            "ssl_check_hostname": sec.ssl_check_hostname,
            "ssl_cafile": str(sec.ssl_cafile) if sec.ssl_cafile else None,
            "ssl_certfile": str(sec.ssl_certfile) if sec.ssl_certfile else None,
            "ssl_keyfile": str(sec.ssl_keyfile) if sec.ssl_keyfile else None,
            "ssl_password": (
                sec.ssl_key_password.get_secret_value() if sec.ssl_key_password else None
            ),
        }
    if sec.protocol.startswith("SASL_"):
        config |= {
            "sasl_mechanism": sec.sasl_mechanism,
            "sasl_plain_username": sec.sasl_username,
            "sasl_plain_password": (
                sec.sasl_password.get_secret_value() if sec.sasl_password else None
            ),
        }
    return config


def diagnose(exc: BaseException, s: KafkaSettings) -> ProbeFailure | None:
    """The setting behind ``exc``, or None when ``exc`` is not a configuration problem.

    Typed refusals (authentication, authorization, TLS) are read from the exception and its
    causes; an opaque time-out or dropped connection runs :func:`probe` against the
    bootstrap servers (one short connection each, at most ``kafka.timeout_ms`` per server).
    """
    for cause in _chain(exc):
        found = _typed(cause, s)
        if found is not None:
            return found
    if any(isinstance(cause, _OPAQUE) for cause in _chain(exc)):
        return probe(s, timeout_s=min(s.timeout_ms / 1000, 10.0))
    return None


def explain_client_error(exc: BaseException, s: KafkaSettings) -> str | None:
    """A message naming the setting to fix when ``exc`` is fatal, else None (retriable).

    For the pipeline's error handling: a non-None answer means no retry can succeed
    (wrong credentials, an untrusted certificate, a missing ACL, a protocol mismatch); log
    it and stop. The message starts with the setting's name, as ConfigError's does.
    """
    found = diagnose(exc, s)
    return None if found is None else str(ConfigError(found.setting, found.message))


def check_connection(s: KafkaSettings) -> None:
    """At start-up: raise ConfigError when the brokers refuse these settings.

    An unreachable cluster passes (the pipeline retries until it answers); only a refusal
    that retrying cannot fix fails, naming the setting.
    """
    timeout_s = min(s.timeout_ms / 1000, 10.0)
    found = probe(s, timeout_s)
    if found is not None:
        # A broker that restarts right now also hangs up: only a refusal that repeats counts.
        time.sleep(1.0)
        again = probe(s, timeout_s)
        if again is not None and again.setting == found.setting:
            raise ConfigError(found.setting, found.message)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in out:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _typed(exc: BaseException, s: KafkaSettings) -> ProbeFailure | None:
    sec, user = s.security, s.security.sasl_username
    principal = f"user {user!r}" if user else "this client's principal"
    if isinstance(exc, errors.SaslAuthenticationFailedError):
        return ProbeFailure(
            "kafka.security.sasl_password",
            f"the brokers rejected the SASL {sec.sasl_mechanism} credentials of {principal} "
            f"({exc}): check kafka.security.sasl_username and sasl_password",
        )
    if isinstance(exc, errors.UnsupportedSaslMechanismError):
        return ProbeFailure("kafka.security.sasl_mechanism", str(exc))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProbeFailure(
            "kafka.security.ssl_cafile",
            f"a broker's certificate is not trusted ({exc.verify_message or exc}): set "
            "kafka.security.ssl_cafile to the CA that signs the brokers' certificates",
        )
    acl = {
        errors.TopicAuthorizationFailedError: (
            "kafka.readings_topic", "READ on the readings topic and WRITE on the changelog, "
            "anomalies and dead-letter topics (DESCRIBE on all; CREATE when "
            "kafka.create_topics)",
        ),
        errors.GroupAuthorizationFailedError: (
            "kafka.group_id", f"READ on the consumer group {s.group_id!r}",
        ),
        errors.TransactionalIdAuthorizationFailedError: (
            "kafka.group_id", f"WRITE and DESCRIBE on transactional ids with the prefix "
            f"'{s.group_id}-'",
        ),
        errors.ClusterAuthorizationFailedError: (
            "kafka.create_topics", "CREATE on the cluster to create topics (or create them "
            "beforehand and set kafka.create_topics=false), and IDEMPOTENT_WRITE",
        ),
    }
    for kind, (setting, needs) in acl.items():
        if isinstance(exc, kind):
            return ProbeFailure(
                setting, f"{principal} is not authorised ({type(exc).__name__}): it needs "
                f"the ACLs {needs}",
            )
    return None
