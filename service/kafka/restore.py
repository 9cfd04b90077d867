"""Restore engine state: a local checkpoint (if usable), then the changelog from there.

:class:`Restorer` restores partitions a step at a time, so the pipeline keeps polling its
group consumer (rebalances, heartbeats, the partitions already restored) while a large fleet
is restored: restoring never happens inside a rebalance callback and never trips the group.
Each partition is read up to the changelog's last stable offset as it was when the restore
of that partition began (read_committed, so an aborted or still open transaction is never
restored); only the last record per engine of every fetched batch is applied, and rows of
the current format go into the store a batch at a time (``EngineStore.restore_table``).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from kafka import KafkaConsumer, TopicPartition

from service.classes import ClassStores, Placement, place_record
from service.config import KafkaSettings
from service.kafka.checkpoint import Checkpoint, CheckpointSet
from service.kafka.clients import changelog_consumer
from service.state import F64, EngineStore

log = logging.getLogger(__name__)


def apply_record(
    stores: EngineStore | ClassStores, engine_id: str, value: bytes | None,
    init_score: F64 | None = None, partition: int = 0,
) -> str | None:
    """Apply one changelog record for display (the fleet view): a row restores the engine
    into its class's store; a tombstone forgets it. A row that does not fit the class's
    model (another layout) or names a class with no model here also forgets it, and the
    reason is returned (None otherwise)."""
    placed = place_record(ClassStores.of(stores, init_score), engine_id, value, partition,
                          recommission=False)
    return placed.why or None


@dataclass
class Applied:
    """What :func:`apply_records` did beyond restoring rows as they were."""

    skipped: int = 0  #: unusable rows (their engines start afresh)
    #: class -> rows of another version of its model, restored: re-warm these slots
    rewarm: dict[str, list[int]] = field(default_factory=dict)
    #: class -> engines whose rows another layout wrote: re-commissioned
    recommissioned: collections.Counter[str] = field(default_factory=collections.Counter)


def apply_records(
    stores: ClassStores, latest: dict[str, tuple[int, bytes | None]], applied: Applied
) -> None:
    """Apply the latest changelog value of each engine in ``latest`` (engine -> (changelog
    partition, value); None or empty: a tombstone). Rows of a store's own header and size go
    in with one copy per field per class; the others one by one through
    :func:`service.classes.place_record` (rows of another model: re-warmed or
    re-commissioned, see there). What happened beyond a plain restore goes to ``applied``."""
    by_header = {(s.row_header(), s.row_size()): s for s in stores}
    fit: dict[str, list[str]] = {}
    odd: list[str] = []
    for engine_id, (_, value) in latest.items():
        store = by_header.get((value[: len(stores.default.row_header())], len(value))) \
            if value else None
        if store is not None and stores.find(engine_id) in (None, store):
            fit.setdefault(store.class_name, []).append(engine_id)
        else:
            odd.append(engine_id)
    for name, ids in fit.items():
        store = stores.by_name[name]
        size = store.row_size()
        table = np.frombuffer(b"".join(latest[e][1] or b"" for e in ids), dtype=np.uint8)
        store.restore_table(ids, table.reshape(len(ids), size), stores.init_scores[name])
    for engine_id in odd:
        partition, value = latest[engine_id]
        placed = place_record(stores, engine_id, value, partition)
        if placed.placement is Placement.REWARM and placed.store is not None:
            applied.rewarm.setdefault(placed.store.class_name, []).append(placed.slot)
        elif placed.placement is Placement.RECOMMISSIONED and placed.store is not None:
            applied.recommissioned[placed.store.class_name] += 1
            log.debug("engine %s re-commissioned: %s", engine_id, placed.why)
        elif placed.why:
            applied.skipped += 1
            log.warning("changelog record of %s skipped: %s", engine_id, placed.why)


class Restorer:
    """Restores the state of partitions into a store, a bounded step at a time.

    Created per Kafka session; :meth:`add` starts partitions (from the checkpoint that
    ``checkpoints`` loads, where it covers them), :meth:`step` makes progress and returns
    the partitions that are done, :meth:`remove` forgets partitions revoked mid-restore
    (their engines are dropped by the caller). Raises from :meth:`step` when the changelog
    cannot be read (the session ends).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        stores: ClassStores,
        checkpoints: Callable[[], CheckpointSet | None] | None = None,
        *,
        on_rows_of_other_models: Callable[[Applied], None] | None = None,
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.checkpoints = checkpoints
        #: told after every step that restored rows of another model (re-warm, counts)
        self.on_rows_of_other_models = on_rows_of_other_models
        self._consumer: KafkaConsumer | None = None
        #: partition -> last stable offset to read up to
        self._ends: dict[int, int] = {}
        #: partitions started, for the progress log: partition -> (started, from checkpoint)
        self._started: dict[int, tuple[float, bool]] = {}
        self.restored_engines = 0  #: rows applied (progress)
        self.skipped = 0  #: unusable rows (their engines re-warm)

    @property
    def active(self) -> set[int]:
        """Partitions being restored."""
        return set(self._ends)

    def _tp(self, p: int) -> TopicPartition:
        return TopicPartition(self.settings.changelog_topic, p)

    def add(self, partitions: set[int]) -> set[int]:
        """Start restoring ``partitions`` (their engines must not be in the store yet).
        Returns those already done (nothing to read)."""
        todo = sorted(set(partitions) - self.active)
        if not todo:
            return set()
        consumer = self._client()
        tps = [self._tp(p) for p in todo]
        begin = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        starts: dict[int, int] = {}
        done: set[int] = set()
        ckpt = self.checkpoints() if self.checkpoints is not None else None
        for p, tp in zip(todo, tps, strict=True):
            began = time.perf_counter()
            start, from_checkpoint = begin[tp], False
            covered = ckpt.offset(p) if ckpt is not None else None
            if ckpt is not None and covered is not None and begin[tp] <= covered <= end[tp]:
                start, from_checkpoint = covered, True
                self._load_checkpoint(ckpt, p)
            elif covered is not None:
                log.info("checkpoint offset %d of changelog partition %d is outside %d..%d; "
                         "restoring it from the beginning", covered, p, begin[tp], end[tp])
            self._started[p] = (began, from_checkpoint)
            if start >= end[tp]:
                done.add(p)
                self._log_done(p)
            else:
                starts[p] = start
                self._ends[p] = end[tp]
        if starts or done:
            assigned = [self._tp(p) for p in sorted(self._ends)]
            if assigned:
                consumer.assign(assigned)
                for p, offset in starts.items():
                    consumer.seek(self._tp(p), offset)
            else:
                consumer.unsubscribe()
        return done

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = changelog_consumer(
                self.settings, "restore", max_poll_records=50_000, fetch_max_bytes=64 << 20,
                max_partition_fetch_bytes=16 << 20,
            )
        return self._consumer

    def end_offsets(self, partitions: set[int]) -> dict[int, int]:
        """The changelog's last stable offset of each of ``partitions``."""
        if not partitions:
            return {}
        ends = self._client().end_offsets([self._tp(p) for p in sorted(partitions)])
        return {tp.partition: off for tp, off in ends.items()}

    def _load_checkpoint(self, ckpt: CheckpointSet, p: int) -> None:
        n = 0
        for name, ids, table in ckpt.blocks(p):
            self.stores.by_name[name].restore_table(ids, table, self.stores.init_scores[name])
            n += len(ids)
        self.restored_engines += n

    def remove(self, partitions: set[int]) -> None:
        """Stop restoring ``partitions`` (revoked)."""
        gone = self.active & set(partitions)
        if not gone or self._consumer is None:
            return
        for p in gone:
            del self._ends[p]
        remaining = [self._tp(p) for p in sorted(self._ends)]
        if remaining:
            self._consumer.assign(remaining)
        else:
            self._consumer.unsubscribe()

    def step(self, timeout_ms: int = 200) -> set[int]:
        """Read and apply what one poll returns; the partitions that reached their end."""
        if not self._ends:
            return set()
        assert self._consumer is not None
        latest: dict[str, tuple[int, bytes | None]] = {}
        for tp, records in self._consumer.poll(timeout_ms=timeout_ms).items():
            for rec in records:
                latest[rec.key.decode()] = (tp.partition, rec.value)
        if latest:
            applied = Applied()
            apply_records(self.stores, latest, applied)
            self.skipped += applied.skipped
            if (applied.rewarm or applied.recommissioned) and self.on_rows_of_other_models:
                self.on_rows_of_other_models(applied)
            self.restored_engines += len(latest)
        done = {p for p, end in self._ends.items()
                if self._consumer.position(self._tp(p)) >= end}
        if done:
            self.remove(done)
            for p in done:
                self._log_done(p)
        return done

    def _log_done(self, p: int) -> None:
        started, from_checkpoint = self._started.pop(p, (time.perf_counter(), False))
        log.info("restored changelog partition %d in %.3f s%s", p,
                 time.perf_counter() - started, " (checkpoint + tail)" if from_checkpoint else "")

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def restore_partitions(
    s: KafkaSettings,
    partitions: Sequence[int],
    store: EngineStore,
    init_score: F64,
    *,
    timeout_s: float = 300.0,
    checkpoint: Checkpoint | None = None,
) -> int:
    """Load the latest committed state of every engine of ``partitions`` into ``store`` and
    return when done (tools and benchmarks; the pipeline uses :class:`Restorer` step by
    step). Returns the number of engines of those partitions in the store. Raises
    ``TimeoutError`` when the end is not reached within ``timeout_s``."""
    stores = ClassStores.of(store, init_score)
    checkpoints = None if checkpoint is None else CheckpointSet({
        stores.default.class_name: checkpoint})
    restorer = Restorer(s, stores, lambda: checkpoints)
    try:
        restorer.add(set(partitions))
        deadline = time.monotonic() + timeout_s
        while restorer.active:
            if time.monotonic() > deadline:
                raise TimeoutError(f"changelog restore of {sorted(partitions)} timed out")
            restorer.step()
    finally:
        restorer.close()
    if restorer.skipped:
        log.warning("%d changelog records did not fit this model; those engines re-warm",
                    restorer.skipped)
    return len(store.engines_of(set(partitions)))
