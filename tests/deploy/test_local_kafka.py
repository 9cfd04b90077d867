"""The local broker script (deploy/kafka/local_kafka.py) and the broker it runs.

The integration tests check exactly what the service relies on: keyed records keep their
per-key order and partition, and transactions are atomic for ``read_committed`` readers,
including offsets sent to the transaction (exactly-once consume-transform-produce).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.structs import OffsetAndMetadata, TopicPartition

if TYPE_CHECKING:
    from tests.conftest import MakeTopic

DEADLINE_S = 30.0
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000}


def _consume(
    consumer: Any, done: Callable[[list[Any]], bool], timeout_s: float = DEADLINE_S
) -> list[Any]:
    """Poll until ``done(records)`` holds; fail with what arrived when the deadline passes."""
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while not done(records):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s; got {len(records)} records")
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    return records


def _assigned_consumer(bootstrap: str, topic: str, **config: Any) -> Any:
    """A group-less consumer reading every partition of ``topic`` from the start."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **config)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    return consumer


def _values(records: list[Any]) -> list[bytes]:
    return [bytes(record.value) for record in records]


# Unit ---------------------------------------------------------------------------------


def test_server_properties_render_a_single_node_kraft_broker(
    local_kafka_module: ModuleType, tmp_path: Path
) -> None:
    text = local_kafka_module.render_server_properties(
        port=19092, controller_port=19093, log_dir=tmp_path / "logs"
    )
    props = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )

    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == props["listeners"]
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "logs")
    replication = [key for key in props if key.endswith(("replication.factor", "min.isr"))]
    assert len(replication) >= 5
    assert all(props[key] == "1" for key in replication)
    # Fast start for tests: few internal partitions, no initial rebalance delay.
    assert props["offsets.topic.num.partitions"] == "4"
    assert props["transaction.state.log.num.partitions"] == "4"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "3"
    assert props["auto.create.topics.enable"] == "true"


def test_cluster_ids_look_like_kafka_uuids(local_kafka_module: ModuleType) -> None:
    ids = {local_kafka_module.random_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cid) for cid in ids)


def test_free_ports_are_distinct(local_kafka_module: ModuleType) -> None:
    ports = local_kafka_module.free_ports(2)

    assert len(set(ports)) == 2
    assert all(1024 <= port <= 65535 for port in ports)


# Integration --------------------------------------------------------------------------


@pytest.mark.integration
def test_make_topic_creates_unique_ready_topics(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    plain = make_topic("plain", partitions=2)
    compacted = make_topic("plain", compacted=True)

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics([plain, compacted])}
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in (plain, compacted)]
        )["topic"]
    finally:
        admin.close()
    assert plain != compacted
    assert len(described[plain]["partitions"]) == 2
    assert len(described[compacted]["partitions"]) == 3
    # Only non-default settings may be listed; the default policy is "delete".
    assert configs[plain].get("cleanup.policy", {"value": "delete"})["value"] == "delete"
    assert configs[compacted]["cleanup.policy"]["value"] == "compact"


@pytest.mark.integration
def test_keyed_messages_round_trip_in_key_order(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = make_topic("roundtrip", partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    sent = [(f"engine-{i % 5}".encode(), f"{i}".encode()) for i in range(100)]
    for key, value in sent:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=DEADLINE_S)
    producer.close()

    consumer = _assigned_consumer(kafka_bootstrap, topic, auto_offset_reset="earliest")
    try:
        records = _consume(consumer, lambda got: len(got) >= len(sent))
    finally:
        consumer.close()

    assert len(records) == len(sent)
    partitions_by_key: dict[bytes, set[int]] = {}
    for record in records:
        partitions_by_key.setdefault(record.key, set()).add(record.partition)
    assert all(len(parts) == 1 for parts in partitions_by_key.values())
    for key in partitions_by_key:
        received = [r.value for r in records if r.key == key]
        assert received == [value for k, value in sent if k == key]


@pytest.mark.integration
def test_read_committed_sees_committed_and_not_aborted_transactions(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = make_topic("txn", partitions=1)
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"test-txn-{uuid.uuid4().hex}"
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(topic, key=b"k", value=b"committed-1")
        producer.commit_transaction()

        producer.begin_transaction()
        producer.send(topic, key=b"k", value=b"aborted")
        producer.flush()  # the records reach the log, so only the abort marker hides them
        producer.abort_transaction()

        producer.begin_transaction()
        producer.send(topic, key=b"k", value=b"committed-2")
        producer.commit_transaction()
    finally:
        producer.close()

    committed = _assigned_consumer(kafka_bootstrap, topic, isolation_level="read_committed")
    uncommitted = _assigned_consumer(kafka_bootstrap, topic, isolation_level="read_uncommitted")
    try:
        visible = _consume(committed, lambda got: b"committed-2" in _values(got))
        raw = _consume(uncommitted, lambda got: b"committed-2" in _values(got))
    finally:
        committed.close()
        uncommitted.close()

    assert _values(visible) == [b"committed-1", b"committed-2"]
    assert _values(raw) == [b"committed-1", b"aborted", b"committed-2"]


@pytest.mark.integration
def test_offsets_sent_to_a_transaction_commit_and_abort_with_it(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    source = make_topic("eos-in", partitions=1)
    sink = make_topic("eos-out", partitions=1)
    group = f"eos-{uuid.uuid4().hex}"
    seed = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(4):
        seed.send(source, key=b"engine-1", value=f"reading-{i}".encode())
    seed.flush(timeout=DEADLINE_S)
    seed.close()

    consumer = KafkaConsumer(
        source,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **FAST_GROUP,
    )
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"test-eos-{uuid.uuid4().hex}"
    )
    source_tp = TopicPartition(source, 0)
    try:
        producer.init_transactions()
        records = _consume(consumer, lambda got: len(got) >= 4)

        # Commit: outputs for the first two readings plus the offset after them.
        producer.begin_transaction()
        for record in records[:2]:
            producer.send(sink, key=record.key, value=record.value.upper())
        producer.send_offsets_to_transaction(
            {source_tp: OffsetAndMetadata(records[1].offset + 1, "", -1)},
            consumer.group_metadata(),
        )
        producer.commit_transaction()
        assert consumer.committed(source_tp) == 2

        # Abort: neither the outputs nor the offsets of the last two readings survive.
        producer.begin_transaction()
        for record in records[2:]:
            producer.send(sink, key=record.key, value=record.value.upper())
        producer.send_offsets_to_transaction(
            {source_tp: OffsetAndMetadata(records[3].offset + 1, "", -1)},
            consumer.group_metadata(),
        )
        producer.abort_transaction()
        assert consumer.committed(source_tp) == 2
    finally:
        producer.close()
        consumer.close()

    reader = _assigned_consumer(kafka_bootstrap, sink, isolation_level="read_committed")
    try:
        # The aborted batch is followed by its abort marker; reaching the end offset means
        # everything a read_committed reader will ever see has been seen.
        end = reader.end_offsets([TopicPartition(sink, 0)])[TopicPartition(sink, 0)]
        outputs = _consume(
            reader, lambda got: reader.position(TopicPartition(sink, 0)) >= end, timeout_s=10
        )
    finally:
        reader.close()
    assert _values(outputs) == [b"READING-0", b"READING-1"]


def test_cluster_nodes_render_a_static_quorum_with_three_replicas(
    local_kafka_module: ModuleType, tmp_path: Path
) -> None:
    voters = [(1, 19093), (2, 19095), (3, 19097)]
    text = local_kafka_module.render_server_properties(
        port=19094, controller_port=19095, log_dir=tmp_path, node_id=2, voters=voters
    )
    props = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))

    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    )
    assert "controller.quorum.bootstrap.servers" not in props
    assert props["transaction.state.log.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["default.replication.factor"] == "3"


def test_a_sasl_ssl_listener_adds_its_port_mechanisms_and_users(
    local_kafka_module: ModuleType, tmp_path: Path
) -> None:
    listener = local_kafka_module.SaslSslListener(
        19099, tmp_path / "keystore.pem", scram_users={"svc": "pw"}, plain_users={"svc": "pw"}
    )
    text = local_kafka_module.render_server_properties(
        port=19092, controller_port=19093, log_dir=tmp_path, sasl_ssl=listener
    )
    props = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))

    assert "SASL_SSL://127.0.0.1:19099" in props["listeners"].split(",")
    assert "SASL_SSL:SASL_SSL" in props["listener.security.protocol.map"]
    assert props["ssl.keystore.type"] == "PEM"
    assert set(props["sasl.enabled.mechanisms"].split(",")) == {
        "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"}
    assert 'user_svc="pw"' in props["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert listener.format_args() == [
        "--add-scram", "SCRAM-SHA-256=[name=svc,password=pw]",
        "--add-scram", "SCRAM-SHA-512=[name=svc,password=pw]",
    ]
