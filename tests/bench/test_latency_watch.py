"""The latency benchmark's changelog watcher counts each committed reading once."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from bench.latency import _NewReadings
from service.state import EngineStore


def test_new_readings_are_the_window_timestamps_after_the_previous_record() -> None:
    store = EngineStore(window=4, channels=1, model_state_size=2, score_state_size=1)
    slots, _ = store.slots_for(["e1"], [0], np.zeros(1))
    watch = _NewReadings(EngineStore(window=4, channels=1, model_state_size=2,
                                     score_state_size=1))

    def record() -> SimpleNamespace:
        return SimpleNamespace(key=b"e1", value=store.encode_row(int(slots[0])))

    for ts in (1_000, 2_000):
        store.push(slots, np.zeros((1, 1)), np.array([ts]))
    assert watch(record()) == [2_000]  # first record seen: only its newest reading
    # Three more readings, one of them past 2**32 ms (the stored uint32 wraps); the
    # window (4) still holds 2_000, which was already seen.
    for ts in (3_000, 2**32 + 5, 2**32 + 900):
        store.push(slots, np.zeros((1, 1)), np.array([ts]))
    assert watch(record()) == [3_000, 2**32 + 5, 2**32 + 900]
