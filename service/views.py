"""Read-only views of the engine store for the API and the gauges."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from service.domain import EngineView, Status, contributions
from service.metrics import EngineSample
from service.state import F64, EngineStore


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else x


def _latest(
    store: EngineStore, slot: int, channels: Sequence[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """A row's latest reading and its prediction of the next one, by channel (lock held)."""
    pos = int((store.count[slot] - 1) % store.window)
    return (
        {c: float(store.ring[slot, pos, i]) for i, c in enumerate(channels)},
        {c: float(store.last_pred[slot, i]) for i, c in enumerate(channels)},
    )


def engine_view(
    store: EngineStore, engine_id: str, channels: Sequence[str], statuses: Sequence[Status],
    model_version: str,
) -> EngineView | None:
    """The current view of one engine, or None when this instance does not track it."""
    with store.lock:
        slot = store.index.get(engine_id)
        if slot is None or store.count[slot] == 0:
            return None
        values, predicted = _latest(store, slot, channels)
        return EngineView(
            engine_id=engine_id,
            ts_ms=int(store.last_ts[slot]),
            values=values,
            predicted=predicted,
            error=_opt(float(store.error[slot])),
            score=float(store.score[slot]),
            status=statuses[int(store.status[slot])],
            status_since_ms=int(store.status_since[slot]),
            readings=int(store.count[slot]),
            model_version=model_version,
            last_seen_ms=int(store.last_seen[slot]),
        )


def status_counts(store: EngineStore, statuses: Sequence[Status]) -> dict[Status, int]:
    """How many tracked engines are in each status."""
    with store.lock:
        counts = np.bincount(store.status[store.active_slots()], minlength=len(statuses))
    return {status: int(counts[i]) for i, status in enumerate(statuses)}


def history(
    store: EngineStore, engine_id: str, channels: Sequence[str]
) -> list[tuple[int, dict[str, float]]] | None:
    """The engine's window, oldest first, as (ts_ms, values); None when not tracked."""
    with store.lock:
        slot = store.index.get(engine_id)
        if slot is None:
            return None
        ts, values = store.history(slot)
    return [
        (int(t), {c: float(v[i]) for i, c in enumerate(channels)})
        for t, v in zip(ts, values, strict=True)
    ]


#: ``explain(actual, scored_against, score_state)``: each channel's share of the error of
#: the latest readings, ``(n, C)`` (``Runtime.explain``).
Explain = Callable[[F64, F64, F64], F64]


class StoreEngines:
    """The per-engine gauges' source (``service.metrics.EngineSource``): a store's engines.

    ``channels`` is called at every scrape (the model can be reloaded); ``explain``, when
    given, gives the channels' contributions (one batched call per scrape).
    """

    def __init__(self, store: EngineStore, channels: Callable[[], Sequence[str]],
                 explain: Explain | None = None) -> None:
        self.store = store
        self.channels = channels
        self.explain = explain

    def engine_samples(self, limit: int) -> list[EngineSample]:
        """The first ``limit`` engines with a reading, in the store's insertion order."""
        store, channels = self.store, self.channels()
        out: list[EngineSample] = []
        with store.lock:
            live = ((e, s) for e, s in store.index.items() if store.count[s] > 0)
            taken = list(itertools.islice(live, limit))
            slots = np.array([s for _, s in taken], dtype=np.intp)
            shares = None
            if self.explain is not None and slots.size:
                pos = (store.count[slots] - 1) % store.window
                shares = self.explain(store.ring[slots, pos].astype(np.float64),
                                      store.scored_pred[slots], store.score_state[slots])
            for k, (engine_id, slot) in enumerate(taken):
                values, predicted = _latest(store, slot, channels)
                out.append(EngineSample(
                    engine_id=engine_id,
                    score=float(store.score[slot]),
                    threshold=float(store.threshold[slot]),
                    status_code=int(store.status[slot]),
                    last_seen_s=float(store.last_seen[slot]) / 1000,
                    error=float(store.error[slot]),
                    values=values,
                    predicted=predicted,
                    contributions=(
                        {} if shares is None else dict(contributions(channels, shares[k]))
                    ),
                ))
        return out


class ClassEngines:
    """The per-engine gauges' source over the stores of every engine class: the default
    class's engines first, up to the limit in all."""

    def __init__(self, sources: Sequence[StoreEngines]) -> None:
        self.sources = list(sources)

    def engine_samples(self, limit: int) -> list[EngineSample]:
        out: list[EngineSample] = []
        for source in self.sources:
            if len(out) >= limit:
                break
            out.extend(source.engine_samples(limit - len(out)))
        return out
