"""Pipelined commits and when changelog rows are sent (fakes for the Kafka clients)."""

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
from service.kafka.pipeline import _EAGER_ROWS, Pipeline
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


def _pipeline(engines: int) -> tuple[Pipeline, _Producer]:
    settings = load_settings(kafka={
        "changelog_topic": "cl", "commit_interval_ms": 100, "catch_up_commit_interval_ms": 500,
    }).kafka
    store = EngineStore(window=4, channels=1, model_state_size=2, score_state_size=1)
    store.slots_for([f"e{i}" for i in range(engines)], [0] * engines, np.zeros(1))
    processor = SimpleNamespace(store=store, statuses=[])
    pipeline = Pipeline(settings, SimpleNamespace(), processor,  # type: ignore[arg-type]
                        Metrics(CollectorRegistry()))
    producer = _Producer()
    pipeline._producer = producer
    pipeline._consumer = SimpleNamespace(group_metadata=lambda: "g")
    return pipeline, producer


def _handled(pipeline: Pipeline, slots: range, offset: int, age_s: float = 0.0) -> None:
    """What _handle leaves behind: changed rows and an offset, ``age_s`` seconds old."""
    p = pipeline._pending
    if not p.open or age_s:
        p.open, p.started = True, time.monotonic() - age_s
    p.dirty |= set(slots)
    p.offsets[TopicPartition("r", 0)] = offset


def test_keeping_up_sends_rows_before_the_commit_is_due() -> None:
    pipeline, producer = _pipeline(1000)
    _handled(pipeline, range(_EAGER_ROWS - 1), 10)
    pipeline._advance()
    assert producer.rows() == 0  # fewer than _EAGER_ROWS: they wait
    _handled(pipeline, range(_EAGER_ROWS), 20)
    pipeline._advance()
    assert producer.rows() == _EAGER_ROWS
    assert ("commit", None) not in producer.log
    _handled(pipeline, range(5), 30, age_s=0.2)  # changed again; the commit is due
    pipeline._advance()
    assert producer.rows() == _EAGER_ROWS + 5  # sent again: the last row wins
    assert producer.log[-2:] == [("offsets", {0: 30}), ("commit", None)]


def test_catching_up_rows_wait_for_the_longer_commit() -> None:
    pipeline, producer = _pipeline(1000)
    pipeline._catching_up = True
    _handled(pipeline, range(900), 10, age_s=0.2)  # past commit_interval_ms, not catch-up
    pipeline._advance()
    assert producer.rows() == 0
    _handled(pipeline, range(900), 20, age_s=0.6)
    pipeline._advance()
    assert producer.rows() == 900
    assert producer.log[-1] == ("commit", None)


def test_processing_goes_on_while_the_broker_commits() -> None:
    pipeline, producer = _pipeline(10)
    _handled(pipeline, range(3), 10, age_s=0.2)
    pipeline._advance()
    assert len(producer.commits) == 1
    begins = producer.log.count(("begin", None))
    _handled(pipeline, range(3, 6), 20, age_s=0.2)  # the next batch, commit in flight
    pipeline._advance()
    assert producer.log.count(("begin", None)) == begins  # no new transaction yet
    producer.commits[0].complete()
    pipeline._advance()  # acknowledged: the next transaction begins and commits
    assert producer.log.count(("begin", None)) == begins + 1
    assert producer.log[-2:] == [("offsets", {0: 20}), ("commit", None)]


def test_a_failed_commit_ends_the_session() -> None:
    pipeline, producer = _pipeline(10)
    _handled(pipeline, range(3), 10, age_s=0.2)
    pipeline._advance()
    producer.commits[0].complete(ProducerFencedError())
    with pytest.raises(ProducerFencedError):
        pipeline._advance()
