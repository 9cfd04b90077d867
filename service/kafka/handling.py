"""Handling one batch of records: decode, bound, process, and route what fails.

Each message is decoded on its own; whatever goes wrong with it (an
:class:`~service.errors.InvalidMessageError` or any other exception) makes it a dead letter
with its reason. Readings of new engines beyond ``state.max_engines`` are dead letters too
(``engine_limit``). The valid readings of the batch are then processed together. If that
raises, :meth:`BatchHandler.handle` returns the exception: the pipeline rolls back to the
last commit and marks the batch's partitions (:attr:`BatchHandler.isolate`) so that, read
again, every message up to the end of the failed batch is processed on its own, with its
engine's row backed up first: the message at fault becomes a ``processing_failed`` dead
letter and nothing else is lost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import TopicPartition

from service.config import KafkaSettings, StateSettings
from service.domain import SourcePosition
from service.engine_classes import EngineClasses
from service.errors import InvalidMessageError
from service.ingest.columns import ReadingColumns
from service.kafka.batches import Records
from service.kafka.commands import command_name, decode_command
from service.kafka.committer import LATENCY_SAMPLES
from service.kafka.outputs import dead_letter_record, event_record
from service.kafka.session import Session
from service.metrics import Metrics
from service.processor import BatchResult

log = logging.getLogger(__name__)


class BatchHandler:
    """Turns batches of records into pending work of a session's committer."""

    def __init__(
        self,
        settings: KafkaSettings,
        state: StateSettings,
        classes: EngineClasses,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.max_engines = state.max_engines
        self.classes = classes
        self.router = classes.router
        self.stores = classes.stores
        self.metrics = metrics
        #: after a processing failure: partition -> offset below which records are
        #: processed one message at a time (kept across sessions: offsets stay meaningful)
        self.isolate: dict[TopicPartition, int] = {}

    def handle(self, session: Session, records: Records) -> Exception | None:
        """Decode and process ``records``; their outputs wait in the committer's pending
        work. Returns the exception if processing the batch raised (nothing of it is then
        to be committed: the caller rolls back), None otherwise."""
        started = time.perf_counter()
        p = session.committer.pending
        p.touch()
        p.seq = self.stores.next_seq()
        self.router.begin_batch()
        n_messages = sum(map(len, records.values()))
        p.messages += n_messages
        # Records up to the end of a batch that failed before: one message at a time, first
        # (they are the oldest of their partitions).
        rest: dict[TopicPartition, list[Any]] = {}
        for tp, batch in records.items():
            bound = self.isolate.get(tp)
            if bound is None:
                rest[tp] = batch
                continue
            for rec in batch:
                if rec.offset < bound:
                    self._process_one(session, tp, rec)
            rest[tp] = [rec for rec in batch if rec.offset >= bound]
            if batch and batch[-1].offset + 1 >= bound:
                del self.isolate[tp]
        cols = self.router.columns()
        admit = self._admission(n_messages)
        decoded = 0
        for tp, batch in rest.items():
            for rec in batch:
                name = command_name(rec.headers) if rec.headers else None
                if name is None:
                    self._decode(session, cols, tp, rec, admit)
                    continue
                # A command applies between the engine's readings before and after it.
                decoded += _readings(cols)
                failed = self._process(session, cols, records)
                if failed is not None:
                    return failed
                cols = self.router.columns()
                self._command(session, tp, rec, name)
        for tp, batch in records.items():
            if batch:
                p.offsets[tp] = batch[-1].offset + 1
        session.poller.note_messages(n_messages, decoded + _readings(cols))
        failed = self._process(session, cols, records)
        if failed is not None:
            return failed
        m = self.metrics
        m.engines_tracked.set(len(self.stores))
        m.batch_seconds.observe(time.perf_counter() - started)
        return None

    def _process(
        self, session: Session, cols: dict[str, ReadingColumns], records: Records
    ) -> Exception | None:
        """Process decoded readings, a class at a time; on an exception mark ``records``
        for processing one message at a time when they are read again, and return it."""
        processed = 0
        for name, class_cols in cols.items():
            if not len(class_cols):
                continue
            try:
                result = self.classes.by_name[name].processor.process_columns(class_cols)
            except Exception as exc:
                for tp, batch in records.items():
                    if batch:
                        self.isolate[tp] = max(self.isolate.get(tp, 0), batch[-1].offset + 1)
                return exc
            self._publish(session, result, name)
            processed += result.processed
        self.metrics.batch_size.observe(processed)
        return None

    def _command(self, session: Session, tp: TopicPartition, rec: Any, name: str) -> None:
        """Apply an operator command (see :mod:`service.kafka.commands`); a bad one is a
        dead letter, one for an engine not tracked here is logged and dropped."""
        try:
            command = decode_command(name, rec.value, rec.key)
        except InvalidMessageError as exc:
            self._dead_letter(session, tp, rec, exc.reason, exc.detail)
            return
        owner = self.classes.of_engine(command.engine_id)
        event = None if owner is None else owner.processor.rebaseline(
            command.engine_id, command.ts_ms, command.commission_s)
        if owner is None or event is None:
            log.warning("%s for engine %s, which is not tracked here: ignored", name,
                        command.engine_id)
            return
        session.committer.pending.dirty_of(owner.name).add(
            owner.store.index[command.engine_id]
        )
        self._publish(session, BatchResult(events=[event]), owner.name)
        log.info("engine %s re-baselined (was %s)", command.engine_id, event.previous)

    def forget(self, partitions: set[TopicPartition]) -> None:
        """``partitions`` moved to another instance: their isolation is its business."""
        for tp in partitions:
            self.isolate.pop(tp, None)

    def _admission(self, n_messages: int) -> set[str] | None:
        """New engines admitted in this batch, when the engine cap could be reached by it
        (None: far from the cap, nothing to check)."""
        if len(self.stores) + n_messages <= self.max_engines:
            return None
        return set()

    def _decode(
        self, session: Session, cols: dict[str, ReadingColumns], tp: TopicPartition, rec: Any,
        admit: set[str] | None,
    ) -> str | None:
        """Decode ``rec`` into its class's ``cols``; a bad message becomes a dead letter.
        Returns the class it was added to, or None."""
        try:
            name = self.router.decode_into(cols, rec.value, rec.key, tp.partition)
        except InvalidMessageError as exc:
            self._dead_letter(session, tp, rec, exc.reason, exc.detail)
            return None
        except Exception as exc:  # anything else about one message is that message's fault
            self._dead_letter(session, tp, rec, "decode_failed", f"{type(exc).__name__}: {exc}")
            return None
        if admit is not None:
            engine_id = cols[name].engine_ids[-1]
            if self.stores.find(engine_id) is None and engine_id not in admit:
                if len(self.stores) + len(admit) >= self.max_engines:
                    cols[name].pop_last()
                    self._dead_letter(
                        session, tp, rec, "engine_limit",
                        f"new engine {engine_id!r} beyond state.max_engines={self.max_engines}",
                    )
                    return None
                admit.add(engine_id)
        return name

    def _process_one(self, session: Session, tp: TopicPartition, rec: Any) -> None:
        """Process one message on its own (after a processing failure): if it raises, its
        engine's row is put back as it was and the message becomes a dead letter."""
        name = command_name(rec.headers) if rec.headers else None
        if name is not None:
            self._command(session, tp, rec, name)
            return
        cols = self.router.columns()
        name = self._decode(session, cols, tp, rec, self._admission(1))
        if name is None:
            return
        owner = self.classes.by_name[name]
        store, engine_id = owner.store, cols[name].engine_ids[0]
        slot = store.index.get(engine_id)
        backup = None if slot is None else store.encode_row(slot)
        try:
            result = owner.processor.process_columns(cols[name])
        except Exception as exc:
            with store.lock:
                if backup is None:
                    store.forget(engine_id)
                else:
                    store.restore_row(engine_id, backup, owner.scoring.init_state(1)[0])
                    store.changed_seq[store.index[engine_id]] = store.seq
            log.warning("processing %s[%d]@%d raised %s: dead letter", tp.topic, tp.partition,
                        rec.offset, exc, exc_info=exc)
            self._dead_letter(session, tp, rec, "processing_failed",
                              f"{type(exc).__name__}: {exc}")
            return
        self._publish(session, result, name)

    def _dead_letter(
        self, session: Session, tp: TopicPartition, rec: Any, reason: str, detail: str
    ) -> None:
        log.warning("dead letter %s[%d]@%d: %s: %s", tp.topic, tp.partition, rec.offset,
                    reason, detail[:200])
        committer = session.committer
        limit = min(committer.max_request_size, session.topics.dead_letter_max_bytes)
        p = committer.pending
        p.outbox.append((self.settings.dead_letter_topic, dead_letter_record(
            rec.key, rec.value, rec.headers,
            SourcePosition(tp.topic, tp.partition, rec.offset), reason, detail, limit,
        )))
        p.readings["invalid"] += 1
        p.dead_letters[reason] += 1

    def _publish(self, session: Session, result: BatchResult, class_name: str) -> None:
        p = session.committer.pending
        for event in result.events:
            p.outbox.append((self.settings.anomalies_topic, event_record(event)))
            p.events[str(event.status)] += 1
        if result.events:
            p.event_list.extend(result.events)
        if result.dirty:
            p.dirty_of(class_name).update(result.dirty)
        p.event_ts_ms.extend(result.event_ts_ms[-LATENCY_SAMPLES:])
        p.readings["processed"] += result.processed
        p.readings["duplicate"] += result.duplicate
        p.readings["late"] += result.late


def _readings(cols: dict[str, ReadingColumns]) -> int:
    return sum(len(c) for c in cols.values())
