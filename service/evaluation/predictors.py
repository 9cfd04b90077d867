"""Online predictors for the evaluations, and the online normalisation in front of a model.

Every predictor has the interface of ``service.model.StreamingModel`` (``channels``,
``zero_state``, ``step``, ``scaled_residual``), so the evaluations run it through the same
processor as the service runs the LSTM. None of them sees a reading before it is scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.processor import StepModel

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class LastValue:
    """Predicts that the next reading equals the current one (the naive baseline).

    Its residual is the first difference of the stream. State: none (one unused float).
    """

    version = "last-value"

    def __init__(self, channels: tuple[str, ...] = ("value",)) -> None:
        self._channels = channels

    @property
    def channels(self) -> tuple[str, ...]:
        return self._channels

    @property
    def state_size(self) -> int:
        return 1

    def zero_state(self, n: int) -> F32:
        return np.zeros((n, 1), dtype=np.float32)

    def step(self, x: F64, state: F32) -> tuple[F64, F32]:
        return np.asarray(x, dtype=np.float64).copy(), state.copy()

    def scaled_residual(self, actual: F64, predicted: F64) -> F64:
        out: F64 = np.asarray(actual, dtype=np.float64) - predicted
        return out


class _Scaler(Protocol):
    def unscale(self, z: np.ndarray) -> np.ndarray: ...


def standardise_online(
    values: F64, rate: float = 0.001, warmup: int = 30, freeze_after: int | None = None
) -> F64:
    """Causal per-series standardisation: ``z_t = (x_t - m_{t-1}) / s_{t-1}``.

    ``m``, ``s`` are a running mean and standard deviation of the readings *before* ``t``
    (an exact running mean for the first ``1/rate`` readings, then an EWMA with ``rate``),
    so no reading is normalised with statistics that include it or anything after it.
    ``values`` is ``(T, C)``; returns ``(T, C)``. A few readings do not make a usable standard
    deviation: the first two outputs are 0 and those before ``warmup`` are clipped to +-3.
    ``freeze_after``: stop updating the statistics after that many readings, so that later
    readings are measured against the engine's own early (healthy) baseline.
    """
    x = np.asarray(values, dtype=np.float64)
    out = np.zeros_like(x)
    mean = x[0].copy()
    var = np.zeros(x.shape[1])
    floor = np.maximum(np.abs(x[0]) * 1e-6, 1e-12)
    for t in range(1, x.shape[0]):
        a = 0.0 if freeze_after is not None and t > freeze_after else max(rate, 1.0 / t)
        d = x[t - 1] - mean
        mean = mean + a * d
        var = (1 - a) * (var + a * d * d)
        if t >= 2:
            z = (x[t] - mean) / np.maximum(np.sqrt(var), floor)
            out[t] = z if t >= warmup else np.clip(z, -3.0, 3.0)
    return np.clip(out, -50.0, 50.0)


def with_changes(z: F64, rate: float) -> F64:
    """``z`` ``(T, C)`` beside each channel's change: its departure from its own recent
    level, an EWMA at ``rate`` per reading of the readings *before* it (0 for the first).
    ``(T, 2C)``: the levels, then the changes. A level departure that stays (a thermal
    drift left over after a fault) fades from the change within about ``1/rate`` readings;
    a fast change (a valve closing) shows in it at once."""
    x = np.asarray(z, dtype=np.float64)
    change = np.zeros_like(x)
    level = x[0].copy()
    for t in range(1, x.shape[0]):
        change[t] = x[t] - level
        level = level + rate * (x[t] - level)
    return np.concatenate([x, change], axis=1)


def to_model_units(z: F64, model: _Scaler) -> F64:
    """Standardised values in the model's raw units (so the model sees its scaled range)."""
    out: F64 = np.asarray(model.unscale(z), dtype=np.float64)
    return out


def load_model(path: Path) -> StepModel:
    """The streaming LSTM from a model artifact directory (imports ``service.model`` lazily)."""
    from service.model import load_streaming_model

    model: StepModel = load_streaming_model(path)
    return model


class EwmaLevel:
    """Predicts the next reading as an EWMA of the readings so far (rate ``rate``).

    Its residual is the deviation of a reading from the recent level: it reacts to spikes
    and to level shifts. State per engine: ``[seen, level per channel]``.
    """

    version = "ewma-level"

    def __init__(self, channels: tuple[str, ...] = ("value",), rate: float = 0.01) -> None:
        self._channels = channels
        self.rate = rate

    @property
    def channels(self) -> tuple[str, ...]:
        return self._channels

    @property
    def state_size(self) -> int:
        return 1 + len(self._channels)

    def zero_state(self, n: int) -> F32:
        return np.zeros((n, self.state_size), dtype=np.float32)

    def step(self, x: F64, state: F32) -> tuple[F64, F32]:
        x = np.asarray(x, dtype=np.float64)
        seen = state[:, :1] > 0
        level = state[:, 1:].astype(np.float64)
        new_level = np.where(seen, level + self.rate * (x - level), x)
        new = np.concatenate([np.ones((len(x), 1)), new_level], axis=1).astype(np.float32)
        return new_level, new

    def scaled_residual(self, actual: F64, predicted: F64) -> F64:
        out: F64 = np.asarray(actual, dtype=np.float64) - predicted
        return out


class LevelAndSeason:
    """Two predictions of one signal, as two channels: an EWMA level, and a seasonal one,
    the engine's daily profile at the next reading's phase (the level until a period has
    been seen).

    The profile holds one value per phase of the ``period``: with ``season_rate`` 1.0 it is
    simply the reading one period earlier (seasonal naive); below 1.0 each phase is an EWMA
    over the past periods at that phase (rate ``season_rate``), a smoother expectation that
    one odd day does not spoil.

    Feed the signal twice (``x[:, 0] == x[:, 1]``) and score the channels separately
    (``channel_reduce="max"``): the level view catches spikes and shifts, the seasonal view
    a daily pattern that breaks. With ``robust`` > 0 each update of the level and the
    profile is capped at that many typical deviations (a running mean of the capped
    deviations), so one huge spike does not drag them for hundreds of readings.
    State per engine: ``[count, level, typical deviation, profile[period]]``, fixed.
    """

    version = "level-and-season"

    def __init__(
        self, period: int, rate: float = 0.01, season_rate: float = 1.0, robust: float = 0.0
    ) -> None:
        if period < 1:
            raise ValueError("period must be >= 1")
        if not 0 < season_rate <= 1:
            raise ValueError("need 0 < season_rate <= 1")
        if robust < 0:
            raise ValueError("need robust >= 0")
        self.period = period
        self.rate = rate
        self.season_rate = season_rate
        self.robust = robust

    @property
    def channels(self) -> tuple[str, ...]:
        return ("c0", "c1")

    @property
    def state_size(self) -> int:
        return 3 + self.period

    def zero_state(self, n: int) -> F32:
        return np.zeros((n, self.state_size), dtype=np.float32)

    def step(self, x: F64, state: F32) -> tuple[F64, F32]:
        v = np.asarray(x, dtype=np.float64)[:, 0]
        count = state[:, 0].astype(np.int64)
        level = state[:, 1].astype(np.float64)
        scale = state[:, 2].astype(np.float64)
        d = v - level
        if self.robust:
            # Huber-style: an innovation counts at most ``robust`` times the typical one, so
            # one huge spike neither drags the level nor the profile for hundreds of readings;
            # the typical size follows what it sees (a real shift widens it within tens of
            # readings, and the level follows).
            lim = np.where(count > 1, self.robust * scale, np.inf)
            d_used = np.clip(d, -lim, lim)
            new_scale = np.where(count > 0, scale + self.rate * (np.abs(d_used) - scale), 0.0)
        else:
            lim = np.full(len(v), np.inf)
            d_used = d
            new_scale = scale
        level = np.where(count > 0, level + self.rate * d_used, v)
        new = state.copy()
        rows = np.arange(len(v))
        slot = 3 + count % self.period
        # The first period fills the profile; later ones update it (exactly, at rate 1.0).
        old = state[rows, slot].astype(np.float64)
        inc = np.clip(v - old, -lim, lim)
        learned = v if self.season_rate == 1.0 else old + self.season_rate * inc
        new[rows, slot] = np.where(count >= self.period, learned, v)
        new[:, 0] = count + 1
        new[:, 1] = level
        new[:, 2] = new_scale
        # The profile at the next reading's phase.
        upcoming = new[rows, 3 + (count + 1) % self.period].astype(np.float64)
        season = np.where(count + 1 >= self.period, upcoming, level)
        return np.stack([level, season], axis=1), new

    def scaled_residual(self, actual: F64, predicted: F64) -> F64:
        out: F64 = np.asarray(actual, dtype=np.float64) - predicted
        return out


class LevelSeasonAndRange(LevelAndSeason):
    """:class:`LevelAndSeason` plus a range view (HTM's "spatial anomaly"), as two more
    channels: the highest and lowest reading so far, widened by ``tolerance`` times their
    distance. Their residuals are how far a reading falls above the upper or below the lower
    bound, as a fraction of the widened range, and 0 inside it, so they are 0 until a
    reading goes where the engine has never been. The bounds are used from ``warmup``
    readings on (before that the residuals are 0).

    Feed the signal four times and score the channels apart (``channel_reduce="max"``).
    State per engine: ``[count, level, typical deviation, profile[period], low, high]``.
    """

    version = "level-season-range"

    def __init__(
        self,
        period: int,
        rate: float = 0.01,
        season_rate: float = 1.0,
        tolerance: float = 0.2,
        warmup: int | None = None,
        robust: float = 0.0,
    ) -> None:
        super().__init__(period, rate, season_rate, robust)
        if tolerance < 0:
            raise ValueError("need tolerance >= 0")
        self.tolerance = tolerance
        self.warmup = period if warmup is None else warmup

    @property
    def channels(self) -> tuple[str, ...]:
        return ("c0", "c1", "c2", "c3")

    @property
    def state_size(self) -> int:
        return 5 + self.period

    def step(self, x: F64, state: F32) -> tuple[F64, F32]:
        views, new = super().step(x, state)
        v = np.asarray(x, dtype=np.float64)[:, 0]
        first = state[:, 0] == 0
        low = np.where(first, v, np.minimum(state[:, -2], v))
        high = np.where(first, v, np.maximum(state[:, -1], v))
        new[:, -2] = low
        new[:, -1] = high
        low, high = new[:, -2].astype(np.float64), new[:, -1].astype(np.float64)
        margin = self.tolerance * (high - low)
        ready = new[:, 0] >= self.warmup
        # Not ready: both bounds at the level, an empty range whose residuals are 0.
        upper = np.where(ready, high + margin, views[:, 0])
        lower = np.where(ready, low - margin, views[:, 0])
        return np.concatenate([views, upper[:, None], lower[:, None]], axis=1), new

    def scaled_residual(self, actual: F64, predicted: F64) -> F64:
        x = np.asarray(actual, dtype=np.float64)
        out: F64 = x - predicted
        upper, lower = predicted[:, 2], predicted[:, 3]
        width = upper - lower
        ready = width > 0
        scale = np.where(ready, width, 1.0)
        out[:, 2] = np.where(ready, np.maximum(x[:, 2] - upper, 0.0) / scale, 0.0)
        out[:, 3] = np.where(ready, np.maximum(lower - x[:, 3], 0.0) / scale, 0.0)
        return out


PREDICTORS = ("lstm", "ewma", "seasonal", "last-value")


def make_predictor(
    name: str,
    channels: tuple[str, ...],
    model_path: Path | None = None,
    rate: float = 0.01,
    period: int = 1,
    season_rate: float = 1.0,
    range_tolerance: float = 0.0,
    robust: float = 0.0,
) -> StepModel:
    """Build a predictor by name; ``lstm`` loads the artifact at ``model_path``.

    ``seasonal`` with ``range_tolerance`` > 0 adds the range view (four channels).
    """
    if name == "seasonal" and range_tolerance > 0:
        return LevelSeasonAndRange(period, rate, season_rate, range_tolerance, robust=robust)
    if name == "seasonal":
        return LevelAndSeason(period, rate, season_rate, robust)
    if name == "last-value":
        return LastValue(channels)
    if name == "ewma":
        return EwmaLevel(channels, rate)
    if name == "lstm":
        if model_path is None:
            raise ValueError("the lstm predictor needs a model artifact path")
        return load_model(model_path)
    raise ValueError(f"unknown predictor {name!r}; choose from {PREDICTORS}")
