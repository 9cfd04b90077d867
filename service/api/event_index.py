"""The anomaly events ``GET /anomalies`` serves: the newest ``capacity`` by event time.

Fed by :class:`service.kafka.event_log.EventLog` with the events of the committed anomalies
topic (so it lists only committed events, and a restart reads them back); tests feed it
directly. Memory: at most ``capacity`` events (~300 bytes each); the oldest go first.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from service.domain import AnomalyEvent

_Key = tuple[int, int]  # (event time ms, arrival number): unique, ordered by time


@dataclass(frozen=True, slots=True)
class EventSlice:
    total: int
    events: list[AnomalyEvent]  # newest first


class EventIndex:
    """Events ordered by event time, overall and per engine; thread-safe."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._keys: list[_Key] = []
        self._events: dict[_Key, AnomalyEvent] = {}
        self._by_engine: dict[str, list[_Key]] = {}
        self._arrival = itertools.count()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, events: Iterable[AnomalyEvent]) -> None:
        """Take in ``events`` (any order); the oldest beyond ``capacity`` are dropped."""
        with self._lock:
            for e in events:
                key = (e.ts_ms, next(self._arrival))
                self._events[key] = e
                # Events mostly arrive in time order: insort then appends.
                bisect.insort(self._keys, key)
                bisect.insort(self._by_engine.setdefault(e.engine_id, []), key)
            excess = len(self._keys) - self.capacity
            if excess > 0:
                self._evict(excess)

    def _evict(self, n: int) -> None:
        dropped, self._keys = self._keys[:n], self._keys[n:]
        for key in dropped:
            e = self._events.pop(key)
            keys = self._by_engine[e.engine_id]
            del keys[0]  # the engine's oldest: keys are dropped oldest first
            if not keys:
                del self._by_engine[e.engine_id]

    def query(
        self,
        *,
        engine_id: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> EventSlice:
        """Events with ``since_ms <= ts <= until_ms`` (of one engine if given), newest
        first, from ``offset``; ``total`` counts all that match."""
        with self._lock:
            keys = self._keys if engine_id is None else self._by_engine.get(engine_id, [])
            lo = 0 if since_ms is None else bisect.bisect_left(keys, (since_ms, -1))
            hi = len(keys) if until_ms is None else bisect.bisect_right(
                keys, (until_ms, 1 << 62))
            total = max(0, hi - lo)
            start = max(lo, hi - offset - limit)
            stop = max(lo, hi - offset)
            picked = [self._events[k] for k in reversed(keys[start:stop])]
        return EventSlice(total, picked)
