"""A read-only view of every engine in the group, for the API of any instance.

Each instance owns the engines of its partitions; the others' latest committed state is in
the compacted changelog topic. This view tails the whole changelog (read_committed, no
consumer group) into its own :class:`EngineStore`, so ``GET /engines/{id}`` answers for any
engine from any instance.

Staleness: an engine owned by another instance is shown as of that instance's last commit
(``kafka.commit_interval_ms``, default 200 ms) plus this view's poll delay (about
``POLL_MS``); in a healthy group well under a second. Memory: one store row per engine of
the whole fleet (~3.7 KB each with the defaults), so 100k engines cost ~370 MB per instance;
turn it off with ``api.fleet_view=false`` to answer for local engines only.
"""

from __future__ import annotations

import logging
import threading

from kafka import TopicPartition

from service.config import KafkaSettings
from service.restore import changelog_consumer
from service.state import F64, EngineStore

log = logging.getLogger(__name__)

POLL_MS = 200


class FleetView:
    """Tails the changelog into ``store`` in a daemon thread until :meth:`stop`."""

    def __init__(self, settings: KafkaSettings, store: EngineStore, init_score: F64) -> None:
        self.settings = settings
        self.store = store
        self.init_score = init_score
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fleet-view", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tail()
            except Exception:
                log.exception("fleet view failed; retrying")
                self._stop.wait(2.0)

    def _tail(self) -> None:
        s = self.settings
        consumer = changelog_consumer(s, "view", max_poll_records=10_000)
        try:
            parts = None
            while parts is None and not self._stop.is_set():
                parts = consumer.partitions_for_topic(s.changelog_topic)
                if parts is None:
                    self._stop.wait(1.0)
            if parts is None:
                return
            tps = [TopicPartition(s.changelog_topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=POLL_MS).values():
                    for rec in records:
                        self._apply(rec.key.decode(), rec.value)
                if not self.caught_up.is_set() and all(
                    consumer.position(tp) >= end[tp] for tp in tps
                ):
                    self.caught_up.set()
        finally:
            consumer.close()

    def _apply(self, engine_id: str, value: bytes | None) -> None:
        if not value:
            self.store.forget(engine_id)
            return
        try:
            self.store.restore_row(engine_id, value, self.init_score)
        except ValueError:
            self.store.forget(engine_id)  # written by another model; not shown until re-written
