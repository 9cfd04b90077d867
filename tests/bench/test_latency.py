"""The latency benchmark's Java load generator sends valid readings at its rate."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from bench.data import create_topic
from bench.latency import java_producer
from service.ingest import MessageDecoder

pytestmark = pytest.mark.integration


def test_rate_producer_sends_contract_readings_at_its_rate(kafka_bootstrap: str) -> None:
    topic = f"bench-rate-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, partitions=2)
    t_start = time.time() + 3.0
    proc = java_producer(kafka_bootstrap, topic, 400, 7, 2.0, t_start)
    if proc is None:
        pytest.fail("java or the Kafka client jar is missing (make test installs both)")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert int(out) == 800

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in (0, 1)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records: list[Any] = []
    deadline = time.monotonic() + 30
    while len(records) < 800 and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=200).values():
            records.extend(recs)
    consumer.close()
    assert len(records) == 800

    decoder = MessageDecoder(("vibration",))
    readings = [r for rec in records for r in decoder.decode(rec.value, rec.key)]
    assert len(readings) == 800
    assert {r.engine_id for r in readings} == {f"engine-{i:05d}" for i in range(7)}
    stamps = sorted(r.ts_ms for r in readings)
    # Stamped when sent, never before the start time, and paced over two seconds (the
    # start itself may slip when compiling the source on a loaded machine takes longer
    # than the three seconds of lead).
    assert t_start * 1000 - 50 <= stamps[0]
    assert 1500 <= stamps[-1] - stamps[0] <= 2500
