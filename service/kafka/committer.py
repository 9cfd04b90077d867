"""Commits: what a commit interval produced, and the consumed offsets, in one transaction.

One :class:`Committer` per Kafka session owns the producer. The pipeline adds processed
work to :attr:`Committer.pending` (offsets, changed engine rows, anomaly events, dead
letters, counts) and calls :meth:`Committer.advance` on every loop iteration; the steps of
a commit always run in this order:

1. begin the transaction (once per pending work) and send its waiting outputs;
2. send the current changelog row of every engine changed since the rows were last sent
   (tombstones for engines evicted);
3. queue the consumed offsets and the commit (neither is waited for: the loop goes on
   processing while the broker commits, and the next transaction begins once it has);
4. once acknowledged: count what was committed (counters, latency), mark the store's rows
   committed (``EngineStore.committed_seq``), and tell the pipeline (``on_committed``).

Counters are incremented only in step 4, so work that is aborted and processed again is
counted once. Exactly-once: one Kafka transaction; at-least-once
(``kafka.exactly_once=false``): the outputs are flushed, then the offsets committed.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from service.classes import ClassStores
from service.config import KafkaSettings
from service.domain import AnomalyEvent
from service.errors import BrokerUnavailableError
from service.kafka import clients, compat
from service.kafka.outputs import Record
from service.metrics import Metrics
from service.state import EngineStore

log = logging.getLogger(__name__)

#: Latency samples per commit: observing every reading would cost more than the work.
LATENCY_SAMPLES = 64
#: Changed rows that are sent to the changelog before the commit is due (see advance).
EAGER_ROWS = 256
#: Changelog rows encoded at a time.
_ENCODE_BLOCK = 1024
#: The broker aborts a transaction left open this long (a crashed instance's), which
#: releases the offsets it held; kept short so the group recovers quickly.
TRANSACTION_TIMEOUT_MS = 15_000


@dataclass
class Pending:
    """Work processed since the last commit began."""

    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    #: store rows changed and not yet sent to the changelog in this transaction, by class
    dirty: dict[str, set[int]] = field(default_factory=dict)
    #: engines evicted: (engine id, partition); a tombstone each goes to the changelog
    tombstones: list[tuple[str, int]] = field(default_factory=list)
    event_ts_ms: list[int] = field(default_factory=list)
    #: the anomaly events (also in the outbox as records), logged once committed
    event_list: list[AnomalyEvent] = field(default_factory=list)
    #: anomaly events and dead letters (topic, record) not yet sent: they wait while the
    #: previous transaction commits
    outbox: list[tuple[str, Record]] = field(default_factory=list)
    #: what the work counts once committed: readings by outcome, dead letters by reason,
    #: anomaly events by status, messages
    readings: collections.Counter[str] = field(default_factory=collections.Counter)
    dead_letters: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    messages: int = 0
    evicted: int = 0
    #: the store's batch number (``EngineStore.seq``) of the latest work in here
    seq: int = 0
    started: float = 0.0
    open: bool = False
    begun: bool = False  #: its transaction has begun (exactly-once)

    def touch(self) -> None:
        """Mark the pending work open (new work arrived), starting its interval."""
        if not self.open:
            self.open, self.started = True, time.monotonic()

    def dirty_of(self, class_name: str) -> set[int]:
        """The changed rows of the store of ``class_name`` (created empty)."""
        rows = self.dirty.get(class_name)
        if rows is None:
            rows = self.dirty[class_name] = set()
        return rows

    @property
    def dirty_rows(self) -> int:
        return sum(len(d) for d in self.dirty.values())


@dataclass
class _Committing:
    """A transaction whose commit was sent and is not yet acknowledged."""

    result: Any  #: kafka-python's TransactionalRequestResult of the EndTxn
    offsets: Any  #: and of the offsets (None without offsets): it completes first
    started: float  #: perf_counter when the commit began
    deadline: float  #: monotonic
    work: Pending


class Committer:
    """The producer of one Kafka session and the commits it makes (see the module doc)."""

    def __init__(
        self,
        settings: KafkaSettings,
        stores: EngineStore | ClassStores,
        metrics: Metrics,
        *,
        on_committed: Callable[[Pending], None] | None = None,
    ) -> None:
        self.settings = settings
        self.stores = ClassStores.of(stores)
        self.metrics = metrics
        self.on_committed = on_committed
        self.pending = Pending()
        self.producer: KafkaProducer | None = None
        self._committing: _Committing | None = None
        #: changelog records sent by this committer (the checkpoint policy reads it)
        self.rows_sent = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Create the producer (exactly-once: transactional, which fences an older
        incarnation of this instance and aborts its open transaction)."""
        s = self.settings
        common: dict[str, Any] = {
            # The commit flushes anyway, so a long linger costs no latency and lets the
            # changelog records of a commit interval go out in few, large batches.
            "linger_ms": 100,
            "batch_size": 1 << 20,
            "max_request_size": self.max_request_size,
            "compression_type": None if s.compression == "none" else s.compression,
        }
        if s.exactly_once:
            self.producer = clients.producer(
                s, "producer", transactional_id=f"{s.group_id}-{s.instance_id}", acks="all",
                transaction_timeout_ms=TRANSACTION_TIMEOUT_MS, **common,
            )
            self.producer.init_transactions()
        else:
            self.producer = clients.producer(s, "producer", acks="all", **common)

    @property
    def max_request_size(self) -> int:
        """Largest record the producer sends (a dead letter is cut to fit)."""
        return max(self.settings.max_message_bytes + 65536, 1 << 20)

    @property
    def busy(self) -> bool:
        """Whether there is work not yet committed (pending or in flight)."""
        return self.pending.open or self._committing is not None

    def close(self, consumer: KafkaConsumer | None, *, commit: bool) -> None:
        """Commit what is pending (if ``commit`` and the consumer is there), then close the
        producer. A failing final commit is logged: the next owner reprocesses from the
        last commit."""
        if commit and consumer is not None and self.busy:
            try:
                self.commit(consumer)
            except Exception:
                log.exception("final commit failed; the next owner reprocesses from the last")
        producer, self.producer = self.producer, None
        self.pending = Pending()
        self._committing = None
        if producer is not None:
            try:
                producer.close(timeout=5)
            except Exception as exc:
                # The broker is gone: stop the sender now, or it retries the old
                # transaction's requests once the broker is back (``compat.force_close``).
                log.warning("the producer did not close in 5 s (%s); stopping it without "
                            "sending what it holds", exc)
                compat.force_close(producer)

    # -- committing ----------------------------------------------------------------------
    def advance(self, consumer: KafkaConsumer, catching_up: bool) -> None:
        """Move the pending work towards its commit without waiting for the broker.

        Two regimes, told apart by the last poll (``catching_up``: it was full, more records
        are waiting):

        - Keeping up: a commit starts when the pending work is ``commit_interval_ms`` old,
          and the rows of changed engines go out as soon as there are :data:`EAGER_ROWS`
          of them rather than all at the commit, so the commit waits for little more than
          the broker (latency). An engine that changes again is sent again; the last row
          of a transaction wins.
        - Catching up (a backlog): commits are ``catch_up_commit_interval_ms`` apart and
          rows wait for the commit, so each changed engine's row is written once for more
          readings (throughput; the backlog itself is the latency then).
        """
        if self._committing is not None and not self.finish(block=False):
            return
        p = self.pending
        if not p.open:
            return
        self._begin()
        s = self.settings
        interval_ms = s.catch_up_commit_interval_ms if catching_up else s.commit_interval_ms
        if time.monotonic() - p.started >= interval_ms / 1000:
            self.commit(consumer, block=False)
        elif not catching_up and p.dirty_rows >= EAGER_ROWS:
            self._send_changelog()

    def _begin(self) -> None:
        """Begin the pending work's transaction (once) and send its waiting outputs."""
        assert self.producer is not None
        p = self.pending
        if not p.begun:
            if self.settings.exactly_once:
                self.producer.begin_transaction()
            p.begun = True
        for topic, (key, value, headers) in p.outbox:
            self.producer.send(topic, value=value, key=key, headers=list(headers) or None)
        p.outbox.clear()

    def _send_changelog(self) -> None:
        """Send the current row of every engine changed since the rows were last sent, and
        a tombstone for every engine evicted."""
        assert self.producer is not None
        p, topic = self.pending, self.settings.changelog_topic
        for engine_id, part in p.tombstones:
            self.producer.send(topic, key=engine_id.encode(), value=None, partition=part)
        p.tombstones.clear()
        for name, rows in p.dirty.items():
            store = self.stores.by_name[name]
            with store.lock:
                dirty = np.fromiter((s for s in rows if store.ids[s]), dtype=np.intp)
                # Encoded a block at a time: all rows at once would hold two copies of every
                # row (table and bytes) next to the producer's, ~55 MB at 10,000 engines.
                for block in range(0, len(dirty), _ENCODE_BLOCK):
                    slots = dirty[block:block + _ENCODE_BLOCK]
                    for slot, value, part in zip(
                        slots.tolist(), store.encode_rows(slots),
                        store.partition[slots].tolist(), strict=True,
                    ):
                        self.producer.send(
                            topic, key=store.ids[slot].encode(), value=value, partition=part
                        )
            self.rows_sent += len(dirty)
        p.dirty.clear()

    def commit(self, consumer: KafkaConsumer, *, block: bool = True) -> None:
        """Commit the pending work: changelog, outputs and offsets (one transaction when
        exactly-once). A commit still in flight completes first. With ``block`` (rebalance,
        shutdown, checkpoint) this returns once the broker has acknowledged; otherwise
        :meth:`advance` collects the acknowledgement later."""
        assert self.producer is not None
        self.finish(block=True)
        p = self.pending
        if not p.open:
            return
        started = time.perf_counter()
        self._begin()
        self._send_changelog()
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in p.offsets.items()}
        self.pending = Pending()
        if not self.settings.exactly_once:
            self.producer.flush(timeout=self.settings.timeout_ms / 1000)
            if offsets:
                # asynchronous: a blocking commit would wait for the consumer's I/O thread,
                # which may be running a rebalance callback that waits for this thread; a
                # lost offset commit only means reprocessing, which at-least-once allows
                consumer.commit_async(offsets, callback=_log_failed_commit)
            self._committed(started, p)
            return
        sent, result = compat.begin_commit(self.producer, offsets, consumer.group_metadata())
        self._committing = _Committing(
            result, sent, started, time.monotonic() + self.settings.timeout_ms / 1000, p
        )
        compat.wake_sender(self.producer)
        if block:
            self.finish(block=True)

    def finish(self, *, block: bool) -> bool:
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
        self._committed(c.started, c.work)
        return True

    def abort(self) -> None:
        """Drop the pending work: its transaction (if begun) is aborted, nothing of it is
        committed or counted. A commit in flight completes first (it holds earlier work)."""
        self.finish(block=True)
        p, self.pending = self.pending, Pending()
        if p.begun and self.settings.exactly_once and self.producer is not None:
            self.producer.abort_transaction()

    def abandon(self) -> None:
        """Forget everything without talking to the broker (the partitions were lost: a
        commit could not succeed, and the next transaction or a restart aborts what is
        open)."""
        if self._committing is not None:
            try:  # it may still succeed: the fence is per instance, not per partition
                self.finish(block=True)
            except Exception:
                log.exception("the commit in flight when partitions were lost failed")
            self._committing = None
        if self.pending.begun and self.settings.exactly_once and self.producer is not None:
            try:
                self.producer.abort_transaction()
            except Exception:
                log.exception("abort after losing partitions failed")
        self.pending = Pending()

    def _committed(self, started: float, work: Pending) -> None:
        """Count a commit's work once the broker has acknowledged it."""
        m, now = self.metrics, time.time()
        step = max(1, len(work.event_ts_ms) // LATENCY_SAMPLES)
        for t in work.event_ts_ms[::step]:
            m.end_to_end_seconds.observe(max(0.0, now - t / 1000))
        m.commit_seconds.observe(time.perf_counter() - started)
        m.last_processed.set(now)
        m.messages.inc(work.messages)
        for outcome, n in work.readings.items():
            m.readings.labels(outcome).inc(n)
        for reason, n in work.dead_letters.items():
            m.dead_letters.labels(reason).inc(n)
        for status, n in work.events.items():
            m.anomaly_events.labels(status).inc(n)
        m.engines_evicted.inc(work.evicted)
        self.stores.set_committed(work.seq)
        if self.on_committed is not None:
            self.on_committed(work)

    def _await(self, result: Any, what: str, timeout_s: float) -> None:
        """Wait for a transactional request with a deadline.

        kafka-python's ``commit_transaction`` waits without one, which would hang the loop
        forever while the broker is away; this is the same wait with a deadline.
        """
        assert self.producer is not None
        compat.wake_sender(self.producer)
        if not result.wait(timeout_ms=timeout_s * 1000):
            raise BrokerUnavailableError(
                f"{what} did not complete in {self.settings.timeout_ms} ms"
            )


def _log_failed_commit(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.warning("offset commit failed (at-least-once: those readings are read again): %s",
                    response)
