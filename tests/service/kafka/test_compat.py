"""The kafka-python private attributes ``service.kafka.compat`` relies on still exist.

Runs against real clients on the real broker: an upgrade of kafka-python that renames or
removes one of them fails here, naming it, instead of somewhere deep in the pipeline.
"""

from __future__ import annotations

import importlib.metadata

import pytest

from service.config import load_settings
from service.kafka import clients, compat

pytestmark = pytest.mark.integration


def test_the_pinned_kafka_python_is_installed() -> None:
    # pyproject pins the version this module was written against
    assert importlib.metadata.version("kafka-python") == "3.0.12"


def test_private_attributes_exist_on_real_clients(kafka_bootstrap: str) -> None:
    s = load_settings(kafka={"bootstrap_servers": kafka_bootstrap, "instance_id": "compat"}).kafka
    producer = clients.producer(s, "compat", transactional_id="compat-test")
    consumer = clients.consumer(s, "compat", group_id="compat-test")
    try:
        assert compat.missing_attributes(producer, consumer) == []
        producer.init_transactions()
        producer.begin_transaction()
        offsets_result, commit_result = compat.begin_commit(producer, {}, None)
        assert offsets_result is None
        compat.wake_sender(producer)
        assert commit_result.wait(timeout_ms=10_000) and commit_result.succeeded
        assert compat.group_stable(consumer) in (True, False)
        compat.unpark(consumer)  # nothing parked: a no-op
    finally:
        producer.close(timeout=5)
        consumer.close()


def test_missing_attributes_names_what_is_gone() -> None:
    class Bare:
        pass

    missing = compat.missing_attributes(Bare(), Bare())
    assert "_transaction_manager" in missing and "_coordinator" in missing
