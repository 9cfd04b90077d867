"""Kafka records the service writes: anomaly events and dead letters.

Each function returns ``(key, value, headers)`` ready for ``KafkaProducer.send``; nothing
here talks to Kafka.
"""

from __future__ import annotations

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
    }
    return event.engine_id.encode(), json.dumps(doc, separators=(",", ":")).encode(), []


def dead_letter_record(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    source: SourcePosition,
    reason: str,
    detail: str,
) -> Record:
    """A dead letter: the original key, value and headers plus headers saying why and whence."""
    out: Headers = list(headers or [])
    out += [
        (REASON_HEADER, reason.encode()),
        (DETAIL_HEADER, detail.encode()[:1000]),
        (SOURCE_TOPIC_HEADER, source.topic.encode()),
        (SOURCE_PARTITION_HEADER, str(source.partition).encode()),
        (SOURCE_OFFSET_HEADER, str(source.offset).encode()),
    ]
    return key, value or b"", out
