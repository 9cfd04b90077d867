"""Logging for every command: one text line or one JSON object per record.

:func:`configure` is called once by the command line (``service.cli``) with the level and
format from the settings (``log.level``, ``log.format``) or the ``--log-level`` and
``--log-format`` options. In JSON form each line is an object with ``ts`` (RFC 3339 UTC),
``level``, ``logger`` and ``message``, plus every field a call passed in ``extra`` (for
example the engine, statuses and score of :func:`log_status_changes`) and ``exc_info`` when
there is a traceback, so a log shipper needs no parsing rules.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from service.domain import AnomalyEvent, Status

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

status_log = logging.getLogger("vibewatch.status")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """Send every logger's records to stderr at ``level`` in format ``fmt`` (text|json).

    Replaces the root handlers (so a second call reconfigures). kafka-python logs every
    connection at INFO: its loggers keep WARNING and above unless ``level`` is DEBUG.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))


def log_status_changes(events: Iterable[AnomalyEvent]) -> None:
    """One log line per status change: engine, previous and new status, score, event time,
    cause, and the channels that drove it when the event carries them.

    Called by the pipeline once the events' transaction is committed. Raised to warning or
    alarm, or back to normal: INFO (WARNING for an alarm); leaving warm-up: DEBUG, since
    every engine does it once.
    """
    for e in events:
        if e.status is Status.ALARM:
            level = logging.WARNING
        elif e.previous is Status.WARMUP:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if not status_log.isEnabledFor(level):
            continue
        fields: dict[str, Any] = {
            "engine_id": e.engine_id, "previous": str(e.previous), "status": str(e.status),
            "score": round(e.score, 6), "event_ts_ms": e.ts_ms,
            "model_version": e.model_version, "cause": e.cause,
        }
        text = f"engine {e.engine_id}: {e.previous} -> {e.status} (score {e.score:.3f}"
        if len(e.contributions) > 1:  # which channels drive it (one channel: nothing to say)
            fields["contributions"] = dict(e.contributions)
            top = ", ".join(f"{c} {v:.0%}" for c, v in e.contributions[:3])
            text += f", driven by {top})"
        else:
            text += ")"
        status_log.log(level, text, extra=fields)
