"""Restore engine state from the compacted changelog topic."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from kafka import TopicPartition

from service.config import KafkaSettings
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


def restore_partitions(
    s: KafkaSettings,
    partitions: Sequence[int],
    store: EngineStore,
    init_score: F64,
    *,
    timeout_s: float = 300.0,
) -> int:
    """Load the latest committed state of every engine of ``partitions`` into ``store``.

    Called by the pipeline, with the partitions paused, after they were assigned. Reads each
    changelog partition from the beginning to its last stable offset (read_committed, so an
    aborted or still open transaction is never restored). Records written with other
    dimensions (another window length or model) are skipped and their engines start afresh;
    an empty value (tombstone) forgets the engine. Returns the number of engines restored.
    Raises ``TimeoutError`` when the end is not reached within ``timeout_s``.
    """
    if not partitions:
        return 0
    tps = [TopicPartition(s.changelog_topic, p) for p in partitions]
    consumer = changelog_consumer(
        s, "restore", max_poll_records=50_000, fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    restored: set[str] = set()
    skipped = 0
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in tps if end[tp] > consumer.position(tp)}
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"changelog restore of {sorted(partitions)} timed out")
            for records in consumer.poll(timeout_ms=200).values():
                for rec in records:
                    engine_id = rec.key.decode()
                    unfit = apply_record(store, engine_id, rec.value, init_score)
                    if unfit is None and rec.value:
                        restored.add(engine_id)
                        continue
                    restored.discard(engine_id)
                    if unfit is not None:
                        skipped += 1
                        log.warning("changelog record of %s skipped: %s", engine_id, unfit)
            remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
    finally:
        consumer.close()
    if skipped:
        log.warning("%d changelog records did not fit this model; those engines re-warm", skipped)
    return len(restored)
