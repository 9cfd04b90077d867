"""Domain values shared by the stages. Frozen dataclasses; pydantic only at the edges."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Channel contributions: (channel, share of the error) pairs, largest first.
Contributions = tuple[tuple[str, float], ...]
#: Shares below this are left out of a contributions list (the rest still sum to ~1).
MIN_SHARE = 0.01


class Status(enum.StrEnum):
    """An engine's health as the scorer sees it."""

    WARMUP = "warmup"
    NORMAL = "normal"
    WARNING = "warning"
    ALARM = "alarm"


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded, validated reading. ``ts_ms`` is event time in epoch milliseconds."""

    engine_id: str
    ts_ms: int
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a message came from, for dead letters and logs."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class EngineView:
    """What the API shows for one engine after its latest processed reading.

    ``predicted`` is the model's prediction of the *next* reading; ``error`` is how far the
    latest reading was from the prediction made one step earlier (None for the first reading).
    """

    engine_id: str
    ts_ms: int
    values: dict[str, float]
    predicted: dict[str, float]
    error: float | None
    score: float
    status: Status
    status_since_ms: int
    readings: int
    model_version: str
    last_seen_ms: int


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """Emitted when an engine's status changes.

    ``cause`` says why: ``score`` (the scoring moved it) or ``baseline`` (an operator
    re-baselined the engine, which starts commissioning afresh). ``contributions``: which
    channels drove the score of the reading and by how much (see :func:`contributions`);
    empty for a baseline event.
    """

    engine_id: str
    ts_ms: int
    previous: Status
    status: Status
    score: float
    model_version: str
    cause: str = "score"
    contributions: Contributions = ()


def contributions(channels: Sequence[str], shares: Iterable[float]) -> Contributions:
    """``(channel, share)`` pairs of one reading, largest share first, rounded to 4 places;
    shares below :data:`MIN_SHARE` are left out (the largest is always kept) and so are
    non-finite ones (an engine not scored yet gives ``()``)."""
    pairs = sorted(
        ((c, float(v)) for c, v in zip(channels, shares, strict=True) if math.isfinite(v)),
        key=lambda p: -p[1],
    )
    return tuple((c, round(v, 4)) for k, (c, v) in enumerate(pairs) if k == 0 or v >= MIN_SHARE)
