"""Tails the committed anomalies topic, for ``GET /anomalies`` on every instance.

A group-less ``read_committed`` consumer (built with :mod:`service.kafka.clients`) reads
every partition of ``kafka.anomalies_topic``: at start the last ``2 * capacity`` offsets of
each partition (records and transaction markers), then whatever is committed after. Events
of an aborted or still open transaction are never read, so the API lists only committed
events, and after a restart it lists the same ones again. Each decoded batch goes to
``sink`` (the API's event index).

A record that is not an event this version understands is skipped with a warning (and
counted in :attr:`EventLog.skipped`): the topic is the service's own, so that means another
version wrote it. A Kafka failure closes the consumer; a new one continues from the
positions reached, after ``RETRY_S``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from service.config import KafkaSettings
from service.domain import AnomalyEvent, Status
from service.kafka import clients

log = logging.getLogger(__name__)

POLL_MS = 200
RETRY_S = 2.0


def decode_event(value: bytes) -> AnomalyEvent:
    """An anomalies-topic value (``service.kafka.outputs.event_record``) as an event.

    Raises ``ValueError`` (or ``KeyError``/``TypeError``) when it is not one.
    """
    doc = json.loads(value)
    return AnomalyEvent(
        engine_id=str(doc["engine_id"]),
        ts_ms=int(doc["ts_ms"]),
        previous=Status(doc["previous"]),
        status=Status(doc["status"]),
        score=float(doc["score"]),
        model_version=str(doc["model_version"]),
        cause=str(doc.get("cause", "score")),
        contributions=tuple(
            (str(c), float(v)) for c, v in (doc.get("contributions") or {}).items()
        ),
    )


class EventLog:
    """Reads the anomalies topic into ``sink`` on a daemon thread until :meth:`stop`."""

    def __init__(
        self, settings: KafkaSettings, capacity: int,
        sink: Callable[[list[AnomalyEvent]], None],
    ) -> None:
        self.settings = settings
        self.capacity = capacity
        self.sink = sink
        self.skipped = 0
        #: set once the records that were committed when the log started have been read
        self.loaded = threading.Event()
        self._positions: dict[TopicPartition, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)
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
            except Exception as exc:  # a broker problem: the next consumer continues
                log.warning("reading %s failed (%s); retrying in %.0f s",
                            self.settings.anomalies_topic, exc, RETRY_S)
                self._stop.wait(RETRY_S)

    def _tail(self) -> None:
        s = self.settings
        consumer = clients.consumer(
            s, "events", group_id=None, enable_auto_commit=False,
            isolation_level="read_committed", max_poll_records=5_000,
        )
        try:
            tps = self._assign(consumer)
            if not tps:
                return
            ends = consumer.end_offsets(tps)
            behind = dict(ends)
            while not self._stop.is_set():
                batch: list[AnomalyEvent] = []
                for tp, records in consumer.poll(timeout_ms=POLL_MS).items():
                    for rec in records:
                        self._decode_into(batch, rec.value, tp, rec.offset)
                    if records:
                        self._positions[tp] = records[-1].offset + 1
                if batch:
                    self.sink(batch)
                if behind:
                    behind = {tp: end for tp, end in behind.items()
                              if consumer.position(tp) < end}
                    if not behind:
                        self.loaded.set()
        finally:
            consumer.close()

    def _assign(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        """Assign every partition and seek: where the last consumer stopped, else to the last
        ``capacity`` records. Waits for the topic (the pipeline creates it)."""
        topic = self.settings.anomalies_topic
        parts: set[int] | None = None
        while not parts and not self._stop.is_set():
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                self._stop.wait(0.5)
        if not parts:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        fresh = [tp for tp in tps if tp not in self._positions]
        if fresh:
            begins = consumer.beginning_offsets(fresh)
            ends = consumer.end_offsets(fresh)
            # Twice the capacity: transaction markers take offsets too (one per transaction
            # with an event in the partition), so reading back ``capacity`` offsets would
            # find fewer events.
            for tp in fresh:
                self._positions[tp] = max(begins[tp], ends[tp] - 2 * self.capacity)
        for tp in tps:
            consumer.seek(tp, self._positions[tp])
        return tps

    def _decode_into(
        self, batch: list[AnomalyEvent], value: bytes | None, tp: TopicPartition, offset: int
    ) -> None:
        try:
            batch.append(decode_event(value or b""))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            self.skipped += 1
            log.warning("%s[%d]@%d is not an anomaly event (%s); skipped",
                        tp.topic, tp.partition, offset, exc)
