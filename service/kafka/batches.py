"""Polling the readings topic into processing batches that span many partitions."""

from __future__ import annotations

import threading
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from service.kafka import compat

#: Most partition chunks one batch gathers.
MAX_CHUNKS = 12
#: Longest wait for a group join to complete before polling (see compat.join).
JOIN_WAIT_MS = 5000

Records = dict[TopicPartition, list[Any]]


class BatchPoller:
    """Takes batches of records from a group consumer (see :meth:`poll`).

    Shared with the rebalance callbacks, under :attr:`lock`: ``revoked`` (partitions revoked
    or lost while a batch is gathered; their records are dropped) and ``held`` (partitions
    paused until their state is restored; never resumed here).
    """

    def __init__(self, consumer: KafkaConsumer, max_poll_records: int) -> None:
        self.consumer = consumer
        self.max_poll_records = max_poll_records
        self.lock = threading.Lock()
        self.revoked: set[TopicPartition] = set()
        self.held: set[TopicPartition] = set()
        #: readings per message, averaged over recent polls (batch messages hold many)
        self.per_message = 1.0
        #: whether the last poll was full: records are waiting (a backlog)
        self.catching_up = False

    def poll(self, timeout_ms: int) -> Records:
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
        consumer = self.consumer
        chunk = max(1, int(self.max_poll_records / self.per_message))
        with self.lock:
            self.revoked.clear()
        compat.unpark(consumer)
        if not compat.group_settled(consumer):
            compat.join(consumer, JOIN_WAIT_MS)
        records: Records = consumer.poll(timeout_ms=timeout_ms, max_records=chunk)
        self.catching_up = sum(map(len, records.values())) >= chunk
        if not records:
            return records
        return self._gather(records, chunk)

    def _gather(self, records: Records, chunk: int) -> Records:
        """The rest of :meth:`poll`: the other partitions' chunks, into ``records``."""
        consumer = self.consumer
        paused: list[TopicPartition] = []
        misses = 0
        # Under a backlog, wait a little for the other partitions' fetches: a batch that
        # spans more engines is processed in fewer, wider rounds.
        wait_ms = 5 if self.catching_up else 0
        try:
            # kafka-python restores one parked partition per poll, so a poll may come back
            # empty while others are still parked: stop after two empty polls in a row.
            for _ in range(2 * MAX_CHUNKS):
                fresh = [tp for tp in records if tp not in paused]
                consumer.pause(*fresh)
                paused += fresh
                if len(paused) >= MAX_CHUNKS or misses == 2:
                    break
                compat.unpark(consumer)
                more = consumer.poll(timeout_ms=wait_ms, max_records=chunk)
                misses = 0 if more else misses + 1
                for tp, recs in more.items():
                    records.setdefault(tp, []).extend(recs)
        finally:
            with self.lock:  # not the partitions held for their restore
                assigned = consumer.assignment()
                back = [tp for tp in paused if tp in assigned and tp not in self.held]
                if back:
                    consumer.resume(*back)
        return records

    def drop_revoked(self, records: Records) -> None:
        """Forget the records of partitions revoked since :meth:`poll` began.

        Called with the pipeline's processing lock held, just before handling: a rebalance
        in one of the polls, or on the I/O thread before the lock was taken, revoked them,
        so they belong to another owner now (handling them would write that owner's engines
        and commit its offsets), or, if the partition came back here, they are read again:
        the position goes back to the first of them.
        """
        with self.lock:
            revoked, self.revoked = self.revoked, set()
        if not revoked:
            return
        assigned = self.consumer.assignment()
        for tp in revoked & records.keys():
            recs = records.pop(tp)
            if recs and tp in assigned:
                # The revoke committed everything processed before these records, so the
                # committed offset is their first: no position lookup (it could block on
                # the consumer's I/O thread while a rebalance callback waits for our lock).
                self.consumer.seek(tp, min(r.offset for r in recs))

    def hold(self, partitions: set[TopicPartition]) -> None:
        """Pause ``partitions`` until :meth:`release` (their state is being restored)."""
        with self.lock:
            if partitions:
                self.consumer.pause(*partitions)
            self.held |= partitions

    def release(self, partitions: set[TopicPartition]) -> None:
        """Resume held ``partitions`` that are still assigned."""
        with self.lock:
            self.held -= partitions
            back = [tp for tp in partitions if tp in self.consumer.assignment()]
            if back:
                self.consumer.resume(*back)

    def forget(self, partitions: set[TopicPartition]) -> None:
        """``partitions`` were revoked or lost: drop their records and any hold."""
        with self.lock:
            self.revoked |= partitions
            self.held -= partitions

    def note_messages(self, messages: int, readings: int) -> None:
        """Track readings per message (the next polls' message budget follows it)."""
        if messages:
            self.per_message = 0.5 * self.per_message + 0.5 * max(1.0, readings / messages)
