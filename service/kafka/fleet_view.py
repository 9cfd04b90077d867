"""A read-only view of the engines of other instances, for the API of any instance.

Each instance owns the engines of its partitions; the others' latest committed state is in
the compacted changelog topic. This view tails the changelog partitions this instance does
*not* own (read_committed, no consumer group) into its own :class:`EngineStore`, so
``GET /engines/{id}`` answers for any engine from any instance, and an engine's row is held
once per instance: in the pipeline's store if owned here, in this view's store if not.

Ownership follows the pipeline (it calls :meth:`FleetView.acquired` and
:meth:`FleetView.released`, the :class:`service.kafka.partitions.OwnershipListener` interface):

* until the pipeline's first assignment is known, the view reads nothing;
* partitions the pipeline has restored (``acquired``) are no longer tailed and their engines
  leave the view's store (the pipeline's store answers for them);
* partitions revoked from the pipeline after a commit (``released`` with their rows) are
  seeded with the pipeline's last committed rows and tailed from the changelog's end, so the
  API never loses them during a rebalance; partitions lost without a commit (``released``
  without rows: forced out of the group, or a failed Kafka session) are re-read from the
  beginning of the changelog.

Staleness: an engine owned by another instance is shown as of that instance's last commit
(``kafka.commit_interval_ms``, default 200 ms) plus this view's poll delay (about
``POLL_MS``); in a healthy group well under a second. Memory: one store row per engine owned
by the *other* instances (~3.7 KB each with the defaults); a single instance holds none.
Turn it off with ``api.fleet_view=false`` to answer for local engines only.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition

from service.classes import ClassStores
from service.config import KafkaSettings
from service.kafka.clients import changelog_consumer
from service.kafka.restore import apply_record

log = logging.getLogger(__name__)

POLL_MS = 200
#: longest a revoke waits for the view to take over the revoked engines' rows
HANDOVER_WAIT_S = 2.0


@dataclass
class _Change:
    """An ownership change for the view thread to apply, in order."""

    acquired: frozenset[int]
    released: frozenset[int] | None  #: None: every partition this instance owned
    rows: list[tuple[str, bytes]] | None  #: committed rows of the released partitions
    done: threading.Event = field(default_factory=threading.Event)


class FleetView:
    """Tails the changelog partitions of other instances into ``stores`` (one per engine
    class) until :meth:`stop`."""

    def __init__(self, settings: KafkaSettings, stores: ClassStores) -> None:
        self.settings = settings
        self.stores = stores
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._changes: list[_Change] = []
        self._wake = threading.Event()
        #: partitions owned by this instance's pipeline; None until its first assignment
        self._owned: set[int] | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="fleet-view", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    # -- ownership (called from the pipeline thread) ---------------------------------------
    def acquired(self, partitions: set[int]) -> None:
        """The pipeline has restored ``partitions`` (possibly none): stop showing them here."""
        self._push(_Change(frozenset(partitions), frozenset(), None))

    def released(
        self, partitions: set[int] | None, rows: list[tuple[str, bytes]] | None
    ) -> None:
        """The pipeline no longer owns ``partitions`` (None: all it owned).

        ``rows``: the engines' committed changelog values at the moment they were revoked,
        shown at once; None when the pipeline could not commit (they are re-read instead).
        """
        change = _Change(
            frozenset(), None if partitions is None else frozenset(partitions), rows
        )
        self._push(change)
        # The pipeline drops its rows after this returns: wait (briefly) until they are
        # shown here, so the API does not lose those engines during a rebalance.
        if self._thread is not None and not self._stop.is_set() and rows:
            change.done.wait(HANDOVER_WAIT_S)

    def _push(self, change: _Change) -> None:
        with self._lock:
            self._changes.append(change)
        self._wake.set()

    # -- the view thread -------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._tail()
                backoff = 1.0
            except Exception as exc:  # the broker away, mostly: the pipeline says more
                log.warning("fleet view: %s: %s; retrying in %.0f s", type(exc).__name__, exc,
                            backoff, exc_info=log.isEnabledFor(logging.DEBUG))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _tail(self) -> None:
        s = self.settings
        consumer = changelog_consumer(
            s, "view", max_poll_records=2_000, fetch_max_bytes=8 << 20,
        )
        try:
            # A topic just created can answer with no partitions yet: wait for them.
            parts: set[int] | None = None
            while not parts and not self._stop.is_set():
                parts = consumer.partitions_for_topic(s.changelog_topic)
                if not parts:
                    self._stop.wait(0.5)
            if not parts:
                return
            every = set(parts)
            tailed: set[int] | None = None  # None: nothing assigned yet in this consumer
            while not self._stop.is_set():
                changed = self._apply_changes(consumer, every, tailed)
                if changed is not None:
                    tailed = changed
                if not tailed:
                    self._wake.wait(POLL_MS / 1000)
                    continue
                for records in consumer.poll(timeout_ms=POLL_MS).values():
                    for rec in records:
                        self._apply(rec.key.decode(), rec.value)
        finally:
            consumer.close()

    def _tps(self, partitions: set[int]) -> list[TopicPartition]:
        return [TopicPartition(self.settings.changelog_topic, p) for p in sorted(partitions)]

    def _apply_changes(
        self, consumer: KafkaConsumer, every: set[int], tailed: set[int] | None
    ) -> set[int] | None:
        """Apply queued ownership changes to the consumer; the new tailed set, or None.

        ``tailed`` None: this consumer has no assignment yet (start, or after a failure):
        once ownership is known, every partition not owned is read from the beginning.
        """
        with self._lock:
            changes, self._changes = self._changes, []
            self._wake.clear()
        if not changes and (tailed is not None or self._owned is None):
            return None
        owned = set(self._owned or ())
        first = tailed is None
        tailed = tailed or set()
        from_end: set[int] = set()
        for c in changes:
            released = set(owned if c.released is None else c.released & owned)
            owned = (owned - released) | c.acquired
            if c.acquired:
                self.stores.drop_partitions(set(c.acquired))
            if c.rows is not None:
                for engine_id, value in c.rows:
                    self._apply(engine_id, value)
                from_end |= released
            else:
                from_end -= released
            from_end -= c.acquired
            c.done.set()
        self._owned = owned
        new = every - owned
        if new == tailed and not first:
            return None
        if not new:
            consumer.unsubscribe()
            return new
        consumer.assign(self._tps(new))
        reread = (new - tailed - from_end) if not first else new
        # Explicit offsets rather than seek_to_beginning/seek_to_end: kafka-python 3.0
        # loses a pending offset reset when the assignment changes again before the next
        # poll (the partition is then never fetched), and resolving it with position() was
        # seen to block for a minute while another instance left the group.
        if reread:
            for tp, offset in consumer.beginning_offsets(self._tps(reread)).items():
                consumer.seek(tp, offset)
        if new - tailed - reread:
            for tp, offset in consumer.end_offsets(self._tps(new - tailed - reread)).items():
                consumer.seek(tp, offset)
        log.info("fleet view tails changelog partitions %s", sorted(new))
        return new

    def _apply(self, engine_id: str, value: bytes | None) -> None:
        # A row written by another model is not shown until its owner re-writes it.
        apply_record(self.stores, engine_id, value)
