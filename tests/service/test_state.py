"""EngineStore: growth, ring window order, bit-exact changelog records."""

from __future__ import annotations

import numpy as np
import pytest

from service.state import EngineStore, row_identity


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


def _v3_record(store: EngineStore, slot: int) -> bytes:
    """The VWS3 layout of ``slot``: VWS4's fields after the header of the formats before it
    (magic and four dimensions; no class, no model fingerprints)."""
    v4 = store.encode_row(slot)
    return b"VWS3" + v4[4:12] + v4[len(store.row_header()):]


def _without_scored_pred(store: EngineStore, slot: int) -> tuple[bytes, int]:
    """The VWS2 layout of ``slot`` (no ``scored_pred``) and where its window timestamps
    start."""
    v3 = _v3_record(store, slot)
    head = 12  # the header before VWS4
    ts_off = head + store.model_state[slot].nbytes + store.ring[slot].nbytes
    pred_off = (ts_off + store.ring_ts[slot].nbytes + 8 + 8 + store.last_pred[slot].nbytes)
    v2 = b"VWS2" + v3[4:pred_off] + v3[pred_off + store.scored_pred[slot].nbytes :]
    return v2, ts_off


def _v1_record(store: EngineStore, slot: int) -> bytes:
    """The VWS1 layout of ``slot`` (int64 window timestamps), as an older version wrote."""
    v2, off = _without_scored_pred(store, slot)
    ts = store.history(slot)[0]
    wide = np.zeros(store.window, dtype=np.int64)
    n = len(ts)
    end = int(store.count[slot] % store.window)
    wide[(np.arange(end - n, end) % store.window)] = ts
    return b"VWS1" + v2[4:off] + wide.tobytes() + v2[off + store.ring_ts[slot].nbytes :]


@pytest.mark.parametrize("version", ["VWS1", "VWS2", "VWS3"])
def test_restore_reads_the_previous_record_formats(version: str) -> None:
    a = _store(window=4)
    slots, _ = a.slots_for(["x"], [1], np.zeros(2))
    for t in range(6):
        a.push(slots, np.full((1, 2), float(t)), np.array([1_795_608_000_000 + t * 1000]))
    slot = int(slots[0])
    record = {"VWS1": _v1_record, "VWS3": _v3_record}.get(
        version, lambda s, i: _without_scored_pred(s, i)[0])(a, slot)
    assert record[:4] == version.encode()
    b = _store(window=4)
    b.restore_row("x", record, np.zeros(2))
    if version == "VWS3":  # the same fields: the row comes back bit for bit
        assert b.encode_row(b.index["x"]) == a.encode_row(slot)
    else:  # everything but the field the older formats lack
        a.scored_pred[slot] = np.nan
        assert b.encode_row(b.index["x"]) == a.encode_row(slot)
    assert row_identity(record).class_name is None  # the default class's, by definition


def test_restore_table_equals_restore_row() -> None:
    a = _store()
    ids = [f"e{i}" for i in range(20)]
    slots, _ = a.slots_for(ids, [i % 3 for i in range(20)], np.zeros(2))
    rng = np.random.default_rng(3)
    a.model_state[slots] = rng.normal(size=(20, 3))
    a.score_state[slots] = rng.normal(size=(20, 2))
    a.scored_pred[slots] = rng.normal(size=(20, 2))
    for t in range(7):
        a.push(slots, rng.normal(size=(20, 2)), np.full(20, t))
    b, c = _store(), _store()
    b.slots_for(["e3"], [0], np.zeros(2))  # one already tracked: overwritten
    b.restore_table(ids, a.encode_table(slots), np.zeros(2))
    for e, s in zip(ids, slots, strict=True):
        c.restore_row(e, a.encode_row(int(s)), np.zeros(2))
        assert b.encode_row(b.index[e]) == c.encode_row(c.index[e]) == a.encode_row(int(s))
    assert len(a.encode_row(0)) == a.row_size()
    other = _store(window=8)
    with pytest.raises(ValueError):
        other.restore_table(ids, a.encode_table(slots), np.zeros(2))


def test_restore_rejects_an_unknown_record_format() -> None:
    a = _store()
    slots, _ = a.slots_for(["x"], [0], np.zeros(2))
    record = b"VWS9" + a.encode_row(int(slots[0]))[4:]
    with pytest.raises(ValueError, match="format b'VWS9' is not one this version reads"):
        _store().restore_row("x", record, np.zeros(2))
    with pytest.raises(ValueError, match="truncated"):
        _store().restore_row("x", a.encode_row(int(slots[0]))[:70], np.zeros(2))
