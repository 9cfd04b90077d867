"""Anomaly scorers: per-engine error stream -> score in [0, 1], higher = more anomalous.

The contract follows River's anomaly detectors (``score_one`` then ``learn_one``), vectorised
over engines and with the state held outside the scorer so that it can be checkpointed:

* ``init_state(n)`` returns ``(n, state_size)`` float64 rows for ``n`` new engines;
* ``score_many(x, state)`` scores one input per engine *without* learning from it;
* ``learn_many(x, state)`` returns new state rows that have learned from those inputs;
* ``explain_many(x, state, level)`` returns the statistic the scorer compared (for example
  the smoothed error) and the value of that statistic that would score exactly ``level``,
  so a threshold on the score can be shown in the units of the error;
* ``step_many(x, state, level)`` does all three at once, as the service calls them for
  every reading: ``(score, value, threshold, learned)``, bit for bit what the three
  separate calls return, with the shared intermediates (smoothed input, standard
  deviation, ...) computed once.

A scorer never decides whether something is an anomaly: a threshold is a wrapper around a
scorer (see :class:`Thresholded`). Memory per engine is exactly ``state_size`` floats,
fixed at construction; it never grows with the number of readings.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.scoring.stats import (
    FloatArray,
    clip01,
    const,
    ewma_step,
    log_normal_tail,
    normal_isf,
    score_to_log_tail,
    tail_to_score,
)


class Scorer(Protocol):
    """What every scorer provides (checked by the contract tests)."""

    @property
    def state_size(self) -> int: ...

    #: state columns holding the long-run baseline (kept still while an engine is anomalous)
    @property
    def baseline_columns(self) -> tuple[int, ...]: ...

    def init_state(self, n: int) -> FloatArray: ...

    def score_many(self, x: FloatArray, state: FloatArray) -> FloatArray: ...

    def learn_many(self, x: FloatArray, state: FloatArray) -> FloatArray: ...

    def explain_many(
        self, x: FloatArray, state: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray]: ...

    def step_many(
        self, x: FloatArray, state: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]: ...


def _std(
    mean: FloatArray, var: FloatArray, min_std: float | FloatArray, rel_std: float | FloatArray
) -> FloatArray:
    """Standard deviation with a floor: a perfectly flat history must not make the first
    tiny wobble a certain anomaly, whatever the units."""
    # sqrt(max(var, 0) + floor*floor), floor = min_std + rel_std*|mean|; in place, same order
    floor = rel_std * np.abs(mean)
    floor += min_std
    floor *= floor
    out: FloatArray = np.maximum(var, _C_ZERO)
    out += floor
    return np.sqrt(out, out=out)


_C_ZERO, _C_ONE = const(0.0), const(1.0)


def _tail_score(diff: FloatArray, std: FloatArray) -> FloatArray:
    """``tail_to_score(log_normal_tail(diff / std))`` (a new array)."""
    return tail_to_score(log_normal_tail(diff / std))


def _threshold(mean: FloatArray, std: FloatArray, level: float) -> FloatArray:
    """The input at which a Gaussian tail score reaches ``level``."""
    out: FloatArray = mean + normal_isf(score_to_log_tail(level)) * std
    return out


class GaussianTail:
    """Tail probability of the input under an EWMA Gaussian fit of the engine's past inputs.

    The simplest scorer: no smoothing of its own. State row: ``[count, mean, var]``.
    """

    state_size = 3
    #: state columns holding the long-run baseline (kept still while an engine is anomalous)
    baseline_columns: tuple[int, ...] = (1, 2)

    def __init__(
        self, decay: float = 0.01, min_count: int = 2, min_std: float = 1e-9, rel_std: float = 0.01
    ) -> None:
        self.decay = decay
        self.min_count = min_count
        self.min_std = min_std
        self.rel_std = rel_std

    def init_state(self, n: int) -> FloatArray:
        return np.zeros((n, self.state_size), dtype=np.float64)

    def score_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        std = _std(state[:, 1], state[:, 2], self.min_std, self.rel_std)
        return self._score(state, x - state[:, 1], std)

    def _score(self, state: FloatArray, diff: FloatArray, std: FloatArray) -> FloatArray:
        out: FloatArray = np.where(state[:, 0] >= self.min_count, _tail_score(diff, std), 0.0)
        return out

    def learn_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        return self._learn(state, x - state[:, 1])

    def _learn(self, state: FloatArray, diff: FloatArray) -> FloatArray:
        new = np.empty((len(state), self.state_size), dtype=np.float64)
        count = np.add(state[:, 0], 1.0, out=new[:, 0])
        rate = np.maximum(self.decay, 1.0 / count)  # ewma_rate(decay, count)
        ewma_step(diff, state[:, 1], state[:, 2], rate, new[:, 1], new[:, 2])
        return new

    def explain_many(
        self, x: FloatArray, state: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray]:
        std = _std(state[:, 1], state[:, 2], self.min_std, self.rel_std)
        return x, _threshold(state[:, 1], std, level)

    def step_many(
        self, x: FloatArray, state: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        std = _std(state[:, 1], state[:, 2], self.min_std, self.rel_std)
        diff = x - state[:, 1]
        threshold = _threshold(state[:, 1], std, level)
        return self._score(state, diff, std), x, threshold, self._learn(state, diff)


class AnomalyLikelihood:
    """HTM's anomaly likelihood (Ahmad et al. 2017) in constant memory per engine.

    The short-term average of the input (EWMA with rate ``short``, HTM's 10-reading moving
    average) is compared with the long-run distribution of that average (EWMA mean and
    variance with rate ``long``, HTM's 8,640-reading window); the score is the log-scaled
    Gaussian tail probability of the current average. For the first ``learning`` readings
    the score is 0. State row: ``[count, short_avg, long_mean, long_var]``.
    """

    state_size = 4
    baseline_columns: tuple[int, ...] = (2, 3)

    def __init__(
        self,
        short: float = 0.3,
        long: float = 0.005,
        learning: int = 30,
        min_std: float = 1e-9,
        rel_std: float = 0.05,
    ) -> None:
        self.short = short
        self.long = long
        self.learning = learning
        self.min_std = min_std
        self.rel_std = rel_std
        # the same numbers as 0-d arrays, cheaper operands (see ``stats.const``)
        self._c = {
            k: const(v)
            for k, v in {
                "keep": 1.0 - short, "short": short, "long": long, "min_std": min_std,
                "rel_std": rel_std, "ready": max(learning, 2),
            }.items()
        }  # fmt: skip

    def init_state(self, n: int) -> FloatArray:
        return np.zeros((n, self.state_size), dtype=np.float64)

    def _avg(self, x: FloatArray, state: FloatArray) -> FloatArray:
        c = self._c
        blend = c["keep"] * state[:, 1]
        blend += c["short"] * x  # (1 - short) * avg + short * x
        out: FloatArray = np.where(state[:, 0] > _C_ZERO, blend, x)
        return out

    def _ready(self, state: FloatArray) -> npt.NDArray[np.bool_]:
        """Engines past the learning period (their scores count)."""
        out: npt.NDArray[np.bool_] = state[:, 0] >= self._c["ready"]
        return out

    def _spread(self, state: FloatArray) -> FloatArray:
        """The long-run spread of the smoothed error (columns 2, 3), floored."""
        return _std(state[:, 2], state[:, 3], self._c["min_std"], self._c["rel_std"])

    def _moments(
        self, x: FloatArray, state: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The smoothed error after ``x``, the spread, and the error's distance from the
        long-run mean."""
        avg = self._avg(x, state)
        return avg, self._spread(state), avg - state[:, 2]

    def score_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        _, std, diff = self._moments(x, state)
        out: FloatArray = np.where(self._ready(state), _tail_score(diff, std), 0.0)
        return out

    def learn_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        avg = self._avg(x, state)
        return self._learned(state, avg, avg - state[:, 2])[0]

    def _learned(
        self, state: FloatArray, avg: FloatArray, diff: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """A new state with columns 0..3 learned (:meth:`_learn_into`), and its
        ``1 / (count + 1)``."""
        new = np.empty((len(state), self.state_size), dtype=np.float64)
        return new, self._learn_into(new, state, avg, diff)

    def _learn_into(
        self, new: FloatArray, state: FloatArray, avg: FloatArray, diff: FloatArray
    ) -> FloatArray:
        """Columns 0..3 of ``new`` = the learned ``[count, short_avg, long_mean, long_var]``
        (``diff = avg - long_mean``); returns ``1 / (count + 1)`` for further EWMA rates."""
        count = np.add(state[:, 0], _C_ONE, out=new[:, 0])
        new[:, 1] = avg
        inv = _C_ONE / count
        rate = np.maximum(self._c["long"], inv)  # ewma_rate(long, count)
        ewma_step(diff, state[:, 2], state[:, 3], rate, new[:, 2], new[:, 3])
        return inv

    def explain_many(
        self, x: FloatArray, state: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray]:
        return self._avg(x, state), _threshold(state[:, 2], self._spread(state), level)

    def step_many(
        self, x: FloatArray, state: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        avg, std, diff = self._moments(x, state)
        score: FloatArray = np.where(self._ready(state), _tail_score(diff, std), 0.0)
        threshold = _threshold(state[:, 2], std, level)
        return score, avg, threshold, self._learned(state, avg, diff)[0]


class LikelihoodWithSpikes(AnomalyLikelihood):
    """The anomaly likelihood, plus a check of every single error against the raw errors.

    Heavy smoothing makes the likelihood see sustained departures but blunts one-reading
    spikes. This scorer also fits an EWMA Gaussian (rate ``spike_decay``, a shorter memory)
    to the raw, unsmoothed errors and takes the larger of the two scores. The spike part is
    log-scaled with a much deeper floor (``10**-spike_floor`` scores 1.0 instead of
    ``1e-10``), so only an error far outside anything recent counts: with the default 60, a
    1-in-1,000 raw error scores 0.05 and a 12-sigma one about 0.5. State row:
    ``[count, short_avg, long_mean, long_var, raw_mean, raw_var]``. ``explain_many``
    describes the likelihood part (the smoothed error and its threshold).
    """

    state_size = 6
    baseline_columns: tuple[int, ...] = (2, 3, 4, 5)

    def __init__(
        self,
        short: float = 0.3,
        long: float = 0.005,
        learning: int = 30,
        spike_floor: float = 60.0,
        spike_decay: float = 0.003,
        spike_rel_std: float = 0.01,
    ) -> None:
        super().__init__(short, long, learning)
        if spike_floor <= 0:
            raise ValueError("need spike_floor > 0")
        self.spike_log_floor = spike_floor * float(np.log(0.1))
        self.spike_decay = spike_decay
        self.spike_rel_std = spike_rel_std
        self._c.update(
            spike_log_floor=const(self.spike_log_floor),
            spike_decay=const(spike_decay),
            spike_rel_std=const(spike_rel_std),
        )

    def score_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        smoothed = super().score_many(x, state)
        log_tail = log_normal_tail((x - state[:, 4]) / self._raw_std(state))
        return self._max_spike(smoothed, self._ready(state), log_tail)

    def _raw_std(self, state: FloatArray) -> FloatArray:
        return _std(state[:, 4], state[:, 5], self._c["min_std"], self._c["spike_rel_std"])

    def _max_spike(
        self, smoothed: FloatArray, ready: npt.NDArray[np.bool_], log_tail: FloatArray
    ) -> FloatArray:
        """The larger of the smoothed score and the spike score (from the raw error's
        ``log_tail``)."""
        spike = np.where(ready, clip01(log_tail / self._c["spike_log_floor"]), 0.0)
        out: FloatArray = np.maximum(smoothed, spike, out=spike)
        return out

    def learn_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        avg = self._avg(x, state)
        new, inv = self._learned(state, avg, avg - state[:, 2])
        self._learn_raw_into(new, state, inv, x - state[:, 4])
        return new

    def _learn_raw_into(
        self, new: FloatArray, state: FloatArray, inv: FloatArray, raw_diff: FloatArray
    ) -> None:
        """Columns 4, 5 of ``new``: the raw-error baseline after learning ``x``
        (``inv = 1 / (count + 1)``, ``raw_diff = x - raw_mean``)."""
        rate = np.maximum(self._c["spike_decay"], inv)  # ewma_rate(spike_decay, count)
        ewma_step(raw_diff, state[:, 4], state[:, 5], rate, new[:, 4], new[:, 5])

    def step_many(
        self, x: FloatArray, state: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        avg, std, diff = self._moments(x, state)
        raw_diff = x - state[:, 4]
        # Both tails (smoothed and raw error) in one call: at fleet batch sizes the cost is
        # per call, not per element.
        m = len(x)
        log_tail = log_normal_tail(np.concatenate((diff / std, raw_diff / self._raw_std(state))))
        ready = self._ready(state)
        smoothed: FloatArray = np.where(ready, tail_to_score(log_tail[:m]), 0.0)
        score = self._max_spike(smoothed, ready, log_tail[m:])
        threshold = _threshold(state[:, 2], std, level)
        new, inv = self._learned(state, avg, diff)
        self._learn_raw_into(new, state, inv, raw_diff)
        return score, avg, threshold, new


class NonparametricThreshold:
    """telemanom's nonparametric dynamic threshold (Hundman et al. 2018), per engine.

    Keeps the last ``window`` smoothed inputs in a ring inside the state row. Before each
    reading it picks ``epsilon = mean + z * std`` of the ring with ``z`` in ``z_grid`` that
    best separates the ring (largest relative drop of mean and std when the values above
    epsilon are removed, divided by ``sequences^2 + points`` above it, as telemanom does).
    As telemanom's pruning, epsilon is raised to at least ``1 + prune`` times the largest
    ring value below it. The score maps the smoothed input so that ``epsilon`` scores
    exactly ``level`` (linearly in the excess over the ring mean: ``level * (x - mean) /
    (epsilon - mean)``, clipped to [0, 1]).
    State row: ``[count, smoothed, ring[window]]``; memory is ``window + 2`` floats.
    Cost per reading is ``O(window * len(z_grid))``. Like telemanom it always finds the most
    separated points of its window: on pure noise it raises a warning every ~1,000 readings.
    """

    def __init__(
        self,
        window: int = 100,
        smoothing: float = 0.3,
        level: float = 0.7,
        z_grid: tuple[float, ...] = tuple(np.arange(2.5, 12.5, 0.5)),
        prune: float = 0.13,
        min_std: float = 1e-9,
        rel_std: float = 0.01,
    ) -> None:
        self.window = window
        self.prune = prune
        self.smoothing = smoothing
        self.level = level
        self.z_grid = np.asarray(z_grid, dtype=np.float64)
        self.min_std = min_std
        self.rel_std = rel_std
        self.state_size = window + 2
        self.baseline_columns: tuple[int, ...] = ()

    def init_state(self, n: int) -> FloatArray:
        return np.zeros((n, self.state_size), dtype=np.float64)

    def _smooth(self, x: FloatArray, state: FloatArray) -> FloatArray:
        a = self.smoothing
        out: FloatArray = np.where(state[:, 0] > 0, (1.0 - a) * state[:, 1] + a * x, x)
        return out

    def _epsilon(self, state: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(mean of the ring, epsilon) per engine, from the readings seen so far."""
        n_seen = np.minimum(state[:, 0], self.window)
        ring = state[:, 2:]
        valid = np.arange(self.window)[None, :] < n_seen[:, None]
        cnt = np.maximum(valid.sum(axis=1), 1)
        mean = np.where(valid, ring, 0.0).sum(axis=1) / cnt
        var = np.where(valid, (ring - mean[:, None]) ** 2, 0.0).sum(axis=1) / cnt
        std = _std(mean, var, self.min_std, self.rel_std)
        eps_all = mean[:, None] + self.z_grid[None, :] * std[:, None]  # (n, Z)
        above = valid[:, :, None] & (ring[:, :, None] > eps_all[:, None, :])  # (n, W, Z)
        below = valid[:, :, None] & ~above
        nb = np.maximum(below.sum(axis=1), 1)
        mean_b = np.where(below, ring[:, :, None], 0.0).sum(axis=1) / nb
        var_b = np.where(below, (ring[:, :, None] - mean_b[:, None, :]) ** 2, 0.0).sum(axis=1) / nb
        n_above = above.sum(axis=1)
        # Ring order does not matter for counts; sequences need time order: roll to oldest first.
        start = (state[:, 0] % self.window).astype(np.int64)
        order = (np.arange(self.window)[None, :] + start[:, None]) % self.window
        ordered = np.take_along_axis(above, order[:, :, None], axis=1)
        starts = ordered[:, 0, :].astype(np.int64) + (ordered[:, 1:, :] & ~ordered[:, :-1, :]).sum(
            axis=1
        )
        gain = (mean[:, None] - mean_b) / np.maximum(np.abs(mean[:, None]), 1e-12) + (
            std[:, None] - np.sqrt(var_b)
        ) / std[:, None]
        crit = np.where(n_above > 0, gain / np.maximum(starts**2 + n_above, 1), -np.inf)
        best = np.argmax(crit, axis=1)
        # No z separates anything: fall back to the largest z (a conservative threshold).
        best = np.where(np.isfinite(crit.max(axis=1)), best, len(self.z_grid) - 1)
        eps = np.take_along_axis(eps_all, best[:, None], axis=1)[:, 0]
        # telemanom's pruning, simplified: an exceedance counts only if it is more than
        # ``prune`` above the largest value the threshold calls normal.
        max_below = np.where(valid & (ring <= eps[:, None]), ring, -np.inf).max(axis=1)
        eps = np.maximum(eps, np.where(np.isfinite(max_below), max_below * (1 + self.prune), eps))
        return mean, eps

    def score_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        mean, eps = self._epsilon(state)
        return self._score(state, self._smooth(x, state), mean, eps)

    def _score(
        self, state: FloatArray, s: FloatArray, mean: FloatArray, eps: FloatArray
    ) -> FloatArray:
        ratio = (s - mean) / np.maximum(eps - mean, 1e-300)
        score = clip01(self.level * ratio)
        out: FloatArray = np.where(state[:, 0] >= 2, score, 0.0)
        return out

    def learn_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        return self._learn(state, self._smooth(x, state))

    def _learn(self, state: FloatArray, s: FloatArray) -> FloatArray:
        new = state.copy()
        pos = (state[:, 0] % self.window).astype(np.int64)
        new[np.arange(len(s)), 2 + pos] = s
        new[:, 0] = state[:, 0] + 1.0
        new[:, 1] = s
        return new

    def _threshold(self, mean: FloatArray, eps: FloatArray, level: float) -> FloatArray:
        out: FloatArray = mean + (eps - mean) * (level / self.level)
        return out

    def explain_many(
        self, x: FloatArray, state: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray]:
        mean, eps = self._epsilon(state)
        return self._smooth(x, state), self._threshold(mean, eps, level)

    def step_many(
        self, x: FloatArray, state: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        s = self._smooth(x, state)
        mean, eps = self._epsilon(state)
        score = self._score(state, s, mean, eps)
        return score, s, self._threshold(mean, eps, level), self._learn(state, s)


class Thresholded:
    """A threshold around a scorer: flags inputs whose score reaches ``level``."""

    def __init__(self, scorer: Scorer, level: float) -> None:
        self.scorer = scorer
        self.level = level

    def flag_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        """1.0 where the scorer's score of ``x`` reaches the level, else 0.0 (no learning)."""
        flags: FloatArray = (self.scorer.score_many(x, state) >= self.level).astype(np.float64)
        return flags

    def learn_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        return self.scorer.learn_many(x, state)
