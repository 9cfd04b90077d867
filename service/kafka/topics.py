"""Create the service's topics when they are missing."""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from service.config import KafkaSettings
from service.kafka import clients

log = logging.getLogger(__name__)


def ensure_topics(s: KafkaSettings) -> int:
    """Make sure all topics exist; returns the readings topic's partition count.

    The changelog gets the readings topic's partition count (engine state lives in the
    partition of the same number) and ``cleanup.policy=compact``. Existing topics are left
    as they are; a changelog with another partition count is an error that names both.
    """
    admin = clients.admin(s)
    try:
        existing = _partition_counts(admin)
        readings = existing.get(s.readings_topic, s.readings_partitions)
        wanted = {
            s.readings_topic: (readings, {}),
            s.changelog_topic: (readings, {"cleanup.policy": "compact",
                                           "min.compaction.lag.ms": "0",
                                           "segment.ms": "600000"}),
            s.anomalies_topic: (readings, {}),
            s.dead_letter_topic: (1, {}),
        }
        new = [
            NewTopic(name, parts, 1, topic_configs=conf)
            for name, (parts, conf) in wanted.items()
            if name not in existing
        ]
        if new:
            try:
                admin.create_topics(new)
                log.info("created topics %s", [t.name for t in new])
            except TopicAlreadyExistsError:
                pass
        existing = _partition_counts(admin)
        changelog = existing.get(s.changelog_topic)
        if changelog is not None and changelog != readings:
            raise RuntimeError(
                f"changelog topic {s.changelog_topic} has {changelog} partitions but the "
                f"readings topic {s.readings_topic} has {readings}: they must be equal"
            )
        return readings
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient) -> dict[str, int]:
    return {
        t["name"]: len(t["partitions"])
        for t in admin.describe_topics()
        if not t.get("error_code")
    }
