"""What one run of the live scenario observed: the committed anomaly events, the engine
list as an operator saw it, and what happened to the service (restart, re-baseline).

Plain data, filled in by :mod:`.run` and read by :mod:`.outcome`. Times ``*_s`` are
simulated seconds from the first reading unless named ``wall``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

STATUS_CODE = {"warmup": 0, "normal": 1, "warning": 2, "alarm": 3}


@dataclass(frozen=True)
class Event:
    """One committed anomaly event (a status change), in its engine's order."""

    engine_id: str
    ts_ms: int
    previous: str
    status: str
    score: float
    cause: str

    @classmethod
    def from_record(cls, value: bytes) -> Event:
        doc = json.loads(value)
        return cls(doc["engine_id"], int(doc["ts_ms"]), doc["previous"], doc["status"],
                   float(doc["score"]), doc.get("cause", "score"))

    @property
    def is_alarm_raise(self) -> bool:
        return self.status == "alarm" and self.previous != "alarm" and self.cause == "score"

    @property
    def is_warning_raise(self) -> bool:
        return self.status == "warning" and self.previous in ("normal", "warmup")


@dataclass(frozen=True)
class Row:
    """One engine in one response of ``GET /engines``."""

    engine_id: str
    ts_ms: int  #: event time of the engine's latest reading
    status: str
    score: float


@dataclass(frozen=True)
class Poll:
    """One response of ``GET /engines`` (most anomalous first)."""

    wall_s: float
    rows: tuple[Row, ...]

    @classmethod
    def from_page(cls, wall_s: float, page: dict[str, Any]) -> Poll:
        from datetime import datetime

        rows = tuple(
            Row(e["engine_id"], int(datetime.fromisoformat(e["ts"]).timestamp() * 1000),
                e["status"], float(e["score"]))
            for e in page["engines"]
        )
        return cls(wall_s, rows)


@dataclass
class RestartRecord:
    """The restart in the middle of a run."""

    mode: str
    at_s: float
    exit_code: int | None = None
    stopped_wall_s: float = 0.0  #: signal to exit
    outage_wall_s: float = 0.0  #: signal to ready again
    #: ready again to the engine list showing the readings produced by then
    catch_up_wall_s: float | None = None


@dataclass
class RebaselineRecord:
    """The operator's re-baseline: the request and its answer."""

    engine_id: str
    at_s: float
    http_status: int = 0
    detail: str = ""


@dataclass
class RunRecord:
    """Everything a run observed."""

    name: str
    start_ms: int  #: event time of the first reading
    readings: int = 0
    wall_s: float = 0.0
    events: list[Event] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)
    restart: RestartRecord | None = None
    rebaseline: RebaselineRecord | None = None
    service_log: str = ""

    def sim_s(self, ts_ms: int) -> float:
        """Simulated seconds of an event time."""
        return (ts_ms - self.start_ms) / 1000.0
