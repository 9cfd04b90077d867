"""Logs: a line per status change with its fields; the JSON format carries them."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from service.domain import AnomalyEvent, Status
from service.logs import JsonFormatter, log_status_changes


def _event(previous: Status, status: Status, score: float = 0.42) -> AnomalyEvent:
    return AnomalyEvent("engine-0007", 1_795_608_000_000, previous, status, score, "ims-3")


def test_status_changes_are_logged_with_their_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vibewatch.status")
    log_status_changes([
        _event(Status.WARMUP, Status.NORMAL, 0.01),
        _event(Status.NORMAL, Status.WARNING),
        _event(Status.WARNING, Status.ALARM, 0.93),
        _event(Status.ALARM, Status.NORMAL, 0.05),
    ])
    got = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert got == [
        ("DEBUG", "engine engine-0007: warmup -> normal (score 0.010)"),
        ("INFO", "engine engine-0007: normal -> warning (score 0.420)"),
        ("WARNING", "engine engine-0007: warning -> alarm (score 0.930)"),
        ("INFO", "engine engine-0007: alarm -> normal (score 0.050)"),
    ]
    alarm = caplog.records[2]
    assert (alarm.engine_id, alarm.previous, alarm.status, alarm.score) == (  # type: ignore[attr-defined]
        "engine-0007", "warning", "alarm", 0.93)


def test_json_lines_carry_the_extra_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vibewatch.status")
    log_status_changes([_event(Status.NORMAL, Status.ALARM, 0.8)])
    doc = json.loads(JsonFormatter().format(caplog.records[0]))
    assert doc["level"] == "WARNING" and doc["logger"] == "vibewatch.status"
    assert doc["message"] == "engine engine-0007: normal -> alarm (score 0.800)"
    assert {k: doc[k] for k in ("engine_id", "previous", "status", "score", "event_ts_ms")} == {
        "engine_id": "engine-0007", "previous": "normal", "status": "alarm", "score": 0.8,
        "event_ts_ms": 1_795_608_000_000}
    assert doc["ts"].endswith("Z")


def test_json_lines_carry_tracebacks() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
        record.exc_info = sys.exc_info()
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "failed" and "RuntimeError: boom" in doc["exc_info"]
