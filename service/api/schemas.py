"""Response and request models of the REST API (separate from the domain types).

The engine documents of ``GET /engines`` and ``GET /engines/{id}`` are built as plain
dicts by :mod:`service.api.documents` (fast, no per-field validation) and described here by
:class:`EngineOut`; a test validates every built document against it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from service.domain import AnomalyEvent, Status

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_datetime(ts_ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime, clamped to what datetime can hold."""
    lo = -62_135_596_800_000  # 0001-01-01
    hi = 253_402_300_799_999  # 9999-12-31T23:59:59.999
    return _EPOCH + timedelta(milliseconds=min(max(ts_ms, lo), hi))


ERROR_DOC = (
    "Prediction error of the latest reading as the scorer sees it: the RMS over channels of "
    "(values - scored_against) divided by the model's per-channel training standard "
    "deviation (the artifact's scaler.scale), smoothed by the scorer. Dimensionless: "
    "training standard deviations. Null before the engine's first scored reading."
)


CONTRIBUTIONS_DOC = (
    "Which channels drive the score of the reading, and by how much: channel -> share of "
    "the error (0-1, largest first; shares below 0.01 left out). With scoring.channel_reduce "
    "joint, the share of the Mahalanobis distance of the residual vector against the "
    "engine's own residual covariance; with rms, of the sum of squared scaled residuals; "
    "with max, of the per-channel scores."
)


class EngineOut(BaseModel):
    """One engine as of its latest processed reading."""

    engine_id: str
    ts: datetime = Field(description="Event time of the latest processed reading.")
    values: dict[str, float] = Field(description="The latest reading, raw units per channel.")
    predicted: dict[str, float | None] = Field(
        description="The model's prediction of the *next* reading (raw units per channel; "
        "null where the model's output is not finite)."
    )
    scored_against: dict[str, float | None] | None = Field(
        description="The prediction the latest reading was scored against (made one reading "
        "earlier): error and score come from values - scored_against. Null for an engine's "
        "first reading and the first after a gap restarted its state."
    )
    error: float | None = Field(description=ERROR_DOC)
    contributions: dict[str, float] | None = Field(
        None, description=CONTRIBUTIONS_DOC + " GET /engines/{id} only (null in the list), "
        "and null before the engine's first scored reading."
    )
    score: float = Field(
        ge=0, description="Anomaly score, no upper bound; higher is more anomalous "
        "(tenths of decades of the hours of normal operation between such departures: "
        "0.3 = once in 1,000 h; docs/scoring.md)."
    )
    status: Status
    status_since: datetime = Field(description="Event time the current status began.")
    readings: int = Field(description="Readings processed for this engine.")
    engine_class: str = Field(
        alias="class", description="The engine's class: which model it runs under "
        "(model.default_class, or a model.classes entry)."
    )
    model_version: str = Field(description="Version of its class's model.")
    last_seen: datetime = Field(
        description="Wall-clock time the latest reading was processed (by the owner)."
    )
    source: Literal["local", "fleet"] = Field(
        description="local: owned by this instance. fleet: owned by another instance, as of "
        "its last commit (stale by up to the commit interval plus ~200 ms)."
    )
    committed: bool = Field(
        description="True when what is shown is committed (in an acknowledged Kafka "
        "transaction: a crash or restart cannot take it back). False: processed, its commit "
        "still pending, normally for less than kafka.commit_interval_ms plus the broker's "
        "acknowledgement. fleet rows are always committed."
    )
    stale: bool = Field(
        description="No reading processed for api.stale_after_s seconds (default 600): the "
        "engine stopped reporting, and its score and status are as of last_seen."
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
    ts: datetime = Field(description="Event time of the reading that changed the status.")
    previous: Status
    status: Status
    score: float
    model_version: str
    cause: str = Field(description="score: the scoring changed the status; baseline: an "
                       "operator re-baselined the engine (commissioning starts afresh).")
    contributions: dict[str, float] = Field(
        default_factory=dict, description=CONTRIBUTIONS_DOC + " Empty for a baseline event."
    )

    @classmethod
    def of(cls, e: AnomalyEvent) -> EventOut:
        return cls(engine_id=e.engine_id, ts=as_datetime(e.ts_ms), previous=e.previous,
                   status=e.status, score=e.score, model_version=e.model_version,
                   cause=e.cause, contributions=dict(e.contributions))


class EventPage(BaseModel):
    total: int = Field(description="Events held that match the filters.")
    offset: int
    limit: int
    events: list[EventOut]


class ClassModelOut(BaseModel):
    """One engine class's model on this instance."""

    engine_class: str = Field(alias="class", description="Class name.")
    default: bool = Field(description="The default class (engines that name no class and "
                          "match no id_pattern).")
    id_pattern: str | None = Field(description="Engines whose id matches belong to it.")
    version: str
    fingerprint: str = Field(description="Hex fingerprint of the model, as changelog rows "
                             "record it.")
    channels: list[str]
    artifact_dir: str
    state_size: int
    engines: int = Field(description="Engines of the class owned by this instance.")
    reload_error: str | None = Field(
        description="Why the last model reload for this class could not be applied on this "
        "instance (it kept the model above); null when it did not fail."
    )
    card_summary: str = Field(description="First paragraph of the model card, if there is one.")


class ModelOut(BaseModel):
    """The models in use. The top-level fields describe the default class's (as before
    engine classes); ``classes`` lists every class."""

    version: str
    channels: list[str]
    artifact_dir: str
    state_size: int
    card_summary: str = Field(description="First paragraph of the model card, if there is one.")
    classes: list[ClassModelOut]


class ReloadIn(BaseModel):
    artifact_dir: Path = Field(description="Directory of the artifact to switch to (the "
                               "same path must be readable on every instance).")
    engine_class: str | None = Field(
        None, alias="class", description="The class whose model to switch (default: the "
        "default class)."
    )


class Health(BaseModel):
    status: str
    detail: str = Field("", description="What is missing when not ready.")


class ErrorOut(BaseModel):
    """Every error response: one readable sentence."""

    detail: str


class BaselineIn(BaseModel):
    """Optional body of ``POST /engines/{id}/baseline``."""

    model_config = {"extra": "forbid"}

    commission_s: float | None = Field(
        None, ge=0, le=30 * 86_400,
        description="The baseline window: seconds of the engine's readings (event time, from "
        "its next reading) that fit its new baseline before any alarm; default "
        "scoring.commission_s. Still at least scoring.commission_readings readings.",
    )


class BaselineOut(BaseModel):
    engine_id: str
    requested_at: datetime = Field(description="When the re-baseline was requested.")
    commission_s: float | None = Field(description="The baseline window asked for (null: "
                                       "scoring.commission_s).")
    detail: str = Field(
        description="What happens next: the engine's owner applies it in order with the "
        "engine's readings; an anomaly event with cause 'baseline' records it."
    )
