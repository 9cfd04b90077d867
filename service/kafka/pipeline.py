"""The consume-process-commit loop: sessions, readiness and failures.

Exactly-once (``kafka.exactly_once``, the default): everything a commit interval produced
and the consumed offsets are committed in one Kafka transaction (:mod:`.committer`). On
assignment the state of each new partition is restored (:mod:`.partitions`,
:mod:`.restore`: a local checkpoint, then the changelog's tail) a step at a time in this
loop, with the partition paused, while the group consumer keeps polling: a large restore
never trips the group. The consumer is a static group member (``group_instance_id`` =
``kafka.instance_id``), so a restarted instance gets its partitions back without a
rebalance.

Failures are handled by class (:mod:`.errors`): one message's fault becomes a dead letter
(:mod:`.handling`); a batch whose processing raises is rolled back to the last commit and
processed again one message at a time, so the message at fault becomes a dead letter and
nothing else is lost; a broken session (broker away, timeout) ends, readiness turns false,
and a new session starts after a jittered backoff; fatal failures stop the process after
``kafka.max_fatal_restarts`` within :data:`FATAL_WINDOW_S`.

kafka-python runs the rebalance callbacks on the consumer's I/O thread and they take the
processing lock, so this loop never calls a consumer method that waits for that thread
while it holds the lock.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from service.config import Settings
from service.domain import AnomalyEvent
from service.engine_classes import EngineClasses
from service.errors import BrokerUnavailableError
from service.kafka import clients, compat
from service.kafka.batches import BatchPoller
from service.kafka.committer import Committer, Pending
from service.kafka.errors import FailureClass, classify, explain
from service.kafka.handling import BatchHandler
from service.kafka.partitions import Listener, OwnershipListener, Partitions
from service.kafka.restore import Applied, Restorer
from service.kafka.security import explain_client_error
from service.kafka.session import Session
from service.kafka.topics import ensure_topics
from service.kafka.upkeep import Upkeep
from service.metrics import Metrics
from service.model.tuning import tune_process
from service.views import status_counts

log = logging.getLogger(__name__)

#: Largest pause between sessions (jittered exponential backoff from 0.25 s).
MAX_BACKOFF_S = 4.0
#: Fatal failures count towards kafka.max_fatal_restarts for this long (two instances with
#: one id fence each other in turn, with successful commits in between: still fatal).
FATAL_WINDOW_S = 600.0


class Pipeline:
    """Runs the consume-process-commit loop in the calling thread until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        classes: EngineClasses,
        metrics: Metrics,
        *,
        ownership: OwnershipListener | None = None,
        on_events: Callable[[list[AnomalyEvent]], None] | None = None,
    ) -> None:
        self.settings = settings.kafka
        self.classes = classes
        self.stores = classes.stores
        self.metrics = metrics
        self.on_events = on_events
        self.ready = threading.Event()
        #: Set when the pipeline gave up (fatal failures in a row): what to change.
        self.failure: str | None = None
        # Held while processing; rebalance callbacks and model swaps wait for it.
        self.processing_lock = threading.RLock()
        self.handler = BatchHandler(settings.kafka, settings.state, classes, metrics)
        self.partitions = Partitions(
            self.stores, metrics, self.processing_lock, ownership=ownership,
            on_moved=self.handler.forget, on_restored=self._refresh_gauges,
        )
        self.upkeep = Upkeep(settings.kafka, settings.state, self.stores, metrics)
        self._session_: Session | None = None
        #: partitions rolled back, to seek to their committed offsets
        self._rewind: set[TopicPartition] = set()
        self._status = "starting"
        #: monotonic times of the recent fatal failures (see run)
        self._fatal: collections.deque[float] = collections.deque()
        self._next_check = 0.0
        self._unstable_since: float | None = None

    # -- readiness -----------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """Whether this instance is ready (it owns its assigned partitions and has restored
        them) and, in words, what it is doing or waiting for."""
        if self.failure is not None:
            return False, f"stopped: {self.failure}"
        parts = self.partitions
        if self._session_ is None or parts.assigned is None:
            return False, self._status
        restoring = sorted(tp.partition for tp in parts.restoring)
        if restoring:
            return False, f"restoring partitions {restoring} ({parts.progress()} engines so far)"
        owned = sorted(tp.partition for tp in parts.assigned)
        if not owned:
            return True, ("ready; owns no partitions (the group has more instances than the "
                          "readings topic has partitions)")
        return True, f"ready; owns partitions {owned}"

    @property
    def connected(self) -> bool:
        """Whether a session is up (its clients exist; there may be work to commit)."""
        return self._session_ is not None

    def _update_ready(self) -> None:
        ready, _ = self.readiness()
        if ready != self.ready.is_set():
            (self.ready.set if ready else self.ready.clear)()
            self.metrics.up.set(1 if ready else 0)

    # -- lifecycle -----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set; then commit what is pending and close.

        Raises nothing: a fatal failure after the allowed restarts sets :attr:`failure`
        and ``stop`` (the caller exits non-zero)."""
        tune_process()
        attempt = 0
        while not stop.is_set():
            try:
                self._run_session(stop)
            except Exception as exc:  # every failure is classified; see service.kafka.errors
                kind, reason = classify(exc), explain(exc)
                # A refusal no retry can fix (credentials, certificates, ACLs) shows only as a
                # timeout or a hang-up: the security module probes for it and names the
                # setting.
                refused = explain_client_error(exc, self.settings)
                if refused is not None:
                    kind, reason = FailureClass.FATAL, refused
                self.metrics.sessions_failed.labels(kind.value).inc()
                self._end_session()
                if kind is FailureClass.FATAL and self._give_up(exc, reason):
                    stop.set()
                    break
                attempt += 1
                delay = random.uniform(0.5, 1.0) * min(MAX_BACKOFF_S, 0.25 * 2 ** attempt)
                log.warning("Kafka session ended: %s; %s in %.1f s", reason,
                            "retrying" if kind is FailureClass.RETRIABLE
                            else f"fatal failure {len(self._fatal)} of at most "
                                 f"{self.settings.max_fatal_restarts + 1}, restarting",
                            delay, exc_info=exc if log.isEnabledFor(logging.DEBUG)
                            or kind is FailureClass.FATAL else None)
                self._status = f"Kafka unavailable ({type(exc).__name__}); retrying"
                stop.wait(delay)
            else:
                attempt = 0
        self._close(commit=self.failure is None)

    def _give_up(self, exc: Exception, reason: str) -> bool:
        """Count a fatal failure; True (and :attr:`failure` set to ``reason``) when there
        were too many within :data:`FATAL_WINDOW_S`."""
        now = time.monotonic()
        self._fatal.append(now)
        while self._fatal[0] < now - FATAL_WINDOW_S:
            self._fatal.popleft()
        if len(self._fatal) <= self.settings.max_fatal_restarts:
            return False
        self.failure = reason
        log.critical("giving up after %d fatal failures within %.0f s: %s", len(self._fatal),
                     FATAL_WINDOW_S, self.failure, exc_info=exc)
        self._update_ready()
        return True

    def _start_session(self, stop: threading.Event) -> Session:
        s = self.settings
        self._status = f"connecting to Kafka at {s.bootstrap_servers}"
        topics = ensure_topics(s)
        committer = Committer(s, self.stores, self.metrics, on_committed=self._committed)
        committer.start()
        consumer = clients.consumer(
            s, "readings",
            group_id=s.group_id,
            # a static member: a restart within the session timeout keeps the partitions
            group_instance_id=s.instance_id,
            enable_auto_commit=False,
            auto_offset_reset=s.auto_offset_reset,
            isolation_level="read_committed",
            max_poll_records=s.max_poll_records,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_partition_fetch_bytes=max(s.max_message_bytes * 2, 1 << 20),
            fetch_max_bytes=max(s.max_message_bytes * 4, 50 << 20),
        )
        restorer = Restorer(s, self.stores, self.upkeep.load,
                            on_rows_of_other_models=self._rows_of_other_models)
        session = Session(consumer, BatchPoller(consumer, s.max_poll_records), committer,
                          restorer, topics)
        self._session_ = session
        self.partitions.start(session)
        self.upkeep.new_session()
        # Load the topic's metadata before joining: joining without it gives an empty first
        # assignment and an immediate second rebalance, which kafka-python 3.0 has been seen
        # to never finish (the member is dropped and does not rejoin).
        deadline = time.monotonic() + s.timeout_ms / 1000
        while not consumer.partitions_for_topic(s.readings_topic):
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(f"no metadata for topic {s.readings_topic}")
            stop.wait(0.1)
        self._status = f"joining consumer group {s.group_id}"
        consumer.subscribe([s.readings_topic], listener=Listener(self.partitions))
        # kafka-python 3.0 takes its metadata snapshot for the first assignment from the
        # last metadata update *after* subscribing; without one it assigns from an empty
        # snapshot and rebalances again at once. Listing the topics forces that update.
        consumer.topics()
        return session

    def _run_session(self, stop: threading.Event) -> None:
        session = self._start_session(stop)
        s = self.settings
        self._next_check = 0.0
        self._unstable_since = None
        while not stop.is_set():
            restoring = bool(self.partitions.restoring)
            records = session.poller.poll(0 if restoring else s.poll_timeout_ms)
            if restoring:
                self.partitions.restore_step()
            with self.processing_lock:
                if records:
                    session.poller.drop_revoked(records)
                    if records:
                        failed = self.handler.handle(session, records)
                        if failed is not None:
                            self._rollback(session, failed)
                session.committer.advance(session.consumer, session.poller.catching_up)
                if not self.partitions.restoring:
                    self.upkeep.maybe_evict(session)
                    self.upkeep.maybe_checkpoint(session, self.partitions.restored())
            # Calls that wait for the consumer's I/O thread are made without the processing
            # lock: that thread runs the rebalance callbacks, which take the lock.
            if self._rewind:
                self._rewind_to_committed(session.consumer)
            self._update_ready()
            if time.monotonic() >= self._next_check:
                self._check_broker(session.consumer)

    def _end_session(self) -> None:
        """After a failed session: close the clients, forget the uncommitted state (the
        next session restores what was committed) and tell the fleet view."""
        self._close(commit=False)
        self.stores.clear()
        if self.partitions.ownership is not None:
            self.partitions.ownership.released(None, None)

    def _close(self, *, commit: bool) -> None:
        session = self._session_
        with self.processing_lock:
            if session is not None:
                if commit and not self.partitions.restoring:
                    try:
                        session.committer.commit(session.consumer)
                        self.upkeep.checkpoint(session, self.partitions.restored())
                    except Exception:
                        log.exception("final commit failed; the next owner reprocesses from "
                                      "the last")
                session.committer.close(None, commit=False)
            self.partitions.stop()  # the closing consumer's callbacks do nothing
            self._session_ = None
            self._rewind = set()
        if session is not None:
            with contextlib.suppress(Exception):
                session.restorer.close()
            try:
                session.consumer.close(autocommit=False)
            except Exception:
                log.exception("closing the consumer failed")
        self.upkeep.wait()
        self._update_ready()

    # -- processing failures ---------------------------------------------------------------
    def _rollback(self, session: Session, exc: Exception) -> None:
        """A batch's processing raised (``handler.isolate`` now covers it): some of its
        engines may be half updated. Abort the open transaction, forget the uncommitted
        state and restore the owned partitions' committed state; the loop then goes back
        to the committed offsets (:meth:`_rewind_to_committed`)."""
        self.metrics.processing_failures.inc()
        log.error("processing a batch raised %s; rolling back to the last commit and "
                  "processing it again message by message", exc, exc_info=exc)
        session.committer.abort()
        assigned = set(self.partitions.assigned or ())
        self.stores.clear()
        if assigned:
            self.partitions.start_restore(assigned)  # paused until restored
            self._rewind |= assigned

    def rewrite(self, class_name: str, slots: npt.NDArray[np.intp]) -> None:
        """Send the rows of ``slots`` to the changelog with the next commit (call with the
        processing lock held): after a model swap, so the changelog names the new model
        for every engine and a restore elsewhere re-warms nothing. Without a session, the
        next restore re-warms them instead (``Placement.REWARM``)."""
        session = self._session_
        if session is None or not slots.size:
            return
        p = session.committer.pending
        p.touch()
        p.dirty_of(class_name).update(slots.tolist())

    def _rows_of_other_models(self, applied: Applied) -> None:
        """A restore step found rows written by another model than the class's current
        one (called with the processing lock held, on this thread): re-warm the recurrent
        state of those of another version with the same layout (as a reload does), count and
        say which were re-commissioned."""
        for name, slots in applied.rewarm.items():
            owner = self.classes.by_name[name]
            rows = np.asarray(slots, dtype=np.intp)
            owner.processor.rewarm(rows)
            self.rewrite(name, rows)  # the changelog then names the model that runs
            log.info("restored %d engines of class %s whose rows another version of its "
                     "model wrote; their recurrent state was re-warmed with model %s",
                     len(slots), name, owner.model.version)
        for name, n in applied.recommissioned.items():
            self.metrics.engines_recommissioned.labels(name).inc(n)
            log.warning("re-commissioned %d engines of class %s: their changelog rows were "
                        "written by a model of another layout (channels or state) than %s; "
                        "they start afresh (fresh model state, commissioning again)", n, name,
                        self.classes.by_name[name].model.version)

    def _rewind_to_committed(self, consumer: KafkaConsumer) -> None:
        """Seek the partitions rolled back to their committed offsets (outside the lock)."""
        todo, self._rewind = self._rewind, set()
        assigned = consumer.assignment()
        for tp in todo & assigned:
            offset = consumer.committed(tp)
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)

    # -- commits ---------------------------------------------------------------------------
    def _committed(self, work: Pending) -> None:
        """A commit was acknowledged: its status changes are handed on (the runtime logs
        them, service.logs.log_status_changes)."""
        if work.event_list and self.on_events is not None:
            self.on_events(work.event_list)
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        """Fleet-level gauges; the per-engine ones are read at scrape time (EngineCollector)."""
        m = self.metrics
        m.engines_tracked.set(len(self.stores))
        totals: collections.Counter[str] = collections.Counter()
        for c in self.classes:
            for st, n in status_counts(c.store, c.processor.statuses).items():
                totals[str(st)] += n
        for name, n in totals.items():
            m.engines_by_status.labels(name).set(n)

    # -- broker and group checks ------------------------------------------------------------
    def _check_broker(self, consumer: KafkaConsumer) -> None:
        """Once a second: ask the broker for the end offsets (consumer lag metric).

        kafka-python retries a lost broker silently forever; this request is how the loop
        notices. A failure raises, which ends the session (not ready, backoff, restore).
        """
        now = time.monotonic()
        self._next_check = now + 1.0
        self._check_group(consumer, now)
        assigned = list(consumer.assignment())
        if not assigned:
            return
        try:
            ends = consumer.end_offsets(assigned, timeout_ms=self.settings.timeout_ms)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"broker check failed: {exc}") from exc
        for tp, end in ends.items():
            self.metrics.consumer_lag.labels(str(tp.partition)).set(
                max(0, end - consumer.position(tp))
            )

    def _check_group(self, consumer: KafkaConsumer, now: float) -> None:
        """End the session when a rebalance has not completed for too long.

        kafka-python 3.0 has been seen to start a second rebalance right after the first
        assignment and never finish it: the member then holds no partitions and processes
        nothing, forever. A fresh consumer joins normally, so after
        ``2 x kafka.session_timeout_ms`` outside a stable group the session ends (not
        ready, backoff, a new consumer joins and restores). A stable group with an empty
        assignment (more instances than partitions) is left alone.
        """
        if compat.group_stable(consumer):
            self._unstable_since = None
            return
        if self._unstable_since is None:
            self._unstable_since = now
            return
        limit = 2 * self.settings.session_timeout_ms / 1000
        if now - self._unstable_since > limit:
            self._unstable_since = None
            raise BrokerUnavailableError(
                f"group {self.settings.group_id}: rebalance not finished in {limit:.0f} s; "
                "rejoining with a new consumer"
            )


__all__ = ["OwnershipListener", "Pipeline"]
