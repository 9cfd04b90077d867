"""Every Kafka client the service and its tools create, configured in one place.

Connection settings (bootstrap servers, client id, ``kafka.security``: TLS and SASL) come
from :class:`KafkaSettings` here and nowhere else, so a setting that concerns every client
reaches all of them: the pipeline's, restore's, the fleet view's and the tools'.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from service.config import KafkaSettings
from service.kafka.security import client_config


def connection(s: KafkaSettings, role: str) -> dict[str, Any]:
    """The configuration every client shares: where the brokers are, who is asking and how
    it proves it (security protocol, TLS files, SASL credentials).

    ``role`` ends the client id (``<client_id>-<instance_id>-<role>``), so the broker's
    logs and quotas tell the service's clients apart.
    """
    return {
        "bootstrap_servers": s.bootstrap_servers.split(","),
        "client_id": f"{s.client_id}-{s.instance_id}-{role}",
        # A client that cannot reach any broker gives up after kafka.timeout_ms (kafka-python
        # waits 30 s by default), so an unreachable cluster neither hides behind a long
        # silence nor delays a shutdown.
        "bootstrap_timeout_ms": s.timeout_ms,
        **client_config(s.security),
    }


def consumer(s: KafkaSettings, role: str, **config: Any) -> KafkaConsumer:
    """A consumer; ``config`` is passed on (group, isolation level, fetch sizes, ...)."""
    return KafkaConsumer(**connection(s, role), **config)


def producer(s: KafkaSettings, role: str, **config: Any) -> KafkaProducer:
    """A producer; ``config`` is passed on (transactional id, acks, batching, ...)."""
    return KafkaProducer(**connection(s, role), **config)


def admin(s: KafkaSettings, role: str = "admin") -> KafkaAdminClient:
    """An admin client (topic creation and description)."""
    return KafkaAdminClient(**connection(s, role))


def changelog_consumer(s: KafkaSettings, role: str, **config: Any) -> KafkaConsumer:
    """A group-less read_committed consumer for the changelog (restore, fleet view)."""
    return consumer(
        s, role, group_id=None, enable_auto_commit=False, isolation_level="read_committed",
        **config,
    )
