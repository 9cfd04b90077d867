"""The real parts of the live scenario: a Kafka broker and ``vibewatch serve`` processes.

The broker is the project's own local one (``deploy/kafka/local_kafka.py``, in the
repository checkout, not in an installed package) unless ``--bootstrap`` names one. The
service runs as ``vibewatch serve`` in a child process, configured through its environment
(``VIBEWATCH_*``) as a deployment would configure it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from service.errors import UsageError

ROOT = Path(__file__).resolve().parents[3]
LOCAL_KAFKA = ROOT / "deploy" / "kafka" / "local_kafka.py"
VIBEWATCH = str(Path(sys.executable).parent / "vibewatch")
READY_TIMEOUT_S = 120.0


class ServiceFailedError(RuntimeError):
    """The service exited or did not become ready; the message has its log's tail."""


def _local_kafka() -> ModuleType:
    """``deploy/kafka/local_kafka.py`` loaded as a module (the tests and bench do the same)."""
    loaded = sys.modules.get("local_kafka")
    if loaded is not None:
        return loaded
    if not LOCAL_KAFKA.is_file():
        raise UsageError(f"no local broker script at {LOCAL_KAFKA} (it comes with the "
                         "repository checkout): pass --bootstrap HOST:PORT of a broker")
    spec = importlib.util.spec_from_file_location("local_kafka", LOCAL_KAFKA)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_kafka"] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    """Yield a bootstrap address: ``bootstrap`` as given, or a fresh local broker on free
    ports in a temporary directory, stopped and removed on exit."""
    if bootstrap:
        yield bootstrap
        return
    lk = _local_kafka()
    lk.fetch_jars()
    with tempfile.TemporaryDirectory(prefix="vibewatch-live-kafka-") as tmp:
        local = lk.LocalKafka.on_free_ports(Path(tmp))
        local.start()
        try:
            yield str(local.bootstrap)
        finally:
            local.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_env(bootstrap: str, prefix: str, port: int, token: str,
                checkpoints: Path) -> dict[str, str]:
    """The environment of one scenario run's service: its own topics, group and instance
    id, API port and bearer token, and a local checkpoint directory for its restarts.
    Every other setting is the caller's (``VIBEWATCH_*`` in the environment) or the
    default."""
    return {
        **os.environ,
        "VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "VIBEWATCH_KAFKA__READINGS_TOPIC": f"{prefix}.readings",
        "VIBEWATCH_KAFKA__DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
        "VIBEWATCH_KAFKA__CONTROL_TOPIC": f"{prefix}.control",
        "VIBEWATCH_KAFKA__ANOMALIES_TOPIC": f"{prefix}.anomalies",
        "VIBEWATCH_KAFKA__CHANGELOG_TOPIC": f"{prefix}.changelog",
        "VIBEWATCH_KAFKA__GROUP_ID": f"{prefix}.group",
        "VIBEWATCH_KAFKA__INSTANCE_ID": prefix,
        "VIBEWATCH_API__PORT": str(port),
        "VIBEWATCH_API__TOKEN": token,
        "VIBEWATCH_STATE__CHECKPOINT_DIR": str(checkpoints),
    }


class ServeProcess:
    """``vibewatch serve`` as a child process on a fixed port, restartable; its output is
    appended to ``log_path``."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.port = int(self.env["VIBEWATCH_API__PORT"])
        self.token = self.env["VIBEWATCH_API__TOKEN"]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if shutil.which(VIBEWATCH) is None:
            raise UsageError(f"{VIBEWATCH} not found: install vibewatch into this environment")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([VIBEWATCH, "serve"], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Return once ``/readyz`` answers 200; ServiceFailedError if the process exits or
        ``timeout_s`` passes first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServiceFailedError(f"vibewatch serve exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.get("/readyz")[0] == 200:
                    return
            time.sleep(0.1)
        raise ServiceFailedError(f"vibewatch serve not ready after {timeout_s:.0f} s:\n"
                                 f"{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit; returns the exit code (killed after
        ``timeout_s``)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, Any]:
        """``(HTTP status, JSON body)``; OSError when nothing answers."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout_s) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def post(self, path: str, timeout_s: float = 15.0) -> tuple[int, Any]:
        """POST with the bearer token; ``(HTTP status, JSON body)``."""
        req = urllib.request.Request(self.base + path, data=b"", method="POST",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every committed record of ``topic`` (read_committed), in partition and offset order
    (the events of one engine, keyed by it, are in their order)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                             enable_auto_commit=False, group_id=None)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took more than {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(records)
        out.sort(key=lambda r: (r.partition, r.offset))
        return out
    finally:
        consumer.close()
