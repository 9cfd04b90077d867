"""The anomalies topic as /anomalies sees it: committed events only, back after a restart."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaProducer

from service.api.event_index import EventIndex
from service.config import KafkaSettings
from service.domain import AnomalyEvent, Status
from service.kafka.event_log import EventLog
from service.kafka.outputs import event_record
from tests.conftest import MakeTopic
from tests.support import wait_for

pytestmark = pytest.mark.integration
T0 = 1_795_608_000_000


def _event(i: int) -> AnomalyEvent:
    return AnomalyEvent(f"engine-{i % 3}", T0 + 1000 * i, Status.NORMAL, Status.ALARM, 0.9,
                        "m-1")


def _produce(bootstrap: str, topic: str, events: list[AnomalyEvent], *, commit: bool) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap,
                             transactional_id=f"test-{uuid.uuid4().hex}")
    producer.init_transactions()
    producer.begin_transaction()
    for e in events:
        key, value, _ = event_record(e)
        producer.send(topic, key=key, value=value)
    producer.flush()
    if commit:
        producer.commit_transaction()
    else:
        producer.abort_transaction()
    producer.close()


def _log(bootstrap: str, topic: str, capacity: int) -> tuple[EventLog, EventIndex]:
    index = EventIndex(capacity)
    log = EventLog(KafkaSettings(bootstrap_servers=bootstrap, anomalies_topic=topic),
                   capacity, index.add)
    log.start()
    return log, index


def test_committed_events_only_and_again_after_a_restart(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = make_topic("anomalies", partitions=3)
    _produce(kafka_bootstrap, topic, [_event(i) for i in range(10)], commit=True)
    _produce(kafka_bootstrap, topic, [_event(i) for i in range(10, 20)], commit=False)
    log, index = _log(kafka_bootstrap, topic, capacity=100)
    try:
        wait_for(log.loaded.is_set, 60, "the event log to read the topic")
        assert [e.ts_ms for e in index.query(limit=100).events] == [
            T0 + 1000 * i for i in reversed(range(10))]
        _produce(kafka_bootstrap, topic, [_event(i) for i in range(20, 25)], commit=True)
        wait_for(lambda: len(index) == 15, 30, "new committed events")
        # engine-1: events 1, 4, 7 and 22 (10 to 19 were aborted)
        assert index.query(engine_id="engine-1", limit=100).total == 4
    finally:
        log.stop()
    # a restart (a new log) reads the same committed events back, newest first
    again, index2 = _log(kafka_bootstrap, topic, capacity=100)
    try:
        wait_for(again.loaded.is_set, 60, "the restarted log to read the topic")
        assert index2.query(limit=100).events == index.query(limit=100).events
        assert again.skipped == 0
    finally:
        again.stop()


def test_capacity_keeps_the_newest(kafka_bootstrap: str, make_topic: MakeTopic) -> None:
    topic = make_topic("anomalies", partitions=1)
    _produce(kafka_bootstrap, topic, [_event(i) for i in range(30)], commit=True)
    log, index = _log(kafka_bootstrap, topic, capacity=8)
    try:
        wait_for(log.loaded.is_set, 60, "the event log to read the topic")
        got = index.query(limit=100)
        assert got.total == 8 and [e.ts_ms for e in got.events] == [
            T0 + 1000 * i for i in reversed(range(22, 30))]
    finally:
        log.stop()
