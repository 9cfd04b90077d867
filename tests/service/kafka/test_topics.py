"""Replication of the topics the service creates: from settings, fitted to the cluster."""

from __future__ import annotations

import logging
import uuid

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from service.config import load_settings
from service.kafka.topics import Replication, ensure_topics, replication


@pytest.mark.parametrize(("factor", "isr", "brokers", "want"), [
    (3, 2, 5, Replication(3, 2)),
    (3, 2, 3, Replication(3, 2)),
    (3, 2, 2, Replication(2, 1)),
    (3, 2, 1, Replication(1, 1)),
    (3, 3, 2, Replication(2, 2)),
    (1, 1, 1, Replication(1, 1)),
    (3, 2, 0, Replication(3, 2)),  # broker count unknown: as set
])
def test_replication_is_reduced_to_the_brokers_keeping_the_tolerated_losses(
    factor: int, isr: int, brokers: int, want: Replication
) -> None:
    s = load_settings(kafka={"replication_factor": factor, "min_insync_replicas": isr}).kafka
    assert replication(s, brokers) == want


def test_a_reduction_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.kafka.topics"):
        replication(load_settings().kafka, 1)
    assert "only 1 broker(s)" in caplog.text and "kafka.replication_factor=3" in caplog.text


@pytest.mark.integration
def test_topics_on_a_one_broker_cluster_get_one_replica_and_a_warning(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"rep-{uuid.uuid4().hex[:8]}"
    s = load_settings(kafka={
        "bootstrap_servers": kafka_bootstrap, "readings_topic": f"{prefix}.readings",
        "changelog_topic": f"{prefix}.changelog", "anomalies_topic": f"{prefix}.anomalies",
        "dead_letter_topic": f"{prefix}.dead-letter", "instance_id": "rep",
    }).kafka
    with caplog.at_level(logging.WARNING, logger="service.kafka.topics"):
        ensure_topics(s)
    assert "only 1 broker(s)" in caplog.text
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        names = [f"{prefix}.{t}" for t in ("readings", "changelog", "anomalies", "dead-letter")]
        described = admin.describe_topics(names)
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )["topic"]
    finally:
        admin.close()
    assert {len(p["replica_nodes"]) for t in described for p in t["partitions"]} == {1}
    assert {configs[n]["min.insync.replicas"]["value"] for n in names} == {"1"}
