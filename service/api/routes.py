"""REST endpoints. Every error is JSON ``{"detail": "..."}``."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from service.api.deps import RuntimeDep, TokenDep
from service.api.schemas import (
    BaselineOut,
    EngineOut,
    EnginePage,
    ErrorOut,
    EventOut,
    EventPage,
    Health,
    HistoryOut,
    HistoryPoint,
    ModelOut,
    ReloadIn,
)
from service.domain import Status
from service.errors import ArtifactError, BrokerUnavailableError
from service.views import all_views, engine_view, history

router = APIRouter()
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown engine"}
}


class SortKey(enum.StrEnum):
    score = "score"
    engine_id = "engine_id"
    last_seen = "last_seen"
    status_since = "status_since"


class Order(enum.StrEnum):
    asc = "asc"
    desc = "desc"


@router.get("/engines", response_model=EnginePage, tags=["engines"])
def list_engines(
    runtime: RuntimeDep,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    min_score: Annotated[float, Query(ge=0)] = 0.0,
    sort: SortKey = SortKey.score,
    order: Order = Order.desc,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> EnginePage:
    """Engines tracked by this instance, filtered, sorted (default: highest score first)."""
    m = runtime.model
    statuses = runtime.processor.statuses
    local = all_views(runtime.store, m.channels, statuses, m.version)
    owned = {v.engine_id for v in local}
    fleet = [v for v in all_views(runtime.fleet_store, m.channels, statuses, m.version)
             if v.engine_id not in owned]
    views = [
        v for v in local + fleet
        if v.score >= min_score and (status_ is None or v.status == status_)
    ]
    key = {
        SortKey.score: lambda v: (v.score, v.engine_id),
        SortKey.engine_id: lambda v: (v.engine_id,),
        SortKey.last_seen: lambda v: (v.last_seen_ms, v.engine_id),
        SortKey.status_since: lambda v: (v.status_since_ms, v.engine_id),
    }[sort]
    views.sort(key=key, reverse=order is Order.desc)
    page = views[offset : offset + limit]
    return EnginePage(total=len(views), offset=offset, limit=limit,
                      engines=[EngineOut.of(v, v.engine_id in owned) for v in page])


@router.get("/engines/{engine_id}", response_model=EngineOut, responses=NOT_FOUND,
            tags=["engines"])
def get_engine(runtime: RuntimeDep, engine_id: str) -> EngineOut:
    """One engine: latest reading, prediction, error, score, status and since when."""
    m = runtime.model
    statuses = runtime.processor.statuses
    view = engine_view(runtime.store, engine_id, m.channels, statuses, m.version)
    if view is not None:
        return EngineOut.of(view, True)
    view = engine_view(runtime.fleet_store, engine_id, m.channels, statuses, m.version)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"engine {engine_id!r} is not tracked")
    return EngineOut.of(view, False)


@router.get("/engines/{engine_id}/history", response_model=HistoryOut, responses=NOT_FOUND,
            tags=["engines"])
def get_history(
    runtime: RuntimeDep, engine_id: str, limit: Annotated[int, Query(ge=1, le=100_000)] = 256
) -> HistoryOut:
    """The engine's recent readings (its window), oldest first; at most ``limit``."""
    points = history(runtime.store, engine_id, runtime.model.channels)
    if points is None:
        points = history(runtime.fleet_store, engine_id, runtime.model.channels)
    if points is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"engine {engine_id!r} is not tracked")
    return HistoryOut(
        engine_id=engine_id,
        points=[HistoryPoint(ts=datetime.fromtimestamp(t / 1000).astimezone(), values=v)
                for t, v in points[-limit:]],
    )


@router.get("/anomalies", response_model=EventPage, tags=["anomalies"])
def list_events(
    runtime: RuntimeDep,
    engine_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> EventPage:
    """Recent anomaly events (status changes), newest first."""
    if since is not None and until is not None and since > until:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since is after until")
    lo = int(since.timestamp() * 1000) if since else None
    hi = int(until.timestamp() * 1000) if until else None
    events = [
        e for e in reversed(runtime.events)
        if (engine_id is None or e.engine_id == engine_id)
        and (lo is None or e.ts_ms >= lo) and (hi is None or e.ts_ms <= hi)
    ]
    return EventPage(total=len(events), offset=offset, limit=limit,
                     events=[EventOut.of(e) for e in events[offset : offset + limit]])


@router.post(
    "/engines/{engine_id}/baseline", response_model=BaselineOut, status_code=202,
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut},
               503: {"model": ErrorOut}}, tags=["engines"],
)
def rebaseline(runtime: RuntimeDep, _auth: TokenDep, engine_id: str) -> BaselineOut:
    """Re-baseline an engine after maintenance: its scoring forgets what it learned and
    commissions afresh from the next readings. Applied by the engine's owner in order with
    its readings and committed exactly once; recorded as an anomaly event (cause
    ``baseline``)."""
    if not runtime.tracks(engine_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"engine {engine_id!r} is not tracked")
    try:
        ts_ms = runtime.request_baseline(engine_id)
    except BrokerUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return BaselineOut(
        engine_id=engine_id, requested_at=datetime.fromtimestamp(ts_ms / 1000, tz=UTC),
        detail="accepted: the engine's owner applies it in order with its readings; an "
        "anomaly event with cause 'baseline' records it",
    )


def _model_out(runtime: RuntimeDep) -> ModelOut:
    m = runtime.model
    card = runtime.artifact_dir / "model_card.md"
    summary = ""
    if card.is_file():
        paras = [p.strip() for p in card.read_text().split("\n\n") if p.strip()]
        summary = next((p for p in paras if not p.startswith("#")), "")
    return ModelOut(version=m.version, channels=list(m.channels),
                    artifact_dir=str(runtime.artifact_dir), state_size=m.state_size,
                    card_summary=summary)


@router.get("/model", response_model=ModelOut, tags=["model"])
def get_model(runtime: RuntimeDep) -> ModelOut:
    """The model in use."""
    return _model_out(runtime)


@router.post(
    "/model/reload", response_model=ModelOut, tags=["model"],
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def reload_model(runtime: RuntimeDep, _auth: TokenDep, body: ReloadIn) -> ModelOut:
    """Switch to another artifact; per-engine state is kept and re-warmed from the windows."""
    try:
        runtime.reload_model(body.artifact_dir)
    except ArtifactError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return _model_out(runtime)


@router.get("/healthz", response_model=Health, tags=["health"])
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, tags=["health"],
            responses={503: {"model": Health}})
def readyz(runtime: RuntimeDep, response: Response) -> Health:
    """Readiness: connected to Kafka, partitions restored, consuming."""
    ready, detail = runtime.readiness()
    if ready:
        return Health(status="ready", detail=detail)
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status="not ready", detail=detail)
