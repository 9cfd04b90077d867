"""The benchmark's own Kafka broker (``deploy/kafka/local_kafka.py``) on free ports."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCAL_KAFKA_SCRIPT = ROOT / "deploy" / "kafka" / "local_kafka.py"
MODULE_NAME = "local_kafka"  # same name the tests and deploy/run_local.py use


def local_kafka() -> ModuleType:
    """The local_kafka script loaded as a module (it is a script, not a package)."""
    loaded = sys.modules.get(MODULE_NAME)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(MODULE_NAME, LOCAL_KAFKA_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def running_broker(bootstrap: str | None = None) -> Iterator[str]:
    """Yield a bootstrap address: ``bootstrap`` as given, or a fresh broker in a temp dir.

    The fresh broker is stopped (SIGTERM to its own pid) and its data dir removed on exit.
    """
    if bootstrap:
        yield bootstrap
        return
    with owned_broker() as broker:
        yield str(broker.bootstrap)


@contextlib.contextmanager
def owned_broker() -> Iterator[Any]:
    """A fresh broker in a temp dir (``local_kafka.LocalKafka``: ``bootstrap``, ``stop()``,
    ``start()``), stopped and removed on exit."""
    mod = local_kafka()
    mod.fetch_jars()
    with tempfile.TemporaryDirectory(prefix="vibewatch-bench-kafka-") as tmp:
        broker = mod.LocalKafka.on_free_ports(Path(tmp))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()
