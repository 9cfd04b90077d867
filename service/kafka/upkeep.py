"""Upkeep between batches: evicting idle engines and writing local checkpoints."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from service.classes import ClassStores
from service.config import KafkaSettings, StateSettings
from service.kafka.checkpoint import CheckpointSet, CheckpointWriter
from service.kafka.checkpoint import load as load_checkpoint
from service.kafka.session import Session
from service.metrics import Metrics

log = logging.getLogger(__name__)

#: Longest time between checks for idle engines to evict.
EVICT_EVERY_S = 30.0
#: Shortest time between checkpoints written because the changelog tail grew.
CHECKPOINT_MIN_INTERVAL_S = 5.0


class Upkeep:
    """Eviction (``state.idle_evict_s``) and checkpoints (``state.checkpoint_*``) of one
    store. Called by the pipeline with its processing lock held."""

    def __init__(
        self, kafka: KafkaSettings, state: StateSettings, stores: ClassStores, metrics: Metrics
    ) -> None:
        self.state = state
        self.stores = stores
        self.metrics = metrics
        self.changelog_topic = kafka.changelog_topic
        #: the default class's checkpoint file (the other classes' are beside it)
        self.path: Path | None = None
        #: a checkpoint writer per class
        self.writers: dict[str, CheckpointWriter] = {}
        if state.checkpoint_dir is not None:
            base = f"{kafka.group_id}.{kafka.instance_id}.{kafka.changelog_topic}"
            folder = state.checkpoint_dir.expanduser()
            self.path = folder / f"{base}.ckpt"
            for store in stores:
                path = self.path if store is stores.default else (
                    folder / f"{base}.{store.class_name}.ckpt")
                self.writers[store.class_name] = CheckpointWriter(
                    path, store, kafka.changelog_topic
                )
        self._next_evict = 0.0
        self._last_checkpoint = time.monotonic()
        self._rows_at_checkpoint = 0

    # -- eviction ------------------------------------------------------------------------
    def maybe_evict(self, session: Session) -> None:
        """Every :data:`EVICT_EVERY_S` (sooner for short spans): evict engines idle for
        ``state.idle_evict_s`` of event time, measured against the newest reading this
        instance holds, so a replay or a restart after downtime evicts nothing that is
        still reporting. Their tombstones go out with the pending work."""
        idle_ms = self.state.idle_evict_s * 1000
        now = time.monotonic()
        if not idle_ms or now < self._next_evict:
            return
        self._next_evict = now + min(EVICT_EVERY_S, max(1.0, idle_ms / 10_000))
        newest = max((int(s.last_ts[s.active_slots()].max(initial=np.iinfo(np.int64).min))
                      for s in self.stores), default=0)
        for store in self.stores:
            with store.lock:
                active = store.active_slots()
                if not active.size:
                    continue
                last = store.last_ts[active]
                idle = active[(last < newest - idle_ms) & (store.count[active] > 0)]
                if not idle.size:
                    continue
                p = session.committer.pending
                p.touch()
                for slot in idle.tolist():
                    engine_id = store.ids[slot]
                    p.tombstones.append((engine_id, int(store.partition[slot])))
                    store.forget(engine_id)
            p.evicted += int(idle.size)
            log.info("evicting %d engines of class %s idle for more than %.0f s", idle.size,
                     store.class_name, idle_ms / 1000)

    # -- checkpoints -----------------------------------------------------------------------
    def maybe_checkpoint(self, session: Session, partitions: set[int]) -> None:
        """Write a checkpoint of ``partitions`` (owned, restored) when the changelog rows
        sent since the last one reach the number of engines (the tail a restart would read
        is then as large as a snapshot), at most every :data:`CHECKPOINT_MIN_INTERVAL_S`,
        or ``state.checkpoint_interval_s`` after the last when anything changed."""
        if not self.writers:
            return
        rows = session.committer.rows_sent - self._rows_at_checkpoint
        since = time.monotonic() - self._last_checkpoint
        if rows and (
            (rows >= max(len(self.stores), 1000) and since >= CHECKPOINT_MIN_INTERVAL_S)
            or since >= self.state.checkpoint_interval_s
        ):
            self.checkpoint(session, partitions)

    def checkpoint(self, session: Session, partitions: set[int]) -> None:
        """Commit everything pending (blocking), then snapshot the engines of
        ``partitions`` with the changelog offsets they reflect. A failure to write is
        logged, not raised (checkpoints only save time)."""
        if not self.writers or not partitions:
            return
        started = time.perf_counter()
        session.committer.commit(session.consumer)
        # The last stable offsets, asked through the restore's own consumer (not the group
        # consumer, whose I/O thread may be waiting for the caller's lock in a rebalance
        # callback): at most what the committed rows reflect (a lagging transaction marker
        # only makes the tail read at restore a little longer).
        ends = session.restorer.end_offsets(partitions)
        for writer in self.writers.values():
            try:
                writer.write(ends)
            except OSError:
                log.exception("could not write checkpoint %s", writer.path)
        self._last_checkpoint = time.monotonic()
        self._rows_at_checkpoint = session.committer.rows_sent
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)

    def new_session(self) -> None:
        """A new committer counts its rows from zero."""
        self._rows_at_checkpoint = 0

    def load(self) -> CheckpointSet | None:
        """The checkpoints of every class (waits for those being written); None without
        checkpoints."""
        if not self.writers:
            return None
        self.wait()
        return CheckpointSet({
            name: load_checkpoint(w.path, w.store, self.changelog_topic,
                                  self.state.checkpoint_max_age_s)
            for name, w in self.writers.items()
        })

    def wait(self) -> None:
        """Block until the checkpoints being written (if any) are durable."""
        for writer in self.writers.values():
            writer.wait()
