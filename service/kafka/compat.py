"""Every use of kafka-python's private attributes, in one place.

kafka-python is pinned (pyproject.toml) to the version these were written and tested
against; ``tests/service/kafka/test_compat.py`` fails if an attribute used here disappears or
changes shape, so an upgrade shows at once what to revisit. Why each is needed:

* :func:`begin_commit`: ``KafkaProducer.commit_transaction`` blocks without a deadline and
  cannot be pipelined; the transaction manager's own requests can (offsets, then EndTxn).
* :func:`wake_sender`: those requests go out when the sender thread wakes up.
* :func:`group_stable`, :func:`group_settled`: the coordinator's view of whether a
  rebalance is in progress or due (the public API does not say).
* :func:`join`: drives a group join to its end without fetching (see there).
* :func:`unpark`: works around parked fetched records that never come back (see there).
* :func:`force_close`: stops a producer whose graceful close failed (see there).
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer


def begin_commit(
    producer: KafkaProducer, offsets: dict[Any, Any], group_metadata: Any
) -> tuple[Any, Any]:
    """Queue the consumed ``offsets`` (if any) and the commit of the open transaction.

    Returns kafka-python's ``TransactionalRequestResult`` of the offsets (None without
    offsets) and of the EndTxn; neither is waited for. The transaction manager sends one
    request at a time, by priority: AddOffsetsToTxn and TxnOffsetCommit go before EndTxn,
    which also waits until the transaction's records are sent.
    """
    tm = producer._transaction_manager
    sent = tm.send_offsets_to_transaction(offsets, group_metadata) if offsets else None
    return sent, tm.begin_commit()


def wake_sender(producer: KafkaProducer) -> None:
    """Wake the producer's sender thread so queued requests go out now."""
    producer._sender.wakeup()


def group_stable(consumer: KafkaConsumer) -> bool:
    """Whether the consumer's group membership is stable (no rebalance in progress)."""
    return bool(consumer._coordinator.stable())


def group_settled(consumer: KafkaConsumer) -> bool:
    """Whether the consumer is a stable member with no rejoin pending (a poll will not
    start or continue a join)."""
    coordinator = consumer._coordinator
    return bool(coordinator.stable() and not coordinator.need_rejoin())


def join(consumer: KafkaConsumer, timeout_ms: int) -> None:
    """Drive the consumer's group join until it completes (or ``timeout_ms`` passes),
    running the rebalance callbacks, without fetching.

    kafka-python 3.0 was seen to leave a join half done (no assignment, no heartbeats: the
    member expires) when the polls that drive it time out around its completion, as short
    polls do; one call that waits for the whole join avoids that. ``KafkaConsumer.poll``
    with a long timeout would also wait for records after the join."""
    consumer._coordinator.poll(timeout_ms=timeout_ms)


def unpark(consumer: KafkaConsumer) -> None:
    """Work around kafka-python 3.0's parking of a paused partition's fetched records.

    ``Fetcher.fetched_records`` parks the rest of a partition that is paused mid-chunk and
    brings it back only when its current chunk is ``None``, but it leaves an exhausted
    (empty, not ``None``) chunk there when its queue runs dry: the parked records then
    never come back, and the fetcher never fetches that partition again (it still counts
    as buffered), so the partition stalls for good. Dropping the exhausted chunk, which
    holds nothing, lets the next poll restore the parked records. A no-op when the
    fetcher's internals differ (a version without parking refetches paused data anyway).
    """
    fetcher: Any = getattr(consumer, "_fetcher", None)
    current = getattr(fetcher, "_next_partition_records", None)
    if current is not None and not current and getattr(fetcher, "_paused_partition_records", None):
        fetcher._next_partition_records = None


def force_close(producer: KafkaProducer, timeout_s: float = 5.0) -> None:
    """Stop the producer's sender thread without sending what it still holds.

    ``KafkaProducer.close`` flushes first and raises when the flush times out (a broker
    that is down), before it stops the sender: the sender thread then lives on and, once
    the broker is back, retries the old transaction's requests. A retried
    ``TxnOffsetCommit`` that lands after the new producer of the same transactional id has
    fenced the old one leaves offsets pending in ``__consumer_offsets`` that no transaction
    marker will ever resolve (a hanging transaction): every fetch of the group's committed
    offsets then fails with ``UNSTABLE_OFFSET_COMMIT``, and the instance never gets ready.
    """
    sender: Any = producer._sender
    if sender is not None and sender.is_alive():
        sender.force_close()
        sender.join(timeout_s)


def missing_attributes(producer: KafkaProducer | None, consumer: KafkaConsumer | None) -> list[str]:
    """The private attributes used here that these clients lack (empty when all exist)."""
    wanted: list[tuple[Any, str]] = []
    if producer is not None:
        tm = getattr(producer, "_transaction_manager", None)
        sender = getattr(producer, "_sender", None)
        wanted += [(producer, "_transaction_manager"), (producer, "_sender"),
                   (sender, "wakeup"), (sender, "force_close")]
        if tm is not None:
            wanted += [(tm, "send_offsets_to_transaction"), (tm, "begin_commit")]
    if consumer is not None:
        fetcher = getattr(consumer, "_fetcher", None)
        coordinator = getattr(consumer, "_coordinator", None)
        wanted += [(consumer, "_coordinator"), (coordinator, "stable"),
                   (coordinator, "need_rejoin"), (coordinator, "poll"),
                   (consumer, "_fetcher"), (fetcher, "_next_partition_records"),
                   (fetcher, "_paused_partition_records")]
    return [name for obj, name in wanted if obj is None or not hasattr(obj, name)]
