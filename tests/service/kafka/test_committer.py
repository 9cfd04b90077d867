"""Pipelined commits, when changelog rows are sent, and counting only what committed
(fakes for the Kafka clients)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from kafka import TopicPartition
from kafka.errors import ProducerFencedError
from prometheus_client import CollectorRegistry

from service.config import load_settings
from service.kafka.committer import EAGER_ROWS, Committer
from service.metrics import Metrics
from service.state import EngineStore


class _Result:
    """kafka-python's TransactionalRequestResult, completed by the test."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.exception: Exception | None = None

    def complete(self, error: Exception | None = None) -> None:
        self.exception = error
        self._done.set()

    @property
    def is_done(self) -> bool:
        return self._done.is_set()

    @property
    def failed(self) -> bool:
        return self.is_done and self.exception is not None

    def wait(self, timeout_ms: float) -> bool:
        return self._done.wait(timeout_ms / 1000)


class _Producer:
    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.commits: list[_Result] = []
        self._sender = SimpleNamespace(wakeup=lambda: None)
        self._transaction_manager = SimpleNamespace(
            send_offsets_to_transaction=self._offsets, begin_commit=self._begin_commit
        )

    def begin_transaction(self) -> None:
        self.log.append(("begin", None))

    def abort_transaction(self) -> None:
        self.log.append(("abort", None))

    def send(self, topic: str, **kw: Any) -> None:
        self.log.append((topic, kw["key"]))

    def _offsets(self, offsets: dict[TopicPartition, Any], group: Any) -> _Result:
        self.log.append(("offsets", {tp.partition: o.offset for tp, o in offsets.items()}))
        done = _Result()
        done.complete()
        return done

    def _begin_commit(self) -> _Result:
        self.log.append(("commit", None))
        self.commits.append(_Result())
        return self.commits[-1]

    def rows(self) -> int:
        return sum(1 for topic, _ in self.log if topic == "cl")


class _Consumer:
    def group_metadata(self) -> str:
        return "g"


def _committer(engines: int) -> tuple[Committer, _Producer, EngineStore, Metrics]:
    settings = load_settings(kafka={
        "changelog_topic": "cl", "commit_interval_ms": 100, "catch_up_commit_interval_ms": 500,
    }).kafka
    store = EngineStore(window=4, channels=1, model_state_size=2, score_state_size=1)
    store.slots_for([f"e{i}" for i in range(engines)], [0] * engines, np.zeros(1))
    metrics = Metrics(CollectorRegistry())
    committer = Committer(settings, store, metrics)
    producer = _Producer()
    committer.producer = producer
    return committer, producer, store, metrics


def _handled(committer: Committer, slots: range, offset: int, age_s: float = 0.0) -> None:
    """What the pipeline's _handle leaves behind: changed rows and an offset, ``age_s``
    seconds old."""
    p = committer.pending
    if not p.open or age_s:
        p.open, p.started = True, time.monotonic() - age_s
    p.dirty_of("default").update(slots)
    p.offsets[TopicPartition("r", 0)] = offset
    p.readings["processed"] += len(slots)


C = _Consumer()


def test_keeping_up_sends_rows_before_the_commit_is_due() -> None:
    committer, producer, _, _ = _committer(1000)
    _handled(committer, range(EAGER_ROWS - 1), 10)
    committer.advance(C, False)
    assert producer.rows() == 0  # fewer than EAGER_ROWS: they wait
    _handled(committer, range(EAGER_ROWS), 20)
    committer.advance(C, False)
    assert producer.rows() == EAGER_ROWS
    assert ("commit", None) not in producer.log
    _handled(committer, range(5), 30, age_s=0.2)  # changed again; the commit is due
    committer.advance(C, False)
    assert producer.rows() == EAGER_ROWS + 5  # sent again: the last row wins
    assert producer.log[-2:] == [("offsets", {0: 30}), ("commit", None)]


def test_catching_up_rows_wait_for_the_longer_commit() -> None:
    committer, producer, _, _ = _committer(1000)
    _handled(committer, range(900), 10, age_s=0.2)  # past commit_interval_ms, not catch-up
    committer.advance(C, True)
    assert producer.rows() == 0
    _handled(committer, range(900), 20, age_s=0.6)
    committer.advance(C, True)
    assert producer.rows() == 900
    assert producer.log[-1] == ("commit", None)


def test_processing_goes_on_while_the_broker_commits() -> None:
    committer, producer, _, _ = _committer(10)
    _handled(committer, range(3), 10, age_s=0.2)
    committer.advance(C, False)
    assert len(producer.commits) == 1
    begins = producer.log.count(("begin", None))
    _handled(committer, range(3, 6), 20, age_s=0.2)  # the next batch, commit in flight
    committer.advance(C, False)
    assert producer.log.count(("begin", None)) == begins  # no new transaction yet
    producer.commits[0].complete()
    # acknowledged: the next transaction begins and commits
    committer.advance(C, False)
    assert producer.log.count(("begin", None)) == begins + 1
    assert producer.log[-2:] == [("offsets", {0: 20}), ("commit", None)]


def test_a_failed_commit_ends_the_session() -> None:
    committer, producer, _, _ = _committer(10)
    _handled(committer, range(3), 10, age_s=0.2)
    committer.advance(C, False)
    producer.commits[0].complete(ProducerFencedError())
    with pytest.raises(ProducerFencedError):
        committer.advance(C, False)


def _processed(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "vibewatch_readings_total", {"outcome": "processed"}
    )
    assert value is not None
    return value


def test_work_is_counted_once_acknowledged_and_never_when_aborted() -> None:
    committer, producer, store, metrics = _committer(10)
    store.seq = 7
    _handled(committer, range(3), 10, age_s=0.2)
    committer.pending.seq = 7
    committer.advance(C, False)
    assert _processed(metrics) == 0 and store.committed_seq == 0  # in flight
    producer.commits[0].complete()
    committer.advance(C, False)
    assert _processed(metrics) == 3 and store.committed_seq == 7
    _handled(committer, range(5), 20)
    committer.pending.seq = 8
    committer.advance(C, False)  # begins the transaction
    committer.abort()
    assert _processed(metrics) == 3 and store.committed_seq == 7
    assert not committer.busy


def test_evicted_engines_get_tombstones_before_rows() -> None:
    committer, producer, _, _ = _committer(10)
    _handled(committer, range(2), 10, age_s=0.2)
    committer.pending.tombstones.append(("gone", 0))
    committer.advance(C, False)
    keys = [key for topic, key in producer.log if topic == "cl"]
    assert keys == [b"gone", b"e0", b"e1"]
