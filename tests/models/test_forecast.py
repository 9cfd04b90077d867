"""Baselines, error metrics and training windows."""

from __future__ import annotations

import numpy as np

from models.data import Series
from models.forecast import (
    Scaler,
    choose_ma_window,
    errors,
    last_value,
    level_shift_augment,
    moving_average,
    windows,
)


def test_moving_average_matches_the_definition() -> None:
    x = np.random.default_rng(0).normal(size=(50, 2))
    got = moving_average(x, 4)
    for t in range(50):
        np.testing.assert_allclose(got[t], x[max(0, t - 3) : t + 1].mean(axis=0))


def test_errors_score_next_values_from_score_from() -> None:
    s = Series("e", "f", ("v",), np.array([[1.0], [2.0], [4.0], [7.0]]), score_from=2)
    err = errors([s], lambda s: last_value(s.values))
    # Targets 4 and 7 predicted by 2 and 4: errors 2 and 3.
    assert err.count == 2
    np.testing.assert_allclose(err.mae, [2.5])
    np.testing.assert_allclose(err.rmse, [np.sqrt((4 + 9) / 2)])


def test_ma_window_is_chosen_by_validation_error() -> None:
    rng = np.random.default_rng(1)
    noisy = [Series(f"e{k}", "f", ("v",), 5 + rng.normal(size=(400, 1))) for k in range(3)]
    walk = [Series("w", "f", ("v",), np.cumsum(rng.normal(size=(400, 1)), axis=0))]
    assert choose_ma_window(noisy) >= 32  # white noise: average as much as possible
    assert choose_ma_window(walk) == 2  # random walk: the shortest window


def test_windows_cover_series_and_pad_short_ones() -> None:
    long = Series("a", "f", ("v",), np.arange(100, dtype=np.float64)[:, None])
    short = Series("b", "f", ("v",), np.arange(10, dtype=np.float64)[:, None])
    scaler = Scaler((0.0,), (1.0,))
    x, y, w = windows([long, short], scaler, length=32, stride=16)
    assert x.shape[1:] == (32, 1) and x.shape == y.shape
    np.testing.assert_array_equal(y[:-1, :-1], x[:-1, 1:])  # targets are the next inputs
    assert x[0, 0, 0] == 0 and y[-2, -1, 0] == 99  # first and last (end-aligned) windows
    assert w[-1].sum() == 9 and (w[:-1] == 1).all()  # the short series' padding weighs 0


def test_level_shift_moves_inputs_and_targets_together() -> None:
    x = np.zeros((4, 8, 1), np.float32)
    y = np.ones((4, 8, 1), np.float32)
    w = np.ones((4, 8), np.float32)
    xs, ys, ws = level_shift_augment(x, y, w, copies=2, jitter=3.0, seed=0)
    assert xs.shape == (12, 8, 1) and ws.shape == (12, 8)
    np.testing.assert_allclose(ys - xs, 1.0, atol=1e-6)
    offsets = xs[4:, 0, 0]
    assert np.all(np.abs(offsets) <= 3.0) and np.unique(offsets).size == 8
