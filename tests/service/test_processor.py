"""BatchProcessor with the fake model and the real scoring."""

from __future__ import annotations

import numpy as np

from service.config import ScoringSettings
from service.domain import Reading, Status
from service.ingest.columns import ReadingColumns
from service.processor import BatchProcessor
from service.scoring import STATUS_ORDER, EngineScoring
from service.state import EngineStore
from service.testing import FakeStepModel

T0 = 1_795_608_000_000


def _processor(window: int = 8, max_gap_ms: int = 0) -> BatchProcessor:
    model = FakeStepModel()
    scoring = EngineScoring(ScoringSettings(commission_readings=5, commission_s=0), 1)
    store = EngineStore(window=window, channels=1, model_state_size=model.state_size,
                        score_state_size=scoring.state_size)
    return BatchProcessor(model, scoring, store, STATUS_ORDER, max_gap_ms=max_gap_ms,
                          clock=lambda: 1.0)


def _r(engine: str, k: int, v: float) -> Reading:
    return Reading(engine, T0 + 1000 * k, {"vibration": v})


def test_batched_equals_one_by_one() -> None:
    rng = np.random.default_rng(0)
    stream = [_r(f"e{i % 7}", i // 7, float(rng.normal(1, 0.1))) for i in range(700)]
    a, b = _processor(), _processor()
    a.process(stream, [0] * len(stream))
    for r in stream:
        b.process([r], [0])
    for engine in a.store.index:
        sa, sb = a.store.index[engine], b.store.index[engine]
        assert a.store.encode_row(sa) == b.store.encode_row(sb)


def test_duplicates_and_late_readings_are_counted_and_skipped() -> None:
    p = _processor()
    p.process([_r("e", 1, 1.0), _r("e", 2, 1.0)], [0, 0])
    before = p.store.encode_row(p.store.index["e"])
    res = p.process([_r("e", 2, 5.0), _r("e", 0, 5.0)], [0, 0])
    assert (res.processed, res.duplicate, res.late) == (0, 1, 1)
    assert p.store.encode_row(p.store.index["e"]) == before


def test_fault_raises_alarm_event_after_warmup() -> None:
    p = _processor()
    rng = np.random.default_rng(3)
    events = []
    for k in range(200):
        v = 1.0 + rng.normal(0, 0.01) + (5.0 if k >= 150 else 0.0)
        events += p.process([_r("e", k, v)], [0]).events
    statuses = [e.status for e in events]
    assert statuses[0] == Status.NORMAL  # out of warm-up
    assert Status.ALARM in statuses
    first_alarm = next(e for e in events if e.status == Status.ALARM)
    assert first_alarm.ts_ms >= T0 + 150_000


def test_gap_restarts_engine() -> None:
    p = _processor(max_gap_ms=10_000)
    for k in range(20):
        p.process([_r("e", k, 1.0)], [0])
    res = p.process([_r("e", 100, 1.0)], [0])
    slot = p.store.index["e"]
    assert res.gaps == 1 and int(p.store.resets[slot]) == 1
    assert STATUS_ORDER[int(p.store.status[slot])] == Status.WARMUP


def test_rewarm_reproduces_state_from_window() -> None:
    p = _processor(window=64)
    for k in range(64):
        p.process([_r("e", k, 1.0 + 0.01 * k)], [0])
    slot = p.store.index["e"]
    state = p.store.model_state[slot].copy()
    p.store.model_state[slot] = 0
    p.rewarm(np.array([slot]))
    # the fake model forgets geometrically, so 64 steps from zero land on the same state
    np.testing.assert_allclose(p.store.model_state[slot], state, rtol=1e-6)


def test_columns_of_batch_messages_equal_single_readings() -> None:
    rng = np.random.default_rng(3)
    stream = [_r(f"e{i % 5}", i // 5, float(rng.normal(1, 0.1))) for i in range(200)]
    a, b = _processor(), _processor()
    a.process(stream, [0] * len(stream))
    cols = ReadingColumns(("vibration",))
    for e in range(5):  # one message of 40 readings per engine, each message whole
        mine = [r for r in stream if r.engine_id == f"e{e}"]
        cols.add(f"e{e}", 0, [r.ts_ms for r in mine], [[r.values["vibration"] for r in mine]])
    b.process_columns(cols)
    for engine, slot in a.store.index.items():
        assert a.store.encode_row(slot) == b.store.encode_row(b.store.index[engine])
