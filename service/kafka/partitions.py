"""Which readings partitions this instance owns, and the restore of their state.

kafka-python rebalances eagerly: every partition is revoked, then the new assignment
arrives. :class:`Partitions` commits on the revoke and *parks* the partitions: those
assigned again keep their engines (nothing else can have written them in between: a
partition has one owner per generation) and a restore in progress keeps its progress; only
the partitions that moved away are dropped (their committed rows handed to the fleet view)
and only new ones are restored. New partitions are held (paused) and queued by the
rebalance callback, which runs on the consumer's I/O thread and must stay short; the
pipeline's loop restores them a step at a time (:meth:`Partitions.restore_step`) and
resumes each once its state is in the store.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from service.classes import ClassStores
from service.kafka.session import Session
from service.metrics import Metrics

log = logging.getLogger(__name__)


class OwnershipListener(Protocol):
    """Told when this instance starts and stops owning partitions (the fleet view)."""

    def acquired(self, partitions: set[int]) -> None:
        """``partitions`` (possibly none, on an empty assignment) are restored and live here."""

    def released(
        self, partitions: set[int] | None, rows: list[tuple[str, bytes]] | None
    ) -> None:
        """``partitions`` (None: all) are no longer owned; ``rows`` are their engines'
        committed changelog values, or None when they could not be committed."""


class Partitions:
    """The assignment of one instance and the restores it needs.

    The rebalance callbacks (:meth:`on_revoked`, :meth:`on_assigned`, :meth:`on_lost`) take
    ``lock`` (the pipeline's processing lock), as does :meth:`restore_step`.
    """

    def __init__(
        self,
        stores: ClassStores,
        metrics: Metrics,
        lock: threading.RLock,
        *,
        ownership: OwnershipListener | None = None,
        on_moved: Callable[[set[TopicPartition]], None] | None = None,
        on_restored: Callable[[], None] | None = None,
    ) -> None:
        self.stores = stores
        self.metrics = metrics
        self.lock = lock
        self.ownership = ownership
        self.on_moved = on_moved
        self.on_restored = on_restored
        self.session: Session | None = None
        #: the current assignment (None: none received, or a rebalance is in progress)
        self.assigned: set[TopicPartition] | None = None
        #: assigned partitions whose state is not restored yet (queued or in progress)
        self.restoring: set[TopicPartition] = set()
        #: of those, the ones whose restore has not started (the loop starts them)
        self._queued: set[TopicPartition] = set()
        #: revoked partitions waiting for the new assignment
        self._parked: set[TopicPartition] = set()
        self._restore_began = 0.0

    def start(self, session: Session) -> None:
        """A new session: nothing assigned, nothing restored."""
        self.session = session
        self.assigned = None
        self.restoring, self._queued, self._parked = set(), set(), set()

    def stop(self) -> None:
        """The session ends; the callbacks of its closing consumer do nothing."""
        self.session = None
        self.assigned = None
        self.restoring, self._queued, self._parked = set(), set(), set()

    def restored(self) -> set[int]:
        """Owned partitions whose engines are all in the store (for checkpoints)."""
        return {tp.partition for tp in (self.assigned or self._parked) - self.restoring}

    # -- rebalance callbacks (on the consumer's I/O thread) ---------------------------------
    def on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Commit what is pending and park the partitions until the new assignment."""
        session = self.session
        if session is None:  # the consumer is closing: everything was committed
            return
        session.poller.forget(partitions)
        with self.lock:
            if session.committer.busy:
                session.committer.commit(session.consumer)
            self._parked |= partitions
            self.assigned = None
        log.info("revoked %s", sorted(p.partition for p in partitions))

    def on_lost(self, partitions: set[TopicPartition]) -> None:
        """Forced out of the group: drop what is pending (it cannot commit) and forget."""
        session = self.session
        if session is None:
            return
        session.poller.forget(partitions)
        with self.lock:
            session.committer.abandon()
            self._drop(partitions | self._parked, committed=False)
            self._parked = set()
            self.assigned = None
        log.warning("lost partitions %s", sorted(p.partition for p in partitions))

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """Drop the parked partitions that moved away; queue the new ones for their restore
        (held paused until the loop has restored them)."""
        if self.session is None:
            return
        with self.lock:
            moved = self._parked - partitions
            kept = self._parked & partitions
            self._parked = set()
            if moved & self.restoring:
                self._drop(moved & self.restoring, committed=False)
            if moved - self.restoring:
                self._drop(moved - self.restoring, committed=True)
            fresh = set(partitions) - kept - self.restoring
            self.assigned = set(partitions)
            if kept & self.restoring:  # still restoring: held again
                self.session.poller.hold(kept & self.restoring)
            if fresh:
                self.start_restore(fresh)
            elif self.ownership is not None:
                self.ownership.acquired({tp.partition for tp in partitions})
        log.info("assigned %s (%d kept, %d to restore)", sorted(p.partition for p in partitions),
                 len(kept), len(fresh))

    def _drop(self, partitions: set[TopicPartition], *, committed: bool) -> None:
        """Forget the engines of ``partitions``; hand their committed rows to the fleet view
        (``committed``) or tell it to read them again."""
        parts = {tp.partition for tp in partitions}
        if self.ownership is not None and parts:
            self.ownership.released(parts, self._committed_rows(parts) if committed else None)
        self.stores.drop_partitions(parts)  # their gauges go with them
        if self.session is not None:
            self.session.restorer.remove(parts)
            self.session.poller.forget(partitions)
        self.restoring -= partitions
        self._queued -= partitions
        for tp in partitions:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(str(tp.partition))
        if self.on_moved is not None:
            self.on_moved(partitions)

    def _committed_rows(self, partitions: set[int]) -> list[tuple[str, bytes]]:
        """Changelog values of every engine of ``partitions`` (just committed)."""
        return self.stores.committed_rows(partitions)

    # -- restore (on the pipeline's thread) ---------------------------------------------------
    def start_restore(self, partitions: set[TopicPartition]) -> None:
        """Hold ``partitions`` (paused) until the loop has restored their state."""
        assert self.session is not None
        self.session.poller.hold(partitions)
        self.restoring |= partitions
        self._queued |= partitions
        self._restore_began = time.monotonic()

    def restore_step(self) -> None:
        """Start the queued restores, or make one step of progress; resume what is done."""
        session = self.session
        if session is None or not self.restoring:
            return
        with self.lock:
            queued, self._queued = self._queued, set()
            if queued:
                done = session.restorer.add({tp.partition for tp in queued})
            else:
                done = session.restorer.step()
            if not done:
                return
            tps = {tp for tp in self.restoring if tp.partition in done}
            self.restoring -= tps
            session.poller.release(tps)
            if self.ownership is not None:
                self.ownership.acquired(done)
            self.metrics.engines_tracked.set(len(self.stores))
            if not self.restoring:
                took = time.monotonic() - self._restore_began
                self.metrics.restore_seconds.observe(took)
                log.info("restored: %d engines in %.3f s; processing", len(self.stores), took)
                if self.on_restored is not None:
                    self.on_restored()

    def progress(self) -> int:
        """Engines restored so far in this session (for readiness)."""
        return self.session.restorer.restored_engines if self.session is not None else 0


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python's rebalance listener, handing each callback to :class:`Partitions`."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.partitions.on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.partitions.on_assigned(set(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.partitions.on_lost(set(lost))
