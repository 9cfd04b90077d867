"""Broker loss on a 3-broker cluster: kill -9 one broker mid-stream, nothing lost or doubled.

A 3-node KRaft cluster (deploy/kafka/local_kafka.py) with the service's default replication
(3 replicas, min.insync.replicas 2): one broker is SIGKILLed while readings are produced and
processed, and stays down. The instance under test must end with the same committed
per-engine state and anomaly events as a reference instance that runs over the whole topic
afterwards (the comparison of tests/service/test_exactly_once.py).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from tests.service.test_exactly_once import SMALL, Producer, _all_done, _assert_equals_reference
from tests.support import ServiceProcess, topic_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_losing_one_of_three_brokers_mid_stream_loses_and_duplicates_nothing(
    local_kafka_module: ModuleType, tmp_path: Path
) -> None:
    cluster = local_kafka_module.LocalKafkaCluster.on_free_ports(tmp_path / "cluster", brokers=3)
    cluster.start(timeout_s=120)
    try:
        bootstrap = cluster.bootstrap
        run = uuid.uuid4().hex[:8]
        readings = f"eos-{run}.readings"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(readings, 3, 3, topic_configs={"min.insync.replicas": "2"})])
        admin.close()
        env = topic_env(bootstrap, f"eos-{run}-test", VIBEWATCH_KAFKA__READINGS_TOPIC=readings)
        producer = Producer(bootstrap, readings, SMALL)
        service = ServiceProcess(env, tmp_path / "svc.log", "svc").start()
        try:
            service.wait_ready(120)
            producer.start()
            time.sleep(3.0)  # mid-stream: some readings processed and committed
            cluster.kill(2)
            producer.finish(300)
            wait_for(lambda: _all_done(service, SMALL), 300, "the service to finish on 2 brokers")
        finally:
            assert service.stop() == 0, service.log_tail()
        # The service created its topics with the default replication, before the loss.
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            changelog = admin.describe_topics([f"eos-{run}-test.changelog"])[0]
        finally:
            admin.close()
        assert {len(p["replica_nodes"]) for p in changelog["partitions"]} == {3}
        _assert_equals_reference(bootstrap, readings, run, tmp_path)
    finally:
        cluster.stop()
