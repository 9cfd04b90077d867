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

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
from kafka import KafkaConsumer, TopicPartition

from service.config import KafkaSettings
from service.kafka.checkpoint import Checkpoint
from service.kafka.clients import changelog_consumer
from service.state import F64, EngineStore

log = logging.getLogger(__name__)


def apply_record(
    store: EngineStore, engine_id: str, value: bytes | None, init_score: F64
) -> str | None:
    """Apply one changelog record to ``store``: a row restores the engine; a tombstone (empty
    value) forgets it. A row written with other dimensions (another window length or model)
    also forgets it, and the reason is returned (None otherwise)."""
    if not value:
        store.forget(engine_id)
        return None
    try:
        store.restore_row(engine_id, value, init_score)
    except ValueError as exc:
        store.forget(engine_id)
        return str(exc)
    return None


def apply_records(
    store: EngineStore, latest: dict[str, bytes | None], init_score: F64
) -> int:
    """Apply the latest changelog value of each engine in ``latest`` (None or empty: a
    tombstone). Rows of the store's own format and size go in with one copy per field;
    the others one by one through :func:`apply_record`. Returns how many rows were
    skipped as unusable (their engines start afresh)."""
    header, size = store.row_header(), store.row_size()
    fit: list[str] = []
    odd: list[str] = []
    for engine_id, value in latest.items():
        (fit if value and len(value) == size and value.startswith(header) else odd).append(
            engine_id
        )
    if fit:
        table = np.frombuffer(b"".join(latest[e] or b"" for e in fit), dtype=np.uint8)
        store.restore_table(fit, table.reshape(len(fit), size), init_score)
    skipped = 0
    for engine_id in odd:
        unfit = apply_record(store, engine_id, latest[engine_id], init_score)
        if unfit is not None:
            skipped += 1
            log.warning("changelog record of %s skipped: %s", engine_id, unfit)
    return skipped


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
        store: EngineStore,
        init_score: F64,
        checkpoints: Callable[[], Checkpoint | None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.init_score = init_score
        self.checkpoints = checkpoints
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

    def _load_checkpoint(self, ckpt: Checkpoint, p: int) -> None:
        n = 0
        for ids, table in ckpt.blocks(p):
            self.store.restore_table(ids, table, self.init_score)
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
        latest: dict[str, bytes | None] = {}
        for records in self._consumer.poll(timeout_ms=timeout_ms).values():
            for rec in records:
                latest[rec.key.decode()] = rec.value
        if latest:
            with self.store.lock:
                self.skipped += apply_records(self.store, latest, self.init_score)
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
    restorer = Restorer(s, store, init_score, lambda: checkpoint)
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
