"""Response and request models of the REST API (separate from the domain types)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from service.domain import AnomalyEvent, EngineView, Status


def _dt(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


class EngineOut(BaseModel):
    engine_id: str
    ts: datetime = Field(description="Event time of the latest processed reading.")
    values: dict[str, float] = Field(description="The latest reading.")
    predicted: dict[str, float] = Field(description="Prediction of the next reading.")
    error: float | None = Field(description="Smoothed prediction error of the latest reading.")
    score: float = Field(
        ge=0, description="Anomaly score, no upper bound; higher is more anomalous "
        "(tenths of decades of the hours of normal operation between such departures: "
        "0.3 = once in 1,000 h)."
    )
    status: Status
    status_since: datetime = Field(description="Event time the current status began.")
    readings: int = Field(description="Readings processed for this engine.")
    model_version: str
    last_seen: datetime = Field(description="Wall-clock time the latest reading was processed.")
    source: Literal["local", "fleet"] = Field(
        description="local: owned by this instance, current. fleet: owned by another "
        "instance, as of its last commit (stale by up to the commit interval plus ~200 ms)."
    )

    @classmethod
    def of(cls, v: EngineView, local: bool) -> EngineOut:
        return cls(source="local" if local else "fleet",
            engine_id=v.engine_id, ts=_dt(v.ts_ms), values=v.values, predicted=v.predicted,
            error=v.error, score=v.score, status=v.status, status_since=_dt(v.status_since_ms),
            readings=v.readings, model_version=v.model_version, last_seen=_dt(v.last_seen_ms),
        )


class EnginePage(BaseModel):
    total: int = Field(description="Engines matching the filters.")
    offset: int
    limit: int
    engines: list[EngineOut]


class HistoryPoint(BaseModel):
    ts: datetime
    values: dict[str, float]


class HistoryOut(BaseModel):
    engine_id: str
    points: list[HistoryPoint]


class EventOut(BaseModel):
    engine_id: str
    ts: datetime
    previous: Status
    status: Status
    score: float
    model_version: str
    cause: str = Field(description="score: the scoring changed the status; baseline: an "
                       "operator re-baselined the engine (commissioning starts afresh).")

    @classmethod
    def of(cls, e: AnomalyEvent) -> EventOut:
        return cls(engine_id=e.engine_id, ts=_dt(e.ts_ms), previous=e.previous, status=e.status,
                   score=e.score, model_version=e.model_version, cause=e.cause)


class EventPage(BaseModel):
    total: int
    offset: int
    limit: int
    events: list[EventOut]


class ModelOut(BaseModel):
    version: str
    channels: list[str]
    artifact_dir: str
    state_size: int
    card_summary: str = Field(description="First paragraph of the model card, if there is one.")


class ReloadIn(BaseModel):
    artifact_dir: Path = Field(description="Directory of the artifact to switch to.")


class Health(BaseModel):
    status: str
    detail: str = ""


class ErrorOut(BaseModel):
    detail: str


class BaselineOut(BaseModel):
    engine_id: str
    requested_at: datetime = Field(description="When the re-baseline was requested.")
    detail: str = Field(
        description="What happens next: the engine's owner applies it in order with the "
        "engine's readings; an anomaly event with cause 'baseline' records it."
    )
