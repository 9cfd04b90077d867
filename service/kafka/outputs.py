"""Kafka records the service writes: anomaly events and dead letters.

Each function returns ``(key, value, headers)`` ready for ``KafkaProducer.send``; nothing
here talks to Kafka.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from service.domain import AnomalyEvent, SourcePosition

Headers = list[tuple[str, bytes]]
Record = tuple[bytes | None, bytes, Headers]

#: Dead-letter header names. The value of a dead letter is the original message, unchanged.
REASON_HEADER = "vibewatch.reason"
DETAIL_HEADER = "vibewatch.detail"
SOURCE_TOPIC_HEADER = "vibewatch.source.topic"
SOURCE_PARTITION_HEADER = "vibewatch.source.partition"
SOURCE_OFFSET_HEADER = "vibewatch.source.offset"
#: Set on a dead letter whose value was cut to fit the size limit, with the original's
#: size in bytes and SHA-256 (hex), so the original can be found at its source offset.
TRUNCATED_HEADER = "vibewatch.truncated"
ORIGINAL_SIZE_HEADER = "vibewatch.original.size"
ORIGINAL_SHA256_HEADER = "vibewatch.original.sha256"
#: Bytes a record takes beyond its key, value and headers' names and values (record batch
#: and record framing, with room to spare).
RECORD_OVERHEAD = 1024


def iso_ms(ts_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC text with millisecond precision."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def event_record(event: AnomalyEvent) -> Record:
    """An anomaly event for the anomalies topic, keyed by engine id."""
    doc = {
        "engine_id": event.engine_id,
        "ts": iso_ms(event.ts_ms),
        "ts_ms": event.ts_ms,
        "previous": str(event.previous),
        "status": str(event.status),
        "score": event.score,
        "model_version": event.model_version,
        "cause": event.cause,
        "contributions": dict(event.contributions),
    }
    return event.engine_id.encode(), json.dumps(doc, separators=(",", ":")).encode(), []


def dead_letter_record(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    source: SourcePosition,
    reason: str,
    detail: str,
    max_bytes: int | None = None,
) -> Record:
    """A dead letter: the original key, value and headers plus headers saying why and whence.

    With ``max_bytes`` (the smaller of the producer's and the dead-letter topic's limits), a
    dead letter that would not fit is cut: the value is truncated (then the original
    headers dropped, if still too large) and headers give the original size and SHA-256, so
    it is never lost silently and never blocks the stream.
    """
    value = value or b""
    ours: Headers = [
        (REASON_HEADER, reason.encode()),
        (DETAIL_HEADER, detail.encode()[:1000]),
        (SOURCE_TOPIC_HEADER, source.topic.encode()),
        (SOURCE_PARTITION_HEADER, str(source.partition).encode()),
        (SOURCE_OFFSET_HEADER, str(source.offset).encode()),
    ]
    original = list(headers or [])
    if max_bytes is None or _size(key, value, original + ours) <= max_bytes:
        return key, value, original + ours
    ours += [
        (TRUNCATED_HEADER, b"true"),
        (ORIGINAL_SIZE_HEADER, str(len(value)).encode()),
        (ORIGINAL_SHA256_HEADER, hashlib.sha256(value).hexdigest().encode()),
    ]
    if _size(key, b"", original + ours) > max_bytes:
        original = []  # headers alone too large: keep ours only
    room = max(0, max_bytes - _size(key, b"", original + ours))
    return key, value[:room], original + ours


def _size(key: bytes | None, value: bytes, headers: Headers) -> int:
    """An upper bound of the bytes a record takes on the wire (uncompressed)."""
    return (RECORD_OVERHEAD + len(key or b"") + len(value)
            + sum(len(k.encode()) + len(v or b"") + 10 for k, v in headers))
