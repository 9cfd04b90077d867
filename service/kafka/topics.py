"""Create the service's topics when they are missing, and read the limits that matter."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from service.config import KafkaSettings
from service.kafka import clients

log = logging.getLogger(__name__)

#: The changelog is compacted promptly: a restart that has to read it whole (no local
#: checkpoint) then reads about one row per engine rather than every row ever written. Small
#: segments roll often (only closed segments are compacted), the cleaner starts at 10 % of
#: dirty records and any record is compacted within 5 minutes.
CHANGELOG_CONFIG = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "0",
    "max.compaction.lag.ms": "300000",
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": "60000",
    "segment.bytes": str(64 << 20),
}
#: Headroom the dead-letter topic gets above the readings' size limit: a dead letter is the
#: original message plus reason and source headers.
DEAD_LETTER_HEADROOM = 64 << 10
#: The broker's default max.message.bytes, assumed when the topic's cannot be read.
BROKER_DEFAULT_MAX_MESSAGE = 1_048_588


@dataclass(frozen=True)
class Topics:
    """What the pipeline needs to know of its topics."""

    partitions: int  #: of the readings topic (and the changelog and anomalies topics)
    dead_letter_max_bytes: int  #: the dead-letter topic's max.message.bytes


def ensure_topics(s: KafkaSettings) -> Topics:
    """Make sure all topics exist (when ``kafka.create_topics``) and describe them.

    The changelog gets the readings topic's partition count (engine state lives in the
    partition of the same number) and :data:`CHANGELOG_CONFIG`; the dead-letter topic room
    for the largest accepted message plus headers. Existing topics are left as they are
    (a changelog that is not compacted is logged as a warning); a changelog with another
    partition count is an error that names both.
    """
    admin = clients.admin(s)
    try:
        existing = _partition_counts(admin)
        readings = existing.get(s.readings_topic, s.readings_partitions)
        if s.create_topics:
            _create_missing(s, admin, existing, readings)
            existing = _partition_counts(admin)
        changelog = existing.get(s.changelog_topic)
        if changelog is not None and changelog != readings:
            raise RuntimeError(
                f"changelog topic {s.changelog_topic} has {changelog} partitions but the "
                f"readings topic {s.readings_topic} has {readings}: they must be equal"
            )
        configs = _topic_configs(admin, [s.changelog_topic, s.dead_letter_topic])
        if configs.get(s.changelog_topic, {}).get("cleanup.policy", "compact") != "compact":
            log.warning("changelog topic %s is not compacted (cleanup.policy=%s): restores "
                        "read every row ever written", s.changelog_topic,
                        configs[s.changelog_topic]["cleanup.policy"])
        dlq = configs.get(s.dead_letter_topic, {}).get("max.message.bytes")
        return Topics(readings, int(dlq) if dlq else BROKER_DEFAULT_MAX_MESSAGE)
    finally:
        admin.close()


def _create_missing(
    s: KafkaSettings, admin: KafkaAdminClient, existing: dict[str, int], readings: int
) -> None:
    dlq_bytes = max(s.max_message_bytes + DEAD_LETTER_HEADROOM, BROKER_DEFAULT_MAX_MESSAGE)
    wanted = {
        s.readings_topic: (readings, {}),
        s.changelog_topic: (readings, CHANGELOG_CONFIG),
        s.anomalies_topic: (readings, {}),
        s.dead_letter_topic: (1, {"max.message.bytes": str(dlq_bytes)}),
    }
    new = [
        NewTopic(name, parts, 1, topic_configs=dict(conf))
        for name, (parts, conf) in wanted.items()
        if name not in existing
    ]
    if new:
        try:
            admin.create_topics(new)
            log.info("created topics %s", [t.name for t in new])
        except TopicAlreadyExistsError:
            pass


def _topic_configs(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """The effective configuration of the existing ``names`` (a missing topic is absent)."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    try:
        got = admin.describe_configs(resources, config_filter="all")
    except Exception:  # an old broker or no permission: defaults are assumed
        log.warning("could not describe topics %s; assuming broker defaults", names,
                    exc_info=True)
        return {}
    return {
        name: {k: v["value"] for k, v in conf.items()}
        for name, conf in got.get("topic", {}).items()
    }


def _partition_counts(admin: KafkaAdminClient) -> dict[str, int]:
    return {
        t["name"]: len(t["partitions"])
        for t in admin.describe_topics()
        if not t.get("error_code")
    }
