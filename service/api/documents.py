"""Engine documents (the JSON of ``GET /engines`` and ``GET /engines/{id}``) built from
copied rows, without a pydantic model per field: a page of 50 engines costs ~0.1 ms.

The shape is :class:`service.api.schemas.EngineOut`; ``tests/service/api`` validates built
documents against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from service.api.engine_index import FLEET, Rows
from service.api.schemas import as_datetime
from service.domain import Status

JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def _channels(names: Sequence[str], row: list[float]) -> dict[str, float | None]:
    return {c: (v if math.isfinite(v) else None) for c, v in zip(names, row, strict=True)}


@dataclass(frozen=True)
class ClassInfo:
    """What an engine document says of its class: name, channels, model version."""

    name: str
    channels: tuple[str, ...]
    model_version: str


def engine_documents(
    rows: Rows,
    classes: Sequence[ClassInfo],
    statuses: Sequence[Status],
    committed_seq: int,
    stale_before_ms: int,
) -> list[dict[str, Any]]:
    """One :class:`EngineOut`-shaped dict per row.

    ``classes``: by class number (``Rows.klass``); ``committed_seq``: the local stores'
    committed batch number (a local row is committed when its ``changed_seq`` is at most
    that); ``stale_before_ms``: rows last seen before this wall-clock time are stale.
    """
    out = []
    cols = zip(
        rows.ids, rows.source.tolist(), rows.score.tolist(), rows.status.tolist(),
        rows.last_seen.tolist(), rows.status_since.tolist(), rows.last_ts.tolist(),
        rows.readings.tolist(), rows.error.tolist(), rows.changed_seq.tolist(),
        rows.values.tolist(), rows.predicted.tolist(), rows.scored.tolist(),
        rows.klass.tolist(), strict=True,
    )
    for (engine_id, source, score, status, last_seen, since, ts, readings, error, seq,
         all_values, all_predicted, all_scored, klass) in cols:
        fleet = source == FLEET
        info = classes[klass]
        channels, n = info.channels, len(info.channels)
        values, predicted, scored = all_values[:n], all_predicted[:n], all_scored[:n]
        out.append({
            "engine_id": engine_id,
            "ts": as_datetime(ts),
            "values": dict(zip(channels, values, strict=True)),  # finite: the decoder checks
            "predicted": _channels(channels, predicted),
            "scored_against": (None if any(math.isnan(v) for v in scored)
                               else _channels(channels, scored)),
            "error": error if math.isfinite(error) else None,
            "contributions": None,  # GET /engines/{id} fills it in (not kept in the list)
            "score": score if math.isfinite(score) else 0.0,
            "status": statuses[status].value,
            "status_since": as_datetime(since),
            "readings": readings,
            "class": info.name,
            "model_version": info.model_version,
            "last_seen": as_datetime(last_seen),
            "source": "fleet" if fleet else "local",
            "committed": fleet or seq <= committed_seq,
            "stale": last_seen < stale_before_ms,
        })
    return out


def to_json(doc: Any) -> bytes:
    """``doc`` as JSON bytes (datetimes as RFC 3339 UTC with ``Z``; NaN as null)."""
    return orjson.dumps(doc, option=JSON_OPTIONS)
