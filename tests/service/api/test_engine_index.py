"""The engine index against the obvious implementation: sort every row per request.

Real stores (``EngineStore``) are written the way the pipeline and the fleet view write
them (readings through the processor, restored rows, dropped partitions, forgotten engines,
a cleared store), then the index's pages must equal a full sort of the stores' rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.api.engine_index import FLEET, LOCAL, EngineIndex
from service.config import ScoringSettings
from service.domain import Reading
from service.processor import BatchProcessor
from service.scoring import STATUS_ORDER, EngineScoring
from service.state import EngineStore
from service.testing import FakeStepModel

T0 = 1_795_608_000_000


class Fleet:
    """A local and a fleet store with processors, fed random readings."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        model = FakeStepModel()
        scoring = EngineScoring(ScoringSettings(commission_s=0.0, commission_readings=2), 1)
        self.clock = 1_000.0
        self.stores: dict[int, EngineStore] = {}
        self.procs: dict[int, BatchProcessor] = {}
        for source in (LOCAL, FLEET):
            store = EngineStore(window=8, channels=1, model_state_size=model.state_size,
                                score_state_size=scoring.state_size)
            self.stores[source] = store
            self.procs[source] = BatchProcessor(model, scoring, store, STATUS_ORDER,
                                                clock=lambda: self.clock)
        self.t = dict.fromkeys((LOCAL, FLEET), T0)

    def feed(self, source: int, engines: list[str]) -> None:
        self.t[source] += 1000
        self.clock += float(self.rng.integers(0, 3))
        readings = [Reading(e, self.t[source],
                            {"vibration": 1.0 + float(self.rng.normal(0, 0.05))
                             + (2.0 if self.rng.random() < 0.1 else 0.0)})
                    for e in engines]
        self.procs[source].process(readings, [hash(e) % 3 for e in engines])

    def expected(self, sort: str, descending: bool, status: int | None,
                 min_score: float) -> list[str]:
        """Every listed engine (the local row wins over the fleet row), filtered, sorted."""
        rows: dict[str, tuple[EngineStore, int]] = {}
        for source in (FLEET, LOCAL):
            store = self.stores[source]
            rows.update((e, (store, s)) for e, s in store.index.items() if store.count[s])
        keyed = []
        for e, (store, slot) in rows.items():
            if status is not None and int(store.status[slot]) != status:
                continue
            if float(store.score[slot]) < min_score:
                continue
            key = {"score": (float(store.score[slot]),),
                   "severity": (int(store.status[slot]), float(store.score[slot])),
                   "engine_id": (0.0,),
                   "last_seen": (float(store.last_seen[slot]),),
                   "status_since": (float(store.status_since[slot]),)}[sort]
            keyed.append((key, e))
        return [e for _, e in sorted(keyed, reverse=descending)]


def _ids(index: EngineIndex, **kw: object) -> list[str]:
    return index.page(limit=10_000, **kw).rows.ids  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(4))
def test_pages_equal_a_full_sort_through_changes(seed: int) -> None:
    f = Fleet(seed)
    index = EngineIndex(f.stores[LOCAL], f.stores[FLEET], channels=1)
    engines = [f"e-{i:03d}" for i in range(60)]
    seen = [0, 0, 0, 0]
    seen_scored = 0
    for step in range(40):
        action = f.rng.random()
        if action < 0.6:
            picked = sorted(set(f.rng.choice(engines, size=50).tolist()))
            f.feed(LOCAL if f.rng.random() < 0.7 else FLEET, picked)
        elif action < 0.75:
            f.stores[LOCAL].drop_partitions({int(f.rng.integers(0, 3))})
        elif action < 0.85:
            victim = str(f.rng.choice(engines))
            f.stores[FLEET].forget(victim)
        elif action < 0.9:
            f.stores[FLEET if step % 2 else LOCAL].clear()
        else:  # a restored row (the fleet view applying a changelog record)
            src = f.stores[LOCAL]
            if src.index:
                e = next(iter(src.index))
                f.stores[FLEET].restore_row(e, src.encode_row(src.index[e]),
                                            np.zeros(src.score_state_size))
        index.refresh()
        for sort in ("severity", "score", "engine_id", "last_seen", "status_since"):
            for descending in (True, False):
                got = _ids(index, sort=sort, descending=descending)
                assert got == f.expected(sort, descending, None, 0.0), (step, sort)
        for code in range(4):
            some = _ids(index, status=code)
            assert some == f.expected("score", True, code, 0.0)
            seen[code] += len(some)
        scored = _ids(index, min_score=0.2)
        assert scored == f.expected("score", True, None, 0.2)
        seen_scored += len(scored)
        assert _ids(index, sort="engine_id", descending=False, min_score=0.2) == \
            f.expected("engine_id", False, None, 0.2)
    # the filters were tried on something
    assert seen[0] and seen[1] and seen_scored, (seen, seen_scored)


def test_paging_and_stale() -> None:
    f = Fleet(7)
    index = EngineIndex(f.stores[LOCAL], None, channels=1)
    f.feed(LOCAL, [f"old-{i}" for i in range(5)])
    f.clock += 1000
    f.feed(LOCAL, [f"new-{i}" for i in range(7)])
    index.refresh()
    cutoff = int((f.clock - 500) * 1000)
    stale = index.page(stale=True, stale_before_ms=cutoff, sort="engine_id",
                       descending=False)
    assert stale.total == 5 and stale.rows.ids == [f"old-{i}" for i in range(5)]
    fresh = index.page(stale=False, stale_before_ms=cutoff, limit=3, offset=2,
                       sort="engine_id", descending=False)
    assert fresh.total == 7 and fresh.rows.ids == ["new-2", "new-3", "new-4"]
    assert index.count_stale(cutoff) == 5
    assert index.page(offset=10**9).rows.ids == []


def test_refresh_holds_the_store_lock_for_changed_rows_only() -> None:
    """The journal names only what changed: a refresh after one reading of one engine
    copies one row, whatever the fleet size."""
    f = Fleet(3)
    index = EngineIndex(f.stores[LOCAL], f.stores[FLEET], channels=1)
    f.feed(LOCAL, [f"e-{i}" for i in range(5000)])
    assert index.refresh() == 5000
    f.feed(LOCAL, ["e-42"])
    assert index.refresh() == 1
    assert index.refresh() == 0
