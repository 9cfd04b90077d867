"""The Kafka side of the service: consume, process, publish, commit; restore on assignment.

Exactly-once (``kafka.exactly_once``, the default): everything a commit interval produced
(changelog records with the latest state of each changed engine, anomaly events, dead
letters) and the consumed offsets are committed in one Kafka transaction. On assignment the
state of each new partition is restored from the compacted changelog (read_committed) before
its readings are fetched, so a restarted or rebalanced instance continues exactly where the
last committed transaction left off.

At-least-once (``exactly_once=false``): the same outputs, plain producer, offsets committed
after the outputs are flushed. Kept for comparison in the benchmarks.

Any Kafka failure ends the session: the instance drops its state, reports not ready, waits
with exponential backoff and starts a new session, which restores from the changelog.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from service.config import KafkaSettings
from service.domain import SourcePosition
from service.errors import BrokerUnavailableError, InvalidMessageError
from service.ingest import MessageDecoder
from service.ingest.columns import ReadingColumns
from service.kafka import clients, compat
from service.kafka.outputs import Record, dead_letter_record, event_record
from service.kafka.topics import Topics, ensure_topics
from service.metrics import Metrics
from service.model.tuning import tune_process
from service.processor import BatchProcessor, BatchResult
from service.views import status_counts

log = logging.getLogger(__name__)

#: Latency samples per commit: observing every reading would cost more than the work.
_LATENCY_SAMPLES = 64
#: Most partition chunks one batch gathers (see Pipeline._poll).
_MAX_CHUNKS = 12
#: Changed rows that are sent to the changelog before the commit is due (see _advance).
_EAGER_ROWS = 256
#: Changelog rows encoded at a time.
_ENCODE_BLOCK = 1024


@dataclass
class _Pending:
    """Work processed since the last commit began."""

    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    # Store rows changed and not yet sent to the changelog in this transaction.
    dirty: set[int] = field(default_factory=set)
    event_ts_ms: list[int] = field(default_factory=list)
    # Anomaly events and dead letters (topic, key, value, headers) not yet sent: they wait
    # while the previous transaction commits.
    outbox: list[tuple[str, Record]] = field(default_factory=list)
    started: float = 0.0
    open: bool = False
    begun: bool = False  # its transaction has begun (exactly-once)


@dataclass
class _Committing:
    """A transaction whose commit was sent and is not yet acknowledged."""

    result: Any  # kafka-python's TransactionalRequestResult of the EndTxn
    offsets: Any  # and of the offsets (None without offsets): it completes first
    started: float  # perf_counter when the commit began
    deadline: float  # monotonic
    event_ts_ms: list[int]


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
        settings: KafkaSettings,
        decoder: MessageDecoder,
        processor: BatchProcessor,
        metrics: Metrics,
        *,
        on_events: Callable[[list[Any]], None] | None = None,
        ownership: OwnershipListener | None = None,
    ) -> None:
        self.settings = settings
        self.decoder = decoder
        self.processor = processor
        self.store = processor.store
        self.metrics = metrics
        self.on_events = on_events
        self.ownership = ownership
        self.ready = threading.Event()
        # Held while processing; rebalance callbacks and model swaps wait for it.
        self.processing_lock = threading.RLock()
        # Pausing for a restore (rebalance callback) and _poll's resume exclude each other.
        self._pause_lock = threading.Lock()
        # Partitions revoked or lost while _poll gathers (the callbacks add to it).
        self._revoked: set[TopicPartition] = set()
        self._to_restore: set[TopicPartition] = set()
        self._pending = _Pending()
        self._committing: _Committing | None = None
        self._consumer: KafkaConsumer | None = None
        self._next_check = 0.0
        self._unstable_since: float | None = None
        self._producer: KafkaProducer | None = None
        self._topics: Topics | None = None
        # Readings per message, averaged over recent polls (batch messages hold many).
        self._per_message = 1.0
        # Whether the last poll was full: records are waiting (a backlog, see _advance).
        self._catching_up = False

    # -- lifecycle -----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set; then commit what is pending and leave the group."""
        tune_process()
        backoff = 0.5
        while not stop.is_set():
            try:
                self._session(stop)
                backoff = 0.5
            except Exception:
                log.exception("Kafka session failed; retrying in %.1f s", backoff)
                self.ready.clear()
                self.metrics.up.set(0)
                self._close(commit=False)
                self.store.clear()
                if self.ownership is not None:
                    self.ownership.released(None, None)
                stop.wait(backoff)
                backoff = min(backoff * 2, 8.0)
        self._close(commit=True)

    def _session(self, stop: threading.Event) -> None:
        s = self.settings
        self._topics = ensure_topics(s)
        self._producer = self._make_producer()
        self._consumer = clients.consumer(
            s, "readings",
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset=s.auto_offset_reset,
            isolation_level="read_committed",
            max_poll_records=s.max_poll_records,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_partition_fetch_bytes=max(s.max_message_bytes * 2, 1 << 20),
            fetch_max_bytes=max(s.max_message_bytes * 4, 50 << 20),
        )
        # Load the topic's metadata before joining: joining without it gives an empty first
        # assignment and an immediate second rebalance, which kafka-python 3.0 has been seen
        # to never finish (the member is dropped and does not rejoin).
        deadline = time.monotonic() + s.timeout_ms / 1000
        while not self._consumer.partitions_for_topic(s.readings_topic):
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(f"no metadata for topic {s.readings_topic}")
            stop.wait(0.1)
        self._consumer.subscribe([s.readings_topic], listener=_Listener(self))
        self._next_check = 0.0
        self._unstable_since = None
        while not stop.is_set():
            records = self._poll()
            if self._to_restore:
                self._restore()
            self.ready.set()
            self.metrics.up.set(1)
            with self.processing_lock:
                if records:
                    self._drop_revoked(records)
                    if records:
                        self._handle(records)
                self._advance()
            if time.monotonic() >= self._next_check:
                self._check_broker()

    def _poll(self) -> dict[TopicPartition, list[Any]]:
        """One batch of records, with a share of every partition that has some buffered.

        kafka-python hands out a partition's whole fetched chunk (up to
        ``max_partition_fetch_bytes``, tens of thousands of small messages) before the next
        partition's, so a plain poll holds the engines of one partition only, and the
        processor needs one round per reading of its busiest engine: with 100 engines on 6
        partitions, ~290 rounds of 17 engines for a poll of 5,000 readings. Here each
        partition that returned records is paused, so the next poll (no wait) moves on to
        the next partition's buffered chunk (the rest of the paused one is parked, in
        order, for the next batch); all are resumed before processing. Each partition
        contributes about ``max_poll_records`` readings (messages x readings per message).
        """
        consumer, s = self._consumer, self.settings
        assert consumer is not None
        chunk = max(1, int(s.max_poll_records / self._per_message))
        with self._pause_lock:
            self._revoked.clear()
        compat.unpark(consumer)
        records: dict[TopicPartition, list[Any]] = consumer.poll(
            timeout_ms=s.poll_timeout_ms, max_records=chunk
        )
        self._catching_up = sum(map(len, records.values())) >= chunk
        if not records:
            return records
        return self._gather(consumer, records, chunk)

    def _gather(
        self, consumer: KafkaConsumer, records: dict[TopicPartition, list[Any]], chunk: int
    ) -> dict[TopicPartition, list[Any]]:
        """The rest of :meth:`_poll`: the other partitions' chunks, into ``records``."""
        paused: list[TopicPartition] = []
        misses = 0
        # Under a backlog, wait a little for the other partitions' fetches: a batch that
        # spans more engines is processed in fewer, wider rounds.
        wait_ms = 5 if self._catching_up else 0
        try:
            # kafka-python restores one parked partition per poll, so a poll may come back
            # empty while others are still parked: stop after two empty polls in a row.
            for _ in range(2 * _MAX_CHUNKS):
                fresh = [tp for tp in records if tp not in paused]
                consumer.pause(*fresh)
                paused += fresh
                if len(paused) >= _MAX_CHUNKS or misses == 2:
                    break
                compat.unpark(consumer)
                more = consumer.poll(timeout_ms=wait_ms, max_records=chunk)
                misses = 0 if more else misses + 1
                for tp, recs in more.items():
                    records.setdefault(tp, []).extend(recs)
        finally:
            with self._pause_lock:  # not the partitions a rebalance paused for their restore
                assigned = consumer.assignment()
                back = [tp for tp in paused if tp in assigned and tp not in self._to_restore]
                if back:
                    consumer.resume(*back)
        return records

    def _drop_revoked(self, records: dict[TopicPartition, list[Any]]) -> None:
        """Forget the records of partitions revoked since :meth:`_poll` began.

        Called with ``processing_lock`` held, just before handling: a rebalance in one of
        _poll's polls, or on the I/O thread before the lock was taken, revoked them, so
        they belong to another owner now (handling them would write that owner's engines
        and commit its offsets), or, if the partition came back here, they are read again
        after its restore. Assignment resets the position to the committed offset; if
        records were taken after that, the position goes back to the first of them
        (never forward: nothing is skipped).
        """
        consumer = self._consumer
        assert consumer is not None
        with self._pause_lock:
            revoked, self._revoked = self._revoked, set()
        if not revoked:
            return
        assigned = consumer.assignment()
        for tp in revoked & records.keys():
            recs = records.pop(tp)
            if recs and tp in assigned:
                first = min(r.offset for r in recs)
                if consumer.position(tp) > first:
                    consumer.seek(tp, first)

    def _make_producer(self) -> KafkaProducer:
        s = self.settings
        common: dict[str, Any] = {
            # The commit flushes anyway, so a long linger costs no latency and lets the
            # changelog records of a commit interval go out in few, large batches.
            "linger_ms": 100,
            "batch_size": 1 << 20,
            "max_request_size": max(s.max_message_bytes + 65536, 1 << 20),
            "compression_type": None if s.compression == "none" else s.compression,
        }
        if s.exactly_once:
            producer = clients.producer(
                s, "producer", transactional_id=f"{s.group_id}-{s.instance_id}", acks="all",
                **common,
            )
            producer.init_transactions()
            return producer
        return clients.producer(s, "producer", acks="all", **common)

    def _close(self, *, commit: bool) -> None:
        with self.processing_lock:
            if commit and (self._pending.open or self._committing is not None):
                try:
                    self._commit()
                except Exception:
                    log.exception("final commit failed; the next owner reprocesses from the last")
            consumer, producer = self._consumer, self._producer
            self._consumer = self._producer = None
            self._pending = _Pending()
            self._committing = None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception:
                log.exception("closing the consumer failed")
        if producer is not None:
            try:
                producer.close(timeout=5)
            except Exception:
                log.exception("closing the producer failed")
        self.ready.clear()
        self.metrics.up.set(0)

    # -- processing ----------------------------------------------------------------------
    def _handle(self, records: dict[TopicPartition, list[Any]]) -> None:
        """Decode and process ``records``; their outputs wait in the pending work."""
        started = time.perf_counter()
        p = self._pending
        if not p.open:
            p.open, p.started = True, time.monotonic()
        cols = ReadingColumns(self.decoder.channels)
        n_messages = 0
        for tp, batch in records.items():
            for rec in batch:
                n_messages += 1
                try:
                    self.decoder.decode_into(cols, rec.value, rec.key, tp.partition)
                except InvalidMessageError as exc:
                    self._dead_letter(tp, rec, exc)
                    continue
            if batch:
                p.offsets[tp] = batch[-1].offset + 1
        if n_messages:
            self._per_message = 0.5 * self._per_message + 0.5 * max(1.0, len(cols) / n_messages)
        result = self.processor.process_columns(cols)
        self._publish(result)
        m = self.metrics
        m.messages.inc(n_messages)
        m.readings.labels("processed").inc(result.processed)
        m.readings.labels("duplicate").inc(result.duplicate)
        m.readings.labels("late").inc(result.late)
        m.batch_size.observe(result.processed)
        m.engines_tracked.set(len(self.store))
        m.batch_seconds.observe(time.perf_counter() - started)

    def _dead_letter(self, tp: TopicPartition, rec: Any, exc: InvalidMessageError) -> None:
        log.warning(
            "dead letter %s[%d]@%d: %s", tp.topic, tp.partition, rec.offset, exc
        )
        self._pending.outbox.append((self.settings.dead_letter_topic, dead_letter_record(
            rec.key, rec.value, rec.headers,
            SourcePosition(tp.topic, tp.partition, rec.offset), exc.reason, exc.detail,
        )))
        self.metrics.readings.labels("invalid").inc()
        self.metrics.dead_letters.labels(exc.reason).inc()

    def _publish(self, result: BatchResult) -> None:
        for event in result.events:
            self._pending.outbox.append((self.settings.anomalies_topic, event_record(event)))
            self.metrics.anomaly_events.labels(str(event.status)).inc()
        if result.events and self.on_events is not None:
            self.on_events(result.events)
        self._pending.dirty |= result.dirty
        self._pending.event_ts_ms.extend(result.event_ts_ms[-_LATENCY_SAMPLES:])

    # -- committing ----------------------------------------------------------------------
    def _advance(self) -> None:
        """Move the pending work towards its commit without waiting for the broker.

        Exactly-once commits are pipelined: the loop goes on consuming and processing
        while the broker completes a commit, and the next transaction begins (and the
        outputs processed meanwhile are sent) once it has.

        Two regimes, told apart by the last poll: full (``max_poll_records``) means more
        records are waiting.

        - Keeping up: a commit starts when the pending work is ``commit_interval_ms``
          old, and the rows of changed engines go out as soon as there are
          :data:`_EAGER_ROWS` of them rather than all at the commit, so the commit waits
          for little more than the broker (latency). An engine that changes again is sent
          again; the last row of a transaction wins.
        - Catching up (a backlog): commits are ``catch_up_commit_interval_ms`` apart and
          rows wait for the commit, so each changed engine's row is written once for more
          readings (throughput; the backlog itself is the latency then).
        """
        if self._committing is not None and not self._finish_commit(block=False):
            return
        p = self._pending
        if not p.open:
            return
        self._begin()
        s = self.settings
        keeping_up = not self._catching_up
        interval_ms = s.commit_interval_ms if keeping_up else s.catch_up_commit_interval_ms
        if time.monotonic() - p.started >= interval_ms / 1000:
            self._commit(block=False)
        elif keeping_up and len(p.dirty) >= _EAGER_ROWS:
            self._send_changelog()

    def _begin(self) -> None:
        """Begin the pending work's transaction (once) and send its waiting outputs."""
        assert self._producer is not None
        p = self._pending
        if not p.begun:
            if self.settings.exactly_once:
                self._producer.begin_transaction()
            p.begun = True
        for topic, (key, value, headers) in p.outbox:
            self._producer.send(topic, value=value, key=key, headers=list(headers) or None)
        p.outbox.clear()

    def _send_changelog(self) -> None:
        """Send the current row of every engine changed since the rows were last sent."""
        assert self._producer is not None
        p, store = self._pending, self.store
        with store.lock:
            dirty = np.fromiter((s for s in p.dirty if store.ids[s]), dtype=np.intp)
            # Encoded a block at a time: all rows at once would hold two copies of every
            # row (table and bytes) next to the producer's, ~55 MB at 10,000 engines.
            for block in range(0, len(dirty), _ENCODE_BLOCK):
                slots = dirty[block:block + _ENCODE_BLOCK]
                for slot, value, part in zip(
                    slots.tolist(), store.encode_rows(slots), store.partition[slots].tolist(),
                    strict=True,
                ):
                    self._producer.send(
                        self.settings.changelog_topic,
                        key=store.ids[slot].encode(),
                        value=value,
                        partition=part,
                    )
        p.dirty.clear()

    def _commit(self, *, block: bool = True) -> None:
        """Commit the pending work: changelog, outputs and offsets (one transaction when
        exactly-once). A commit still in flight completes first. With ``block`` (rebalance,
        shutdown) this returns once the broker has acknowledged; otherwise the loop
        collects the acknowledgement later (:meth:`_finish_commit`)."""
        assert self._producer is not None and self._consumer is not None
        self._finish_commit(block=True)
        p = self._pending
        if not p.open:
            return
        started = time.perf_counter()
        self._begin()
        self._send_changelog()
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in p.offsets.items()}
        self._pending = _Pending()
        if not self.settings.exactly_once:
            self._producer.flush(timeout=self.settings.timeout_ms / 1000)
            if offsets:
                self._consumer.commit(offsets)
            self._committed(started, p.event_ts_ms)
            return
        # Neither request is waited for here: kafka-python's transaction manager sends
        # one transactional request at a time, by priority, so AddOffsetsToTxn and then
        # TxnOffsetCommit go before EndTxn, which also waits until the records are sent.
        sent, result = compat.begin_commit(
            self._producer, offsets, self._consumer.group_metadata()
        )
        self._committing = _Committing(
            result, sent, started, time.monotonic() + self.settings.timeout_ms / 1000,
            p.event_ts_ms,
        )
        compat.wake_sender(self._producer)
        if block:
            self._finish_commit(block=True)

    def _finish_commit(self, *, block: bool) -> bool:
        """Whether no commit is in flight any more; with ``block``, wait for it.

        Raises when the commit failed or ``kafka.timeout_ms`` passed without an answer,
        which ends the session (the state is restored from what did commit).
        """
        c = self._committing
        if c is None:
            return True
        if not c.result.is_done:
            if not block and time.monotonic() < c.deadline:
                return False
            self._await(c.result, "committing the transaction",
                        max(0.0, c.deadline - time.monotonic()))
        self._committing = None
        for result in (c.offsets, c.result):
            if result is not None and result.failed:
                raise result.exception
        self._committed(c.started, c.event_ts_ms)
        return True

    def _committed(self, started: float, event_ts_ms: list[int]) -> None:
        """Metrics once a commit is acknowledged."""
        now = time.time()
        step = max(1, len(event_ts_ms) // _LATENCY_SAMPLES)
        for t in event_ts_ms[::step]:
            self.metrics.end_to_end_seconds.observe(max(0.0, now - t / 1000))
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.last_processed.set(now)
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        """Fleet-level gauges; the per-engine ones are read at scrape time (EngineCollector)."""
        m, store = self.metrics, self.store
        m.engines_tracked.set(len(store))
        for status, n in status_counts(store, self.processor.statuses).items():
            m.engines_by_status.labels(str(status)).set(n)

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

    def _await(self, result: Any, what: str, timeout_s: float) -> None:
        """Wait for a transactional request with a deadline.

        kafka-python's ``commit_transaction`` waits without one, which would hang the loop
        forever while the broker is away; this is the same wait with a deadline.
        """
        assert self._producer is not None
        compat.wake_sender(self._producer)
        if not result.wait(timeout_ms=timeout_s * 1000):
            raise BrokerUnavailableError(
                f"{what} did not complete in {self.settings.timeout_ms} ms"
            )

    # -- rebalance -----------------------------------------------------------------------
    def on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Commit what is pending, then forget the engines of the revoked partitions."""
        with self._pause_lock:
            self._revoked |= partitions
        with self.processing_lock:
            if self._pending.open or self._committing is not None:
                self._commit()
            parts = {tp.partition for tp in partitions}
            if self.ownership is not None:
                self.ownership.released(parts, self._committed_rows(parts))
            gone = self.store.drop_partitions(parts)  # their gauges go with them
            self._to_restore -= set(partitions)
            for tp in partitions:
                with contextlib.suppress(KeyError):
                    self.metrics.consumer_lag.remove(str(tp.partition))
        log.info("revoked %s (%d engines dropped)", sorted(p.partition for p in partitions),
                 len(gone))

    def on_lost(self, partitions: set[TopicPartition]) -> None:
        """Forced out of the group: abort what is pending (it cannot commit) and forget."""
        with self._pause_lock:
            self._revoked |= partitions
        with self.processing_lock:
            if self._committing is not None:  # it may still succeed: the fence is per instance
                try:
                    self._finish_commit(block=True)
                except Exception:
                    log.exception("the commit in flight when partitions were lost failed")
                self._committing = None
            if self._pending.begun and self.settings.exactly_once and self._producer:
                try:
                    self._producer.abort_transaction()
                except Exception:
                    log.exception("abort after losing partitions failed")
            self._pending = _Pending()
            parts = {tp.partition for tp in partitions}
            self.store.drop_partitions(parts)
            if self.ownership is not None:
                self.ownership.released(parts, None)

    def _committed_rows(self, partitions: set[int]) -> list[tuple[str, bytes]]:
        """Changelog values of every engine of ``partitions`` (just committed)."""
        store = self.store
        with store.lock:
            ids = store.engines_of(partitions)
            slots = np.fromiter((store.index[e] for e in ids), dtype=np.intp, count=len(ids))
            return list(zip(ids, store.encode_rows(slots), strict=True))

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """Pause the new partitions; the loop restores their state, then resumes them."""
        fresh = set(partitions)
        if fresh and self._consumer is not None:
            with self._pause_lock:
                self._consumer.pause(*fresh)
                self._to_restore |= fresh
        elif not fresh and self.ownership is not None:
            self.ownership.acquired(set())
        log.info("assigned %s", sorted(p.partition for p in partitions))

    def _restore(self) -> None:
        from service.kafka.restore import restore_partitions

        assert self._consumer is not None
        todo = sorted(self._to_restore, key=lambda tp: tp.partition)
        started = time.perf_counter()
        with self.processing_lock:
            n = restore_partitions(
                self.settings, [tp.partition for tp in todo], self.store,
                self.processor.scorer.init_state(1)[0],
            )
            with self._pause_lock:  # partitions assigned meanwhile stay paused, to restore
                self._to_restore -= set(todo)
                self._consumer.resume(*todo)
            if self.ownership is not None:
                self.ownership.acquired({tp.partition for tp in todo})
        took = time.perf_counter() - started
        self.metrics.restore_seconds.observe(took)
        self.metrics.engines_tracked.set(len(self.store))
        log.info("restored %d engines of partitions %s in %.3f s",
                 n, [tp.partition for tp in todo], took)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.pipeline.on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.pipeline.on_assigned(set(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.pipeline.on_lost(set(lost))
