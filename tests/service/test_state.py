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


def test_window_timestamps_are_exact_across_the_uint32_wrap() -> None:
    store = _store(window=4)
    slots, _ = store.slots_for(["a"], [0], np.zeros(2))
    start = (1 << 32) * 400 - 2_500  # 2 ms-counts below a multiple of 2**32 ...
    stamps = [start, start + 1_000, start + 2_000, start + 3_000, start + 40 * 86_400_000]
    for t in stamps:  # ... crossing it, then a silence of 40 days
        store.push(slots, np.zeros((1, 2)), np.array([t]))
    ts, _ = store.history(int(slots[0]))
    assert ts.dtype == np.int64 and ts.tolist() == stamps[1:]
    assert store.ring_ts.dtype == np.uint32


def _v1_record(store: EngineStore, slot: int) -> bytes:
    """The VWS1 layout of ``slot`` (int64 window timestamps), as the previous version wrote."""
    v2 = store.encode_row(slot)
    head = 12  # _HEADER.size
    off = head + store.model_state[slot].nbytes + store.ring[slot].nbytes
    ts = store.history(slot)[0]
    wide = np.zeros(store.window, dtype=np.int64)
    n = len(ts)
    end = int(store.count[slot] % store.window)
    wide[(np.arange(end - n, end) % store.window)] = ts
    return b"VWS1" + v2[4:off] + wide.tobytes() + v2[off + store.ring_ts[slot].nbytes :]


def test_restore_reads_the_previous_record_format() -> None:
    a = _store(window=4)
    slots, _ = a.slots_for(["x"], [1], np.zeros(2))
    for t in range(6):
        a.push(slots, np.full((1, 2), float(t)), np.array([1_795_608_000_000 + t * 1000]))
    b = _store(window=4)
    b.restore_row("x", _v1_record(a, int(slots[0])), np.zeros(2))
    assert b.encode_row(b.index["x"]) == a.encode_row(int(slots[0]))


def test_restore_rejects_an_unknown_record_format() -> None:
    a = _store()
    slots, _ = a.slots_for(["x"], [0], np.zeros(2))
    record = b"VWS9" + a.encode_row(int(slots[0]))[4:]
    with pytest.raises(ValueError, match="format b'VWS9' is not one this version reads"):
        _store().restore_row("x", record, np.zeros(2))
    with pytest.raises(ValueError, match="truncated"):
        _store().restore_row("x", a.encode_row(int(slots[0]))[:40], np.zeros(2))
