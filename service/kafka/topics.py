"""Create the service's topics when they are missing (replicated as the settings say), and
read the limits that matter."""

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
#: The control topic (model reloads, service.kafka.control) keeps the latest record per
#: engine class.
CONTROL_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
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
    for the largest accepted message plus headers. Every created topic gets
    :func:`replication` (the settings, reduced on a cluster with fewer brokers). Existing
    topics are left as they are (a changelog that is not compacted or has fewer replicas
    than ``kafka.replication_factor`` is logged as a warning); a changelog with another
    partition count is an error that names both.
    """
    admin = clients.admin(s)
    try:
        existing = _partition_counts(admin)
        readings = existing.get(s.readings_topic, s.readings_partitions)
        if s.create_topics:
            _create_missing(s, admin, existing, readings, replication(s, _broker_count(admin)))
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
        replicas = _replicas(admin, s.changelog_topic)
        if 0 < replicas < s.replication_factor:
            log.warning("changelog topic %s has %d replica(s), fewer than "
                        "kafka.replication_factor=%d: a broker loss can lose engine state",
                        s.changelog_topic, replicas, s.replication_factor)
        dlq = configs.get(s.dead_letter_topic, {}).get("max.message.bytes")
        return Topics(readings, int(dlq) if dlq else BROKER_DEFAULT_MAX_MESSAGE)
    finally:
        admin.close()


@dataclass(frozen=True)
class Replication:
    """Replicas and min.insync.replicas of the topics the service creates."""

    factor: int
    min_insync: int


def replication(s: KafkaSettings, brokers: int) -> Replication:
    """``kafka.replication_factor`` and ``kafka.min_insync_replicas``, fitted to ``brokers``.

    A cluster with fewer brokers than the replication factor cannot create the topics, so
    the factor drops to the broker count, with a warning; min.insync.replicas drops with it
    by as much, keeping the number of brokers that may be lost without stopping writes
    (3/2 on two brokers is 2/1, on one broker 1/1). ``brokers`` 0 (unknown) keeps both.
    """
    factor, min_insync = s.replication_factor, s.min_insync_replicas
    if 0 < brokers < factor:
        fitted = Replication(brokers, max(1, min_insync - (factor - brokers)))
        log.warning(
            "only %d broker(s): topics get replication factor %d and min.insync.replicas %d "
            "instead of kafka.replication_factor=%d and kafka.min_insync_replicas=%d; a "
            "broker loss can lose committed state. Use a cluster of %d or more brokers in "
            "production", brokers, fitted.factor, fitted.min_insync, factor, min_insync, factor,
        )
        return fitted
    return Replication(factor, min_insync)


def _broker_count(admin: KafkaAdminClient) -> int:
    try:
        return len(admin.describe_cluster().get("brokers", []))
    except Exception:  # an old broker or no permission: the settings are used as they are
        log.warning("could not count the brokers; using kafka.replication_factor as set",
                    exc_info=True)
        return 0


def _create_missing(
    s: KafkaSettings, admin: KafkaAdminClient, existing: dict[str, int], readings: int,
    rep: Replication,
) -> None:
    dlq_bytes = max(s.max_message_bytes + DEAD_LETTER_HEADROOM, BROKER_DEFAULT_MAX_MESSAGE)
    wanted = {
        s.readings_topic: (readings, {}),
        s.changelog_topic: (readings, CHANGELOG_CONFIG),
        s.anomalies_topic: (readings, {}),
        s.dead_letter_topic: (1, {"max.message.bytes": str(dlq_bytes)}),
        s.control_topic: (1, CONTROL_CONFIG),
    }
    isr = {"min.insync.replicas": str(rep.min_insync)}
    new = [
        NewTopic(name, parts, rep.factor, topic_configs={**conf, **isr})
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


def _replicas(admin: KafkaAdminClient, topic: str) -> int:
    """Replicas of ``topic``'s first partition (0 when it cannot be described)."""
    for t in admin.describe_topics([topic]):
        if not t.get("error_code") and t["partitions"]:
            return len(t["partitions"][0]["replica_nodes"])
    return 0


def _partition_counts(admin: KafkaAdminClient) -> dict[str, int]:
    return {
        t["name"]: len(t["partitions"])
        for t in admin.describe_topics()
        if not t.get("error_code")
    }


def ensure_control_topic(s: KafkaSettings) -> None:
    """Create the control topic when it is missing (and ``kafka.create_topics``): the
    control reader starts before the pipeline creates the other topics."""
    if not s.create_topics:
        return
    admin = clients.admin(s, "control-admin")
    try:
        if s.control_topic in _partition_counts(admin):
            return
        rep = replication(s, _broker_count(admin))
        try:
            admin.create_topics([NewTopic(
                s.control_topic, 1, rep.factor,
                topic_configs={**CONTROL_CONFIG, "min.insync.replicas": str(rep.min_insync)},
            )])
            log.info("created topic %s", s.control_topic)
        except TopicAlreadyExistsError:
            pass
    finally:
        admin.close()
