"""The consume-process-commit loop: sessions, batches, rebalances, restores, failures.

Exactly-once (``kafka.exactly_once``, the default): everything a commit interval produced
and the consumed offsets are committed in one Kafka transaction (:mod:`.committer`). On
assignment the state of each new partition is restored (:mod:`.restore`: a local
checkpoint, then the changelog's tail) a step at a time in this loop, with the partition
paused, while the group consumer keeps polling: a large restore never trips the group.
The consumer is a static group member (``group_instance_id`` = ``kafka.instance_id``), so a
restarted instance gets its partitions back without a rebalance.

Failures are handled by class (:mod:`.errors`): one message's fault becomes a dead letter;
a batch whose processing raises is rolled back to the last commit and processed again one
message at a time, so the message at fault becomes a dead letter and nothing else is lost;
a broken session (broker away, timeout) ends, readiness turns false, and a new session
starts after a jittered backoff; fatal failures stop the process after
``kafka.max_fatal_restarts`` in a row.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from service.config import Settings
from service.domain import AnomalyEvent, SourcePosition, Status
from service.errors import BrokerUnavailableError, InvalidMessageError
from service.ingest import MessageDecoder
from service.ingest.columns import ReadingColumns
from service.kafka import checkpoint, clients, compat
from service.kafka.batches import BatchPoller, Records
from service.kafka.committer import LATENCY_SAMPLES, Committer, Pending
from service.kafka.errors import FailureClass, PipelineFailedError, classify, explain
from service.kafka.outputs import dead_letter_record, event_record
from service.kafka.restore import Restorer
from service.kafka.topics import Topics, ensure_topics
from service.metrics import Metrics
from service.model.tuning import tune_process
from service.processor import BatchProcessor, BatchResult
from service.views import status_counts

log = logging.getLogger(__name__)

#: Seconds between checks for idle engines to evict.
EVICT_EVERY_S = 30.0
#: Shortest time between checkpoints written because the changelog tail grew.
CHECKPOINT_MIN_INTERVAL_S = 5.0
#: Largest pause between sessions (jittered exponential backoff from 0.25 s).
MAX_BACKOFF_S = 4.0
#: Fatal failures count towards kafka.max_fatal_restarts for this long (two instances with
#: one id fence each other in turn, with successful commits in between: still fatal).
FATAL_WINDOW_S = 600.0


class OwnershipListener(Protocol):
    """Told when this instance starts and stops owning partitions (the fleet view)."""

    def acquired(self, partitions: set[int]) -> None:
        """``partitions`` (possibly none, on an empty assignment) are restored and live here."""

    def released(
        self, partitions: set[int] | None, rows: list[tuple[str, bytes]] | None
    ) -> None:
        """``partitions`` (None: all) are no longer owned; ``rows`` are their engines'
        committed changelog values, or None when they could not be committed."""


class Pipeline:
    """Runs the consume-process-commit loop in the calling thread until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        decoder: MessageDecoder,
        processor: BatchProcessor,
        metrics: Metrics,
        *,
        ownership: OwnershipListener | None = None,
        on_events: Callable[[list[AnomalyEvent]], None] | None = None,
    ) -> None:
        self.settings = settings.kafka
        self.state_settings = settings.state
        self.decoder = decoder
        self.processor = processor
        self.store = processor.store
        self.metrics = metrics
        self.ownership = ownership
        self.on_events = on_events
        self.ready = threading.Event()
        #: Set when the pipeline gave up (fatal failures in a row): what to change.
        self.failure: str | None = None
        # Held while processing; rebalance callbacks and model swaps wait for it.
        self.processing_lock = threading.RLock()
        self._consumer: KafkaConsumer | None = None
        self._poller: BatchPoller | None = None
        self._committer: Committer | None = None
        self._restorer: Restorer | None = None
        self._topics: Topics | None = None
        #: partitions of the current assignment (None: none received in this session)
        self._assigned: set[TopicPartition] | None = None
        #: assigned partitions whose state is not restored yet (queued or in progress)
        self._restoring: set[TopicPartition] = set()
        #: of those, the ones whose restore has not started (the loop starts them)
        self._queued: set[TopicPartition] = set()
        #: revoked partitions waiting for the new assignment (see on_revoked)
        self._parked: set[TopicPartition] = set()
        self._restore_began = 0.0
        #: after a processing failure: partition -> offset below which records are
        #: processed one message at a time (kept across sessions: offsets stay meaningful)
        self._isolate: dict[TopicPartition, int] = {}
        #: partitions rolled back, to seek to their committed offsets
        self._rewind: set[TopicPartition] = set()
        self._status = "starting"
        #: monotonic times of the recent fatal failures (see run)
        self._fatal: collections.deque[float] = collections.deque()
        self._next_check = 0.0
        self._next_evict = 0.0
        self._unstable_since: float | None = None
        ckpt_dir = self.state_settings.checkpoint_dir
        s = self.settings
        self._checkpoint_path: Path | None = (
            None if ckpt_dir is None else
            ckpt_dir.expanduser() / f"{s.group_id}.{s.instance_id}.{s.changelog_topic}.ckpt"
        )
        self._writer = (
            None if self._checkpoint_path is None
            else checkpoint.CheckpointWriter(self._checkpoint_path, self.store, s.changelog_topic)
        )
        self._last_checkpoint = time.monotonic()
        self._rows_at_checkpoint = 0

    # -- readiness -----------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """Whether this instance is ready (it owns its assigned partitions and has restored
        them) and, in words, what it is doing or waiting for."""
        if self.failure is not None:
            return False, f"stopped: {self.failure}"
        if self._consumer is None or self._assigned is None:
            return False, self._status
        restoring = sorted(tp.partition for tp in self._restoring)
        if restoring:
            engines = self._restorer.restored_engines if self._restorer else 0
            return False, f"restoring partitions {restoring} ({engines} engines so far)"
        owned = sorted(tp.partition for tp in self._assigned)
        if not owned:
            return True, "ready; owns no partitions (the group has more instances than " \
                "the readings topic has partitions)"
        return True, f"ready; owns partitions {owned}"

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
                self._session(stop)
            except Exception as exc:  # every failure is classified; see service.kafka.errors
                kind = classify(exc)
                self.metrics.sessions_failed.labels(kind.value).inc()
                self._end_session(str(exc))
                if kind is FailureClass.FATAL:
                    now = time.monotonic()
                    self._fatal.append(now)
                    while self._fatal[0] < now - FATAL_WINDOW_S:
                        self._fatal.popleft()
                    if len(self._fatal) > self.settings.max_fatal_restarts:
                        self.failure = explain(exc)
                        log.critical("giving up after %d fatal failures within %.0f s: %s",
                                     len(self._fatal), FATAL_WINDOW_S, self.failure,
                                     exc_info=exc)
                        self._update_ready()
                        stop.set()
                        break
                attempt += 1
                delay = random.uniform(0.5, 1.0) * min(MAX_BACKOFF_S, 0.25 * 2 ** attempt)
                log.warning("Kafka session ended: %s; %s in %.1f s", explain(exc),
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

    def _session(self, stop: threading.Event) -> None:
        s = self.settings
        self._status = f"connecting to Kafka at {s.bootstrap_servers}"
        self._topics = ensure_topics(s)
        self._committer = Committer(s, self.store, self.metrics, on_committed=self._committed)
        self._committer.start()
        self._consumer = consumer = clients.consumer(
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
        self._poller = BatchPoller(consumer, s.max_poll_records)
        self._restorer = Restorer(
            s, self.store, self.processor.scorer.init_state(1)[0], self._load_checkpoint
        )
        # Load the topic's metadata before joining: joining without it gives an empty first
        # assignment and an immediate second rebalance, which kafka-python 3.0 has been seen
        # to never finish (the member is dropped and does not rejoin).
        deadline = time.monotonic() + s.timeout_ms / 1000
        while not consumer.partitions_for_topic(s.readings_topic):
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(f"no metadata for topic {s.readings_topic}")
            stop.wait(0.1)
        self._status = f"joining consumer group {s.group_id}"
        consumer.subscribe([s.readings_topic], listener=_Listener(self))
        # kafka-python 3.0 takes its metadata snapshot for the first assignment from the
        # last metadata update *after* subscribing; without one it assigns from an empty
        # snapshot and rebalances again at once. Listing the topics forces that update.
        consumer.topics()
        self._next_check = 0.0
        self._unstable_since = None
        while not stop.is_set():
            restoring = bool(self._restoring)
            records = self._poller.poll(0 if restoring else s.poll_timeout_ms)
            if restoring:
                self._restore_step()
            with self.processing_lock:
                if records:
                    self._poller.drop_revoked(records)
                    if records:
                        self._handle(records)
                self._committer.advance(consumer, self._poller.catching_up)
                self._maybe_evict()
                self._maybe_checkpoint()
            # Calls that wait for the consumer's I/O thread are made without the processing
            # lock: that thread runs the rebalance callbacks, which take the lock.
            if self._rewind:
                self._rewind_to_committed()
            self._update_ready()
            if time.monotonic() >= self._next_check:
                self._check_broker()

    def _end_session(self, reason: str) -> None:
        """After a failed session: close the clients, forget the uncommitted state (the
        next session restores what was committed) and tell the fleet view."""
        self._close(commit=False)
        self.store.clear()
        if self.ownership is not None:
            self.ownership.released(None, None)

    def _close(self, *, commit: bool) -> None:
        with self.processing_lock:
            consumer = self._consumer
            if self._committer is not None:
                if commit and consumer is not None and not self._restoring:
                    try:
                        self._committer.commit(consumer)
                        self._checkpoint_now()
                    except Exception:
                        log.exception("final commit failed; the next owner reprocesses from "
                                      "the last")
                self._committer.close(None, commit=False)
            self._consumer = self._poller = self._committer = None
            self._assigned = None
            self._restoring, self._queued, self._parked = set(), set(), set()
            self._rewind = set()
        if self._restorer is not None:
            with contextlib.suppress(Exception):
                self._restorer.close()
            self._restorer = None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception:
                log.exception("closing the consumer failed")
        if self._writer is not None:
            self._writer.wait()
        self._update_ready()

    # -- processing ----------------------------------------------------------------------
    def _handle(self, records: Records) -> None:
        """Decode and process ``records``; their outputs wait in the pending work."""
        assert self._committer is not None and self._poller is not None
        started = time.perf_counter()
        p = self._committer.pending
        p.touch()
        self.store.seq += 1
        p.seq = self.store.seq
        cols = ReadingColumns(self.decoder.channels)
        isolated: list[tuple[TopicPartition, Any]] = []
        n_messages = sum(map(len, records.values()))
        admit = self._admission(n_messages)
        for tp, batch in records.items():
            bound = self._isolate.get(tp)
            for rec in batch:
                if bound is not None and rec.offset < bound:
                    isolated.append((tp, rec))
                else:
                    self._decode(cols, tp, rec, admit)
            if batch:
                p.offsets[tp] = batch[-1].offset + 1
                if bound is not None and batch[-1].offset + 1 >= bound:
                    del self._isolate[tp]
        p.messages += n_messages
        self._poller.note_messages(n_messages, len(cols))
        for tp, rec in isolated:  # before the rest: they are older, per partition
            self._process_one(tp, rec)
        try:
            result = self.processor.process_columns(cols)
        except Exception as exc:
            self._rollback(records, exc)
            return
        self._publish(result)
        m = self.metrics
        m.batch_size.observe(result.processed)
        m.engines_tracked.set(len(self.store))
        m.batch_seconds.observe(time.perf_counter() - started)

    def _admission(self, n_messages: int) -> set[str] | None:
        """New engines admitted in this batch, when the engine cap could be reached by it
        (None: far from the cap, nothing to check)."""
        if len(self.store) + n_messages <= self.state_settings.max_engines:
            return None
        return set()

    def _decode(
        self, cols: ReadingColumns, tp: TopicPartition, rec: Any, admit: set[str] | None
    ) -> bool:
        """Decode ``rec`` into ``cols``; a bad message becomes a dead letter. Returns
        whether it was added."""
        try:
            self.decoder.decode_into(cols, rec.value, rec.key, tp.partition)
        except InvalidMessageError as exc:
            self._dead_letter(tp, rec, exc.reason, exc.detail)
            return False
        except Exception as exc:  # anything else about one message is that message's fault
            self._dead_letter(tp, rec, "decode_failed", f"{type(exc).__name__}: {exc}")
            return False
        if admit is not None:
            engine_id = cols.engine_ids[-1]
            if engine_id not in self.store.index and engine_id not in admit:
                if len(self.store) + len(admit) >= self.state_settings.max_engines:
                    cols.pop_last()
                    self._dead_letter(
                        tp, rec, "engine_limit",
                        f"new engine {engine_id!r} beyond state.max_engines="
                        f"{self.state_settings.max_engines}",
                    )
                    return False
                admit.add(engine_id)
        return True

    def _process_one(self, tp: TopicPartition, rec: Any) -> None:
        """Process one message on its own (after a processing failure): if it raises, its
        engine's row is put back as it was and the message becomes a dead letter."""
        cols = ReadingColumns(self.decoder.channels)
        if not self._decode(cols, tp, rec, self._admission(1)):
            return
        store, engine_id = self.store, cols.engine_ids[0]
        slot = store.index.get(engine_id)
        backup = None if slot is None else store.encode_row(slot)
        try:
            result = self.processor.process_columns(cols)
        except Exception as exc:
            with store.lock:
                if backup is None:
                    store.forget(engine_id)
                else:
                    store.restore_row(engine_id, backup, self.processor.scorer.init_state(1)[0])
                    store.changed_seq[store.index[engine_id]] = store.seq
            log.warning("processing %s[%d]@%d raised %s: dead letter", tp.topic, tp.partition,
                        rec.offset, exc, exc_info=exc)
            self._dead_letter(tp, rec, "processing_failed", f"{type(exc).__name__}: {exc}")
            return
        self._publish(result)

    def _rollback(self, records: Records, exc: Exception) -> None:
        """A batch's processing raised: some of its engines may be half updated. Abort the
        open transaction, forget the uncommitted state and restore the owned partitions'
        committed state; the loop then goes back to the committed offsets
        (:meth:`_rewind_to_committed`), and everything up to the end of this batch is
        processed one message at a time."""
        assert self._committer is not None
        self.metrics.processing_failures.inc()
        log.error("processing a batch of %d messages raised %s; rolling back to the last "
                  "commit and processing it again message by message",
                  sum(map(len, records.values())), exc, exc_info=exc)
        self._committer.abort()
        for tp, batch in records.items():
            if batch:
                self._isolate[tp] = max(self._isolate.get(tp, 0), batch[-1].offset + 1)
        assigned = set(self._assigned or ())
        self.store.clear()
        if assigned:
            self._start_restore(assigned)  # paused until restored
            self._rewind |= assigned

    def _rewind_to_committed(self) -> None:
        """Seek the partitions rolled back to their committed offsets (outside the lock)."""
        consumer = self._consumer
        assert consumer is not None
        todo, self._rewind = self._rewind, set()
        assigned = consumer.assignment()
        for tp in todo & assigned:
            offset = consumer.committed(tp)
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)

    def _dead_letter(self, tp: TopicPartition, rec: Any, reason: str, detail: str) -> None:
        assert self._committer is not None and self._topics is not None
        log.warning("dead letter %s[%d]@%d: %s: %s", tp.topic, tp.partition, rec.offset,
                    reason, detail[:200])
        limit = min(self._committer.max_request_size, self._topics.dead_letter_max_bytes)
        p = self._committer.pending
        p.outbox.append((self.settings.dead_letter_topic, dead_letter_record(
            rec.key, rec.value, rec.headers,
            SourcePosition(tp.topic, tp.partition, rec.offset), reason, detail, limit,
        )))
        p.readings["invalid"] += 1
        p.dead_letters[reason] += 1

    def _publish(self, result: BatchResult) -> None:
        assert self._committer is not None
        p = self._committer.pending
        for event in result.events:
            p.outbox.append((self.settings.anomalies_topic, event_record(event)))
            p.events[str(event.status)] += 1
        if result.events:
            p.event_list.extend(result.events)
        p.dirty |= result.dirty
        p.event_ts_ms.extend(result.event_ts_ms[-LATENCY_SAMPLES:])
        p.readings["processed"] += result.processed
        p.readings["duplicate"] += result.duplicate
        p.readings["late"] += result.late

    def _committed(self, work: Pending) -> None:
        """A commit was acknowledged: its status changes are logged and handed on."""
        for e in work.event_list:
            # warm-up ending is routine: only changes to or from warning/alarm are news
            level = logging.DEBUG if e.previous is Status.WARMUP else logging.INFO
            if log.isEnabledFor(level):
                log.log(level, "engine %s: %s -> %s (score %.3f) at %s", e.engine_id,
                        e.previous, e.status, e.score,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.ts_ms / 1000)))
        if work.event_list and self.on_events is not None:
            self.on_events(work.event_list)
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        """Fleet-level gauges; the per-engine ones are read at scrape time (EngineCollector)."""
        m, store = self.metrics, self.store
        m.engines_tracked.set(len(store))
        for status, n in status_counts(store, self.processor.statuses).items():
            m.engines_by_status.labels(str(status)).set(n)

    # -- eviction and checkpoints ----------------------------------------------------------
    def _maybe_evict(self) -> None:
        """Every :data:`EVICT_EVERY_S`: evict engines idle for ``state.idle_evict_s`` of
        event time (measured against the newest reading this instance holds, so a replay or
        a restart after downtime evicts nothing that is still reporting)."""
        idle_ms = self.state_settings.idle_evict_s * 1000
        now = time.monotonic()
        if not idle_ms or now < self._next_evict or self._restoring:
            return
        self._next_evict = now + min(EVICT_EVERY_S, max(1.0, idle_ms / 10_000))
        store = self.store
        assert self._committer is not None
        with store.lock:
            active = store.active_slots()
            if not active.size:
                return
            last = store.last_ts[active]
            newest = int(last.max())
            idle = active[(last < newest - idle_ms) & (store.count[active] > 0)]
            if not idle.size:
                return
            p = self._committer.pending
            p.touch()
            for slot in idle.tolist():
                engine_id = store.ids[slot]
                p.tombstones.append((engine_id, int(store.partition[slot])))
                store.forget(engine_id)
        p.evicted += int(idle.size)
        log.info("evicting %d engines idle for more than %.0f s", idle.size, idle_ms / 1000)

    def _maybe_checkpoint(self) -> None:
        """Write a checkpoint when the changelog rows sent since the last one reach the
        number of engines (the tail a restart would read is then as large as a snapshot),
        at most every :data:`CHECKPOINT_MIN_INTERVAL_S`, or ``state.checkpoint_interval_s``
        after the last when anything changed."""
        if self._writer is None or self._committer is None or self._restoring:
            return
        rows = self._committer.rows_sent - self._rows_at_checkpoint
        since = time.monotonic() - self._last_checkpoint
        if rows and (
            (rows >= max(len(self.store), 1000) and since >= CHECKPOINT_MIN_INTERVAL_S)
            or since >= self.state_settings.checkpoint_interval_s
        ):
            self._checkpoint_now()

    def _checkpoint_now(self) -> None:
        """Commit everything pending (blocking), then snapshot the owned engines with the
        changelog offsets they reflect. A failure to write is logged, not raised."""
        consumer, committer = self._consumer, self._committer
        if self._writer is None or consumer is None or committer is None or self._restoring:
            return
        # the owned partitions whose engines are all in the store
        parts = {tp.partition for tp in (self._assigned or self._parked) - self._restoring}
        if not parts or self._restorer is None:
            return
        started = time.perf_counter()
        committer.commit(consumer)
        # The last stable offsets, asked through the restore's own consumer (not the group
        # consumer, whose I/O thread may be waiting for our lock in a rebalance callback):
        # at most what the committed rows reflect (a lagging transaction marker only makes
        # the tail read at restore a little longer).
        ends = self._restorer.end_offsets(parts)
        try:
            self._writer.write(ends)
        except OSError:
            log.exception("could not write checkpoint %s", self._checkpoint_path)
        self._last_checkpoint = time.monotonic()
        self._rows_at_checkpoint = committer.rows_sent
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)

    def _load_checkpoint(self) -> checkpoint.Checkpoint | None:
        if self._checkpoint_path is None:
            return None
        if self._writer is not None:
            self._writer.wait()
        return checkpoint.load(self._checkpoint_path, self.store, self.settings.changelog_topic,
                               self.state_settings.checkpoint_max_age_s)

    # -- restore ---------------------------------------------------------------------------
    def _start_restore(self, partitions: set[TopicPartition]) -> None:
        """Hold ``partitions`` (paused) until the loop has restored their state."""
        assert self._poller is not None
        self._poller.hold(partitions)
        self._restoring |= partitions
        self._queued |= partitions
        self._restore_began = time.monotonic()

    def _restore_step(self) -> None:
        """Start the queued restores, or make one step of progress; resume what is done."""
        assert self._restorer is not None and self._poller is not None
        with self.processing_lock:
            queued, self._queued = self._queued, set()
            if queued:
                done = self._restorer.add({tp.partition for tp in queued})
            else:
                done = self._restorer.step()
            if not done:
                return
            tps = {tp for tp in self._restoring if tp.partition in done}
            self._restoring -= tps
            self._poller.release(tps)
            if self.ownership is not None:
                self.ownership.acquired(done)
            self.metrics.engines_tracked.set(len(self.store))
            if not self._restoring:
                took = time.monotonic() - self._restore_began
                self.metrics.restore_seconds.observe(took)
                log.info("restored: %d engines in %.3f s; processing", len(self.store), took)
                self._refresh_gauges()

    # -- broker and group checks ------------------------------------------------------------
    def _check_broker(self) -> None:
        """Once a second: ask the broker for the end offsets (consumer lag metric).

        kafka-python retries a lost broker silently forever; this request is how the loop
        notices. A failure raises, which ends the session (not ready, backoff, restore).
        """
        consumer = self._consumer
        assert consumer is not None
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

        kafka-python 3.0 has been seen (twice, once in CI) to start a second rebalance right
        after the first assignment and never finish it: the member then holds no partitions
        and processes nothing, forever. A fresh consumer joins normally, so after
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

    # -- rebalance -----------------------------------------------------------------------
    # kafka-python rebalances eagerly: every partition is revoked, then the new assignment
    # arrives. Partitions assigned again to this instance keep their engines (nothing else
    # can have written them in between: a partition has one owner per generation), so only
    # the partitions that really move are dropped or restored.

    def on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Commit what is pending and park the partitions until the new assignment."""
        if self._poller is None:  # the consumer is closing: everything was committed
            return
        self._poller.forget(partitions)
        with self.processing_lock:
            if self._committer is not None and self._committer.busy and self._consumer:
                self._committer.commit(self._consumer)
            # partitions still being restored keep their progress too
            self._parked |= partitions
            self._assigned = None
        log.info("revoked %s", sorted(p.partition for p in partitions))

    def on_lost(self, partitions: set[TopicPartition]) -> None:
        """Forced out of the group: drop what is pending (it cannot commit) and forget."""
        if self._poller is None:  # the consumer is closing
            return
        self._poller.forget(partitions)
        with self.processing_lock:
            if self._committer is not None:
                self._committer.abandon()
            self._drop(partitions | self._parked, committed=False)
            self._assigned = None
        log.warning("lost partitions %s", sorted(p.partition for p in partitions))

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """Drop the parked partitions that moved away; queue the new ones for their restore
        (held paused until the loop has restored them)."""
        with self.processing_lock:
            moved = self._parked - partitions
            kept = self._parked & partitions
            self._parked = set()
            if moved & self._restoring:
                self._drop(moved & self._restoring, committed=False)
            if moved - self._restoring:
                self._drop(moved - self._restoring, committed=True)
            fresh = set(partitions) - kept - self._restoring
            self._assigned = set(partitions)
            if kept & self._restoring:  # still restoring: paused again (a new assignment
                assert self._poller is not None  # starts unpaused)
                self._poller.hold(kept & self._restoring)
            if fresh:
                self._start_restore(fresh)
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
        self.store.drop_partitions(parts)  # their gauges go with them
        if self._restorer is not None:
            self._restorer.remove(parts)
        self._restoring -= partitions
        self._queued -= partitions
        if self._poller is not None:
            self._poller.forget(partitions)
        for tp in partitions:
            self._isolate.pop(tp, None)
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(str(tp.partition))

    def _committed_rows(self, partitions: set[int]) -> list[tuple[str, bytes]]:
        """Changelog values of every engine of ``partitions`` (just committed)."""
        store = self.store
        with store.lock:
            ids = store.engines_of(partitions)
            slots = np.fromiter((store.index[e] for e in ids), dtype=np.intp, count=len(ids))
            return list(zip(ids, store.encode_rows(slots), strict=True))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.pipeline.on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.pipeline.on_assigned(set(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.pipeline.on_lost(set(lost))


__all__ = ["OwnershipListener", "Pipeline", "PipelineFailedError"]
