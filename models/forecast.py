"""Next-value forecasting without TensorFlow: scaling, training windows, baselines, metrics.

Convention everywhere: a prediction made after reading ``t`` is for reading ``t + 1``; for a
series of length T the predictions form a (T, C) array whose last row has no target. A
series is scored on targets ``j >= max(1, score_from)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.data import Series

#: Moving-average windows tried on validation data.
MA_WINDOWS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


@dataclass(frozen=True)
class Scaler:
    """Per-channel standard scaling: ``(x - mean) / scale``."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(cls, series: Sequence[Series]) -> Scaler:
        data = np.concatenate([s.values for s in series], axis=0)
        std = data.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(float(v) for v in data.mean(axis=0)), tuple(float(v) for v in std))

    def transform(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return out

    def inverse(self, z: np.ndarray) -> np.ndarray:
        out: np.ndarray = z * np.asarray(self.scale) + np.asarray(self.mean)
        return out


def windows(
    series: Sequence[Series], scaler: Scaler, length: int, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training windows: inputs (N, L, C), next-step targets (N, L, C), weights (N, L).

    Every window starts from a zero state, as an engine does in the service; windows start
    at 0, stride, 2*stride, ... and the last one is aligned to the series end. Series
    shorter than ``length + 1`` give one zero-padded window whose padding weighs 0.
    """
    xs, ys, ws = [], [], []
    for s in series:
        z = scaler.transform(s.values).astype(np.float32)
        n = len(z)
        if n < 2:
            continue
        if n < length + 1:
            x = np.zeros((length, z.shape[1]), np.float32)
            y = np.zeros_like(x)
            w = np.zeros(length, np.float32)
            x[: n - 1], y[: n - 1], w[: n - 1] = z[:-1], z[1:], 1.0
            xs.append(x)
            ys.append(y)
            ws.append(w)
            continue
        starts = list(range(0, n - length, stride))
        if starts[-1] != n - length - 1:
            starts.append(n - length - 1)
        for a in starts:
            xs.append(z[a : a + length])
            ys.append(z[a + 1 : a + length + 1])
            ws.append(np.ones(length, np.float32))
    if not xs:
        raise ValueError("no series long enough to make training windows")
    return np.stack(xs), np.stack(ys), np.stack(ws)


def last_value(values: np.ndarray) -> np.ndarray:
    """Baseline: the next reading equals the current one."""
    return values.copy()


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Baseline: the mean of the last ``window`` readings (fewer at the start)."""
    csum = np.cumsum(values, axis=0)
    out = np.empty_like(values)
    t = np.arange(len(values))
    lo = t - window
    out[:] = csum
    has = lo >= 0
    out[has] -= csum[lo[has]]
    counts = np.minimum(t + 1, window)[:, None]
    result: np.ndarray = out / counts
    return result


@dataclass(frozen=True)
class Errors:
    """RMSE and MAE per channel over ``count`` scored targets."""

    rmse: tuple[float, ...]
    mae: tuple[float, ...]
    count: int


def errors(series: Sequence[Series], predict: Callable[[Series], np.ndarray]) -> Errors:
    """Pooled next-value errors of ``predict`` (series -> (T, C) predictions) over ``series``."""
    sq, ab, count = None, None, 0
    for s in series:
        pred = predict(s)
        start = max(1, s.score_from)
        if start >= len(s):
            continue
        diff = s.values[start:] - pred[start - 1 : -1]
        sq = (diff**2).sum(axis=0) + (0 if sq is None else sq)
        ab = np.abs(diff).sum(axis=0) + (0 if ab is None else ab)
        count += len(diff)
    if sq is None or ab is None or count == 0:
        raise ValueError("nothing to score")
    return Errors(
        tuple(float(v) for v in np.sqrt(sq / count)), tuple(float(v) for v in ab / count), count
    )


def choose_ma_window(series: Sequence[Series], candidates: Sequence[int] = MA_WINDOWS) -> int:
    """The moving-average window with the lowest mean RMSE over channels on ``series``."""
    best, best_err = candidates[0], np.inf
    for w in candidates:

        def predict(s: Series, w: int = w) -> np.ndarray:
            return moving_average(s.values, w)

        err = float(np.mean(errors(series, predict).rmse))
        if err < best_err:
            best, best_err = w, err
    return best


def level_shift_augment(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, copies: int, jitter: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Append ``copies`` shifted copies of every window: one offset per window and channel,
    uniform in ``[-jitter, jitter]`` scaled units, added to inputs and targets alike (with one
    channel this draws exactly the offsets it always did).

    Machines differ in their normal level far more than the training engines do (IMS test 2
    runs at 0.04-0.08 g, test 1 at ~0.12 g); shifting whole windows teaches the model that the
    level does not change the dynamics, so it does not pull every engine toward the training
    mean.
    """
    if copies <= 0 or jitter <= 0:
        return x, y, w
    rng = np.random.default_rng(seed)
    # Channels' normal levels differ between machines independently of each other.
    size = (copies * len(x), 1, x.shape[2])
    offsets = rng.uniform(-jitter, jitter, size=size).astype(np.float32)
    xs = np.concatenate([x, np.tile(x, (copies, 1, 1)) + offsets])
    ys = np.concatenate([y, np.tile(y, (copies, 1, 1)) + offsets])
    ws = np.concatenate([w, np.tile(w, (copies, 1))])
    return xs, ys, ws
