"""REST endpoints. Every error is JSON ``{"detail": "..."}`` and documented per operation.

``GET /engines`` reads the engine index (never the stores), ``GET /anomalies`` the event
index fed from the committed anomalies topic; both run on the event loop, since they never
wait for a lock held by the pipeline. The other engine endpoints read one row of a store
under its lock (O(1) or O(window)), in the thread pool.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator

from service.api.deps import RuntimeDep, TokenDep
from service.api.documents import ClassInfo, engine_documents, to_json
from service.api.page_cache import page_key
from service.api.schemas import (
    BaselineIn,
    BaselineOut,
    ClassModelOut,
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
    as_datetime,
)
from service.domain import Status
from service.errors import ArtifactError, BrokerUnavailableError
from service.runtime import Runtime
from service.views import history

router = APIRouter()

#: The engine id contract of the readings topic (DESIGN.md).
ENGINE_ID = r"^[A-Za-z0-9._:-]{1,64}$"
ENGINE_PATH = Annotated[str, Path(pattern=ENGINE_ID, description="Engine id.")]
BAD_INPUT: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "A parameter or the body is invalid"}
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **BAD_INPUT, 404: {"model": ErrorOut, "description": "Unknown engine"}
}
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)


class SortKey(enum.StrEnum):
    severity = "severity"
    score = "score"
    engine_id = "engine_id"
    last_seen = "last_seen"
    status_since = "status_since"


class Order(enum.StrEnum):
    asc = "asc"
    desc = "desc"


_RFC3339 = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))$"
)


def rfc3339(value: object) -> object:
    """An RFC 3339 date-time string (what the schema's ``format: date-time`` promises, so
    with a UTC offset) as an aware datetime. Anything else is refused, including numbers
    and times without an offset, which pydantic would otherwise read in its own ways. A
    leap second reads as the end of second 59; year 0 as year 1."""
    m = _RFC3339.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError("must be an RFC 3339 date-time with an offset, such as "
                         "2026-11-25T12:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or ".0")[1:].ljust(6, "0")[:6])
    if second == 60:
        second, micro = 59, 999_999
    offset = timedelta(0)
    if m.group(9):
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        offset = -offset if m.group(9) == "-" else offset
    return datetime(max(year, 1), month, day, hour, minute, second, micro,
                    tzinfo=timezone(offset))


Rfc3339 = BeforeValidator(rfc3339)


def epoch_ms(dt: datetime) -> int:
    """``dt`` as epoch milliseconds; a naive datetime is taken as UTC. Never overflows
    (``datetime.timestamp`` does for year 1 in a timezone east of UTC)."""
    offset = dt.utcoffset() or timedelta(0)
    return (dt.replace(tzinfo=None) - _NAIVE_EPOCH - offset) // _MS


def _json(doc: Any) -> Response:
    return Response(to_json(doc), media_type="application/json")


def _status_code(runtime: Runtime, s: Status) -> int:
    return runtime.processor.statuses.index(s) if s in runtime.processor.statuses else -1


@router.get("/engines", response_model=EnginePage, responses=BAD_INPUT, tags=["engines"])
async def list_engines(
    request: Request,
    runtime: RuntimeDep,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    min_score: Annotated[float, Query(ge=0, allow_inf_nan=False)] = 0.0,
    stale: Annotated[bool | None, Query(
        description="true: only engines with no reading for api.stale_after_s; false: "
        "only the others; absent: all")] = None,
    sort: Annotated[SortKey, Query(
        description="severity (default): status first (alarm, warning, normal, warmup), then "
        "score, so an engine in a held alarm lists above every engine that is not; score: the "
        "score of the latest reading alone")] = SortKey.severity,
    order: Order = Order.desc,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Response:
    """Engines tracked by this instance and, with the fleet view, by the others: filtered,
    sorted (default: most severe first, by status then score; ties by engine id), paged.

    Served from an index that takes in changed engines every ``api.index_interval_ms``
    (default 500 ms): the list is at most that much behind ``GET /engines/{id}``, and
    ``stale`` at most a second behind the clock.
    """
    index = runtime.engine_index

    def build() -> bytes:
        stale_before_ms = runtime.stale_before_ms()
        page = index.page(
            sort=sort.value, descending=order is Order.desc,
            status=None if status_ is None else _status_code(runtime, status_),
            min_score=min_score, stale=stale, stale_before_ms=stale_before_ms,
            offset=offset, limit=limit,
        )
        docs = engine_documents(page.rows, _class_infos(runtime), runtime.processor.statuses,
                                page.committed_seq, stale_before_ms)
        return to_json({"total": page.total, "offset": offset, "limit": limit,
                        "engines": docs})

    body = runtime.page_cache.get(index.version, page_key(runtime, request.scope["query_string"]),
                                  build)
    return Response(body, media_type="application/json")


@router.get("/engines/{engine_id}", response_model=EngineOut, responses=NOT_FOUND,
            tags=["engines"])
def get_engine(runtime: RuntimeDep, engine_id: ENGINE_PATH) -> Response:
    """One engine, read from the store now: latest reading, the prediction it was scored
    against and the prediction of the next, error, score, status and since when."""
    rows = runtime.engine_index.current(engine_id)
    if rows is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"engine {engine_id!r} is not tracked")
    doc = engine_documents(rows, _class_infos(runtime), runtime.processor.statuses,
                           runtime.store.committed_seq, runtime.stale_before_ms())[0]
    shares = runtime.contributions(engine_id)
    doc["contributions"] = dict(shares) if shares else None
    return _json(doc)


def _class_infos(runtime: Runtime) -> list[ClassInfo]:
    """The engine classes in the engine index's order (``Rows.klass``)."""
    return [ClassInfo(c.name, c.model.channels, c.model.version) for c in runtime.classes]


@router.get("/engines/{engine_id}/history", response_model=HistoryOut, responses=NOT_FOUND,
            tags=["engines"])
def get_history(
    runtime: RuntimeDep, engine_id: ENGINE_PATH,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 256,
) -> HistoryOut:
    """The engine's recent readings (its window), oldest first; at most ``limit``."""
    c = runtime.class_of(engine_id)
    points = None
    if c is not None:
        points = history(c.store, engine_id, c.model.channels)
        if points is None:
            points = history(c.fleet_store, engine_id, c.model.channels)
    if points is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"engine {engine_id!r} is not tracked")
    return HistoryOut(
        engine_id=engine_id,
        points=[HistoryPoint(ts=as_datetime(t), values=v) for t, v in points[-limit:]],
    )


@router.get("/anomalies", response_model=EventPage, responses=BAD_INPUT, tags=["anomalies"])
async def list_events(
    runtime: RuntimeDep,
    engine_id: Annotated[str | None, Query(pattern=ENGINE_ID)] = None,
    since: Annotated[datetime | None, Rfc3339, Query(
        description="Events at or after this event time (RFC 3339 with an offset, e.g. "
        "2026-11-25T12:00:00Z).")] = None,
    until: Annotated[datetime | None, Rfc3339, Query(
        description="Events at or before this event time; before since: none.")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> EventPage:
    """Committed anomaly events (status changes), newest first: the newest
    ``api.max_events`` (default 10,000) read from the anomalies topic, on every instance.
    """
    found = runtime.event_index.query(
        engine_id=engine_id,
        since_ms=None if since is None else epoch_ms(since),
        until_ms=None if until is None else epoch_ms(until),
        offset=offset, limit=limit,
    )
    return EventPage(total=found.total, offset=offset, limit=limit,
                     events=[EventOut.of(e) for e in found.events])


@router.post(
    "/engines/{engine_id}/baseline", response_model=BaselineOut, status_code=202,
    responses={**NOT_FOUND, 401: {"model": ErrorOut}, 403: {"model": ErrorOut},
               503: {"model": ErrorOut}}, tags=["engines"],
)
def rebaseline(runtime: RuntimeDep, _auth: TokenDep, engine_id: ENGINE_PATH,
               body: BaselineIn | None = None) -> BaselineOut:
    """Re-baseline an engine after maintenance: its scoring forgets what it learned and
    commissions afresh from the next readings, for ``commission_s`` seconds when given (the
    baseline window; default ``scoring.commission_s``). Applied by the engine's owner in
    order with its readings and committed exactly once; recorded as an anomaly event (cause
    ``baseline``)."""
    window = body.commission_s if body is not None else None
    if not runtime.tracks(engine_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"engine {engine_id!r} is not tracked")
    try:
        ts_ms = runtime.request_baseline(engine_id, window)
    except BrokerUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return BaselineOut(
        engine_id=engine_id, requested_at=datetime.fromtimestamp(ts_ms / 1000, tz=UTC),
        commission_s=window,
        detail="accepted: the engine's owner applies it in order with its readings; an "
        "anomaly event with cause 'baseline' records it",
    )


def _card_summary(artifact_dir: FilePath) -> str:
    card = artifact_dir / "model_card.md"
    if not card.is_file():
        return ""
    paras = [p.strip() for p in card.read_text().split("\n\n") if p.strip()]
    return next((p for p in paras if not p.startswith("#")), "")


def _model_out(runtime: Runtime) -> ModelOut:
    classes = []
    for c in runtime.classes:
        classes.append(ClassModelOut.model_validate({
            "class": c.name, "default": c is runtime.classes.default,
            "id_pattern": c.id_pattern, "version": c.model.version,
            "fingerprint": c.fingerprint.hex(), "channels": list(c.model.channels),
            "artifact_dir": str(c.artifact_dir), "state_size": c.model.state_size,
            "engines": len(c.store), "reload_error": c.reload_error,
            "card_summary": _card_summary(c.artifact_dir),
        }))
    d = classes[0]
    return ModelOut(version=d.version, channels=d.channels, artifact_dir=d.artifact_dir,
                    state_size=d.state_size, card_summary=d.card_summary, classes=classes)


@router.get("/model", response_model=ModelOut, tags=["model"])
def get_model(runtime: RuntimeDep) -> ModelOut:
    """The models in use: the default class's at the top level, every class's in
    ``classes`` (with the last reload that failed here, if any)."""
    return _model_out(runtime)


@router.post(
    "/model/reload", response_model=ModelOut, tags=["model"],
    responses={
        400: {"model": ErrorOut, "description": "The body is not JSON"},
        401: {"model": ErrorOut, "description": "No or a wrong bearer token"},
        403: {"model": ErrorOut, "description": "api.token is not set: reloads are disabled"},
        404: {"model": ErrorOut, "description": "artifact_dir is not a directory, or no such "
              "class"},
        422: {"model": ErrorOut, "description": "The body is invalid or the artifact unusable"},
        503: {"model": ErrorOut, "description": "The reload could not be sent to the group"},
    },
)
def reload_model(runtime: RuntimeDep, _auth: TokenDep, body: ReloadIn) -> ModelOut:
    """Switch a class (default: the default class) to another artifact on every instance of
    the group: checked and applied here, then sent on the control topic that every instance
    reads (docs/operations.md). Per-engine state is kept and re-warmed from the windows. An
    instance that cannot load the artifact keeps its model and says so (``GET /model``
    ``reload_error``, ``vibewatch_model_reload_failures_total``)."""
    where = body.artifact_dir
    if body.engine_class is not None and body.engine_class not in runtime.classes.by_name:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no engine class {body.engine_class[:64]!r} (classes: "
                            f"{', '.join(runtime.classes.by_name)})")
    try:
        found = where.is_dir()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"artifact_dir {str(where)[:200]!r}: {exc}") from None
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"artifact_dir {str(where)[:200]!r} is not a directory")
    try:
        runtime.reload_model(where, body.engine_class)
    except (ArtifactError, OSError, ValueError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)[:1000]) from None
    except BrokerUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return _model_out(runtime)


@router.get("/healthz", response_model=Health, tags=["health"])
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, tags=["health"],
            responses={503: {"model": Health, "description": "Not ready; detail says why"}})
def readyz(runtime: RuntimeDep) -> Response:
    """Readiness: the instance processes readings (``detail`` says what is missing)."""
    ready, missing = runtime.readiness()
    if ready:
        return JSONResponse(Health(status="ready", detail=missing).model_dump())
    return JSONResponse(Health(status="not ready", detail=missing).model_dump(),
                        status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

