"""Model reloads for the whole consumer group, on a small compacted control topic.

``POST /model/reload`` on any instance checks the artifact there, then publishes a reload
record (key: the engine class; value: JSON ``{"id", "class", "artifact_dir", "ts"}``) to
``kafka.control_topic``. Every instance reads that topic whole, without a consumer group
(:class:`ModelControl`), and applies each record: it loads the artifact and swaps the
class's model, re-warming its engines; an instance that cannot load it keeps its model
and says so (an error log line, ``vibewatch_model_reload_failures_total{class}``, and
``reload_error`` in ``GET /model``).

Why a topic of its own, not a command on the readings topic: a readings-topic command
reaches the owners of the partitions it is written to, so to reach every instance it must
go to every partition; an instance that owns no partition (more instances than partitions,
or one joining later) never sees it, and one that owns several applies it several times.
The control topic reaches every instance once, whatever it owns, and being compacted with
one record per class it also tells an instance that starts later (or restarts) which
artifact the group runs now: an instance applies the latest reload of every class before
its pipeline processes anything (up to ``kafka.timeout_ms``), so it does not restore rows
written by the reloaded model into the configured one. The latest reload of a class
therefore wins over ``model.artifact_dir`` / ``model.classes`` at start-up; reload the
configured artifact to go back. Reloads are not exactly-once with the readings (they are
not engine state): between two instances applying one, each engine is scored by the model
of the instance that owns it, and its row names that model.

The artifact path must be readable on every instance (a shared volume or the image).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from service.config import KafkaSettings
from service.errors import BrokerUnavailableError
from service.kafka import clients
from service.kafka.topics import ensure_control_topic

log = logging.getLogger(__name__)

POLL_MS = 200


@dataclass(frozen=True)
class Reload:
    """One reload request from the control topic."""

    request_id: str
    class_name: str
    artifact_dir: Path
    ts_ms: int


def reload_record(r: Reload) -> tuple[bytes, bytes]:
    """``(key, value)`` of a reload on the control topic."""
    doc = {"id": r.request_id, "class": r.class_name, "artifact_dir": str(r.artifact_dir),
           "ts": r.ts_ms}
    return r.class_name.encode(), json.dumps(doc).encode()


def decode_reload(value: bytes | None) -> Reload | None:
    """The reload a control record holds, or None (logged) when it is not one."""
    try:
        doc = json.loads(value or b"")
        return Reload(str(doc["id"]), str(doc["class"]), Path(doc["artifact_dir"]),
                      int(doc["ts"]))
    except (ValueError, KeyError, TypeError):
        log.warning("control record %r is not a model reload: ignored", (value or b"")[:200])
        return None


class ModelControl:
    """Publishes reloads and applies every reload of the control topic (a thread).

    ``apply(class_name, artifact_dir)`` is called on the control thread for each reload
    this instance did not publish itself (it applies its own at once), the newest per
    class first when catching up; it must not raise.
    """

    def __init__(self, settings: KafkaSettings, apply: Callable[[str, Path], None]) -> None:
        self.settings = settings
        self.apply = apply
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        #: request ids this instance published (and applied itself)
        self._own: set[str] = set()

    # -- publishing (API threads) ----------------------------------------------------------
    def publish(self, class_name: str, artifact_dir: Path, timeout_s: float = 10.0) -> str:
        """Send a reload of ``class_name`` to the group; returns its request id once the
        broker has it. Raises BrokerUnavailableError when it cannot be sent."""
        r = Reload(uuid.uuid4().hex, class_name, artifact_dir, int(time.time() * 1000))
        key, value = reload_record(r)
        with self._lock:
            self._own.add(r.request_id)
            try:
                if self._producer is None:
                    self._producer = clients.producer(self.settings, "control", acks="all",
                                                      enable_idempotence=True)
                ensure_control_topic(self.settings)
                future = self._producer.send(self.settings.control_topic, key=key,
                                             value=value)
                future.get(timeout=timeout_s)
            except Exception as exc:
                self._own.discard(r.request_id)
                raise BrokerUnavailableError(
                    f"the model reload could not be sent to {self.settings.control_topic}: "
                    f"{exc}"
                ) from exc
        return r.request_id

    # -- the control thread ----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="model-control",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None

    def wait_caught_up(self, timeout_s: float, stop: threading.Event) -> bool:
        """Wait until the reloads published before start-up are applied (or ``timeout_s``
        passed, or ``stop`` is set); whether they are."""
        deadline = time.monotonic() + timeout_s
        while not self.caught_up.is_set() and not stop.is_set():
            if time.monotonic() > deadline:
                log.warning("the model reloads on %s were not read within %.0f s; "
                            "processing with the configured models meanwhile",
                            self.settings.control_topic, timeout_s)
                return False
            self.caught_up.wait(0.05)
        return self.caught_up.is_set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._tail()
                return
            except Exception as exc:  # the broker away, mostly: the pipeline says more
                log.warning("model control: %s: %s; retrying in %.1f s", type(exc).__name__,
                            exc, backoff, exc_info=log.isEnabledFor(logging.DEBUG))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _tail(self) -> None:
        s = self.settings
        ensure_control_topic(s)
        consumer: KafkaConsumer = clients.changelog_consumer(s, "control")
        try:
            parts: set[int] | None = None
            while not parts and not self._stop.is_set():
                parts = consumer.partitions_for_topic(s.control_topic)
                if not parts:
                    self._stop.wait(0.2)
            if not parts:
                return
            tps = [TopicPartition(s.control_topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            begin, ends = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, begin[tp])
            if not self.caught_up.is_set():
                self._catch_up(consumer, ends)
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=POLL_MS).values():
                    for rec in records:
                        self._apply(decode_reload(rec.value))
        finally:
            consumer.close()

    def _catch_up(self, consumer: KafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        """Read up to ``ends`` and apply the newest reload of each class."""
        latest: dict[str, Reload] = {}
        while not self._stop.is_set() and any(
            consumer.position(tp) < end for tp, end in ends.items()
        ):
            for records in consumer.poll(timeout_ms=POLL_MS).values():
                for rec in records:
                    r = decode_reload(rec.value)
                    if r is not None:
                        latest[r.class_name] = r
        for r in latest.values():
            self._apply(r)
        if latest:
            log.info("applied the group's latest model reloads for classes %s",
                     sorted(latest))
        self.caught_up.set()

    def _apply(self, r: Reload | None) -> None:
        if r is None:
            return
        with self._lock:
            if r.request_id in self._own:
                return
        log.info("model reload of class %s from %s requested by another instance",
                 r.class_name, r.artifact_dir)
        self.apply(r.class_name, r.artifact_dir)
