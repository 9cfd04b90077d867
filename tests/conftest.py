"""Session-wide fixtures: one real Kafka broker for all integration tests.

The broker is started lazily: only when a test requests ``kafka_bootstrap`` (directly or
through ``make_topic``), so unit-only runs never start Java. Set ``KAFKA_BOOTSTRAP=host:port``
to run the integration tests against an existing broker instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Protocol

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError

ROOT = Path(__file__).resolve().parent.parent
LOCAL_KAFKA_SCRIPT = ROOT / "deploy" / "kafka" / "local_kafka.py"
# Same module name as deploy/run_local.py uses, so the script is loaded once per process.
LOCAL_KAFKA_MODULE = "local_kafka"
TOPIC_READY_TIMEOUT_MS = 30_000


class MakeTopic(Protocol):
    """Signature of the callable returned by the ``make_topic`` fixture."""

    def __call__(self, name_prefix: str, partitions: int = 3, compacted: bool = False) -> str:
        """Create ``<name_prefix>-<uuid>`` and return its name once its metadata is visible."""
        ...


@pytest.fixture(scope="session", autouse=True)
def _checkpoints_in_a_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Service instances the tests start keep their local checkpoints in pytest's temp dir,
    not in the user's ``~/.local/state`` (tests that need their own set it explicitly)."""
    key = "VIBEWATCH_STATE__CHECKPOINT_DIR"
    before = os.environ.get(key)
    os.environ[key] = str(tmp_path_factory.mktemp("checkpoints"))
    yield
    if before is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = before


@pytest.fixture(scope="session")
def local_kafka_module() -> ModuleType:
    """The ``deploy/kafka/local_kafka.py`` script, imported as a module.

    It is a standalone script rather than part of an installed package, hence importlib.
    """
    loaded = sys.modules.get(LOCAL_KAFKA_MODULE)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(LOCAL_KAFKA_MODULE, LOCAL_KAFKA_SCRIPT)
    assert spec is not None and spec.loader is not None, LOCAL_KAFKA_SCRIPT
    module = importlib.util.module_from_spec(spec)
    sys.modules[LOCAL_KAFKA_MODULE] = module  # dataclasses/pickling look modules up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kafka_bootstrap(
    local_kafka_module: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``host:port`` of a real broker, shared by the whole session.

    Uses ``KAFKA_BOOTSTRAP`` when set (the broker is then not started or stopped here);
    otherwise starts one local broker on free ports with its data (and logs: ``server.log``,
    ``broker.out``) under pytest's temp dir, and stops it at session end. A broker that
    fails to start errors every test that needs it, with the broker log tail in the error.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP", "").strip()
    if external:
        yield external
        return
    broker = local_kafka_module.LocalKafka.on_free_ports(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield str(broker.bootstrap)
    finally:
        broker.stop()


@pytest.fixture
def make_topic(kafka_bootstrap: str) -> Iterator[MakeTopic]:
    """Factory for fresh topics, so tests never see each other's records.

    ``make_topic(name_prefix, partitions=3, compacted=False)`` creates
    ``<name_prefix>-<uuid hex>`` (``cleanup.policy=compact`` when ``compacted``) and returns
    its name once every partition has a leader; it raises ``KafkaTimeoutError`` when that
    takes longer than 30 s. The topics are deleted after the test (best effort).
    """
    admin: KafkaAdminClient | None = None
    created: list[str] = []

    def _make(name_prefix: str, partitions: int = 3, compacted: bool = False) -> str:
        nonlocal admin
        if admin is None:
            admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="make-topic")
        name = f"{name_prefix}-{uuid.uuid4().hex}"
        configs = {"cleanup.policy": "compact"} if compacted else {}
        admin.create_topics(
            [NewTopic(name, num_partitions=partitions, topic_configs=configs)],
            timeout_ms=TOPIC_READY_TIMEOUT_MS,
        )
        created.append(name)
        admin.wait_for_topics([name], timeout_ms=TOPIC_READY_TIMEOUT_MS)
        return name

    yield _make
    if admin is not None:
        try:
            if created:
                admin.delete_topics(created)
        except KafkaError:
            pass  # cleanup only; a leftover uniquely named topic harms no other test
        finally:
            admin.close()
