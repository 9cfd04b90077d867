"""EngineStore: growth, ring window order, bit-exact changelog records."""

from __future__ import annotations

import numpy as np
import pytest

from service.state import EngineStore


def _store(window: int = 4) -> EngineStore:
    return EngineStore(window=window, channels=2, model_state_size=3, score_state_size=2)


def test_grows_past_initial_capacity_and_keeps_rows() -> None:
    store = _store()
    ids = [f"e{i}" for i in range(3000)]
    slots, new = store.slots_for(ids, [0] * len(ids), np.zeros(2))
    assert len(new) == 3000 and len(store) == 3000 and store.capacity >= 3000
    store.model_state[slots[5]] = [1, 2, 3]
    store.slots_for(["more"], [0], np.zeros(2))
    assert store.model_state[slots[5]].tolist() == [1, 2, 3]
    again, new = store.slots_for(ids[:10], [0] * 10, np.zeros(2))
    assert new == [] and again.tolist() == slots[:10].tolist()


def test_window_is_oldest_first_after_wrapping() -> None:
    store = _store(window=4)
    slots, _ = store.slots_for(["a"], [0], np.zeros(2))
    for t in range(6):
        store.push(slots, np.array([[t, 10 * t]], dtype=np.float64), np.array([100 + t]))
    ts, values = store.history(int(slots[0]))
    assert ts.tolist() == [102, 103, 104, 105]
    assert values[:, 1].tolist() == [20, 30, 40, 50]


def test_encode_restore_is_bit_exact() -> None:
    a = _store()
    slots, _ = a.slots_for(["x", "y"], [1, 2], np.zeros(2))
    rng = np.random.default_rng(1)
    a.model_state[slots] = rng.normal(size=(2, 3))
    a.score_state[slots] = rng.normal(size=(2, 2))
    for t in range(5):
        a.push(slots, rng.normal(size=(2, 2)), np.array([t, t]))
    a.status[slots] = [2, 3]
    b = _store()
    b.restore_row("y", a.encode_row(int(slots[1])), np.zeros(2))
    sb = b.index["y"]
    assert a.encode_row(int(slots[1])) == b.encode_row(sb)
    assert int(b.partition[sb]) == 2 and int(b.status[sb]) == 3


def test_restore_rejects_other_dimensions() -> None:
    a = _store(window=4)
    slots, _ = a.slots_for(["x"], [0], np.zeros(2))
    b = _store(window=8)
    with pytest.raises(ValueError, match="dims"):
        b.restore_row("x", a.encode_row(int(slots[0])), np.zeros(2))


def test_drop_partitions_frees_rows_for_reuse() -> None:
    store = _store()
    store.slots_for(["a", "b", "c"], [0, 1, 0], np.zeros(2))
    assert sorted(store.drop_partitions({0})) == ["a", "c"]
    assert list(store.index) == ["b"]
    slots, _ = store.slots_for(["d"], [3], np.zeros(2))
    assert int(slots[0]) in (0, 2)


def test_encode_rows_equals_encode_row() -> None:
    store = _store()
    ids = [f"e{i}" for i in range(50)]
    slots, _ = store.slots_for(ids, [i % 3 for i in range(50)], np.zeros(2))
    rng = np.random.default_rng(2)
    store.model_state[slots] = rng.normal(size=(50, 3))
    for t in range(7):
        store.push(slots, rng.normal(size=(50, 2)), np.full(50, t))
    pick = slots[::3]
    assert store.encode_rows(pick) == [store.encode_row(int(s)) for s in pick]
    assert store.encode_rows(pick[:0]) == []
