"""Anomaly scorers: per-engine error stream -> score >= 0, higher = more anomalous.

The contract follows River's anomaly detectors (``score_one`` then ``learn_one``), vectorised
over engines and with the state held outside the scorer so that it can be checkpointed:

* ``init_state(n)`` returns ``(n, state_size)`` float64 rows for ``n`` new engines;
* ``score_many(x, state, dt)`` scores one input per engine *without* learning from it;
  ``dt`` is each engine's sampling interval in seconds (0: not known yet), which turns a
  reading's tail probability into hours between such readings (``stats.tail_to_score``)
  and the scorer's memories, set as time spans, into per-reading rates;
* ``learn_many(x, state, dt, learn, held)`` returns new state rows that have learned from
  those inputs where ``learn`` is true; the others are held back until the anomalous
  episode the engine is in (``held``) is over (see :class:`Baseline`);
* ``explain_many(x, state, dt, level)`` returns the statistic the scorer compared (for example
  the smoothed error) and the value of that statistic that would score exactly ``level``,
  so a threshold on the score can be shown in the units of the error;
* ``step_many(x, state, dt, level, learn_below, held)`` does all of it at once, as the
  service calls it for every reading: ``(score, value, threshold, learned)`` with ``learn =
  score < learn_below``, bit for bit what the separate calls return, with the shared
  intermediates (smoothed input, standard deviation, ...) computed once.

Scores have no ceiling (``stats.tail_to_score``).
A scorer never decides whether something is an anomaly: a threshold is a wrapper around a
scorer (see :class:`Thresholded`), and which readings are learned is the caller's choice
(``service.scoring.engine`` learns only from readings it judges normal). A reading that is
not learned leaves the long-run baseline exactly as it was; short-term averages still follow
every reading. Memory per engine is exactly ``state_size`` floats, fixed at construction;
it never grows with the number of readings.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.scoring.stats import (
    FloatArray,
    clip0,
    const,
    ewma_step,
    log_hours,
    log_normal_tail,
    normal_isf_many,
    score_to_log_tail,
    span_rate,
    tail_to_score,
)

BoolArray = npt.NDArray[np.bool_]


class Scorer(Protocol):
    """What every scorer provides (checked by the contract tests)."""

    @property
    def state_size(self) -> int: ...

    def init_state(self, n: int) -> FloatArray: ...

    def score_many(self, x: FloatArray, state: FloatArray, dt: FloatArray) -> FloatArray: ...

    def learn_many(
        self, x: FloatArray, state: FloatArray, dt: FloatArray, learn: BoolArray,
        held: BoolArray,
    ) -> FloatArray: ...

    def explain_many(
        self, x: FloatArray, state: FloatArray, dt: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray]: ...

    def step_many(
        self,
        x: FloatArray,
        state: FloatArray,
        dt: FloatArray,
        level: float,
        learn_below: FloatArray,
        held: BoolArray,
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


_C_ZERO, _C_ONE, _C_TWO = const(0.0), const(1.0), const(2.0)


def _tail_score(diff: FloatArray, std: FloatArray, log_h: FloatArray) -> FloatArray:
    """``tail_to_score(log_normal_tail(diff / std), log_h)`` (a new array)."""
    return tail_to_score(log_normal_tail(diff / std), log_h)


def _threshold(mean: FloatArray, std: FloatArray, level: float, log_h: FloatArray) -> FloatArray:
    """The input at which a Gaussian tail score reaches ``level``."""
    out: FloatArray = mean + normal_isf_many(score_to_log_tail(level, log_h)) * std
    return out


def learned_rate(span_s: FloatArray | float, dt: FloatArray, count: FloatArray) -> FloatArray:
    """Per-engine EWMA rate of a baseline: ``1 - exp(-dt/span)`` (a memory of ``span_s``
    seconds), but at least ``1/(count+1)`` so that the first readings form an exact running
    mean instead of being biased towards the zero initialisation. This bounds how fast a
    baseline can adapt: a reading moves it by at most that fraction of its distance."""
    out: FloatArray = np.maximum(span_rate(span_s, dt), _C_ONE / (count + _C_ONE))
    return out


class Baseline:
    """An EWMA mean and variance with a ledger of held-back inputs, in four columns of a
    scorer's state block, ``[mean, var, held_mean, held_m2]`` from ``col``, plus the ledger's
    counts (all its readings, and those judged anomalous) in the scorer's shared ``n_col``
    and ``n_col + 1``.

    Outside an anomalous episode (see ``service.scoring.engine``) an input judged normal
    moves the mean and variance at once; one judged anomalous opens a ledger (Welford running
    mean and sum of squares) and leaves the baseline as it was. Inside an episode every
    input goes to the ledger, the quiet ones too: a fault's milder readings must not creep
    into the baseline. When the episode is over, a ledger with at most ``episode_readings``
    anomalous readings (a blip: a spike, a short burst, and the quiet after it) is merged in
    as if its readings had been learned, so blips that keep coming become part of normal
    variability; one with more (a fault, even one that was repaired) is dropped, and a fault
    that persists teaches the baseline nothing for as long as it lasts.
    """

    size = 4  #: columns of its own (the ledger's count is the scorer's)

    def __init__(self, col: int, n_col: int, episode_readings: float) -> None:
        self.col = col
        self.n_col = n_col
        self.cap = const(episode_readings)

    def merged(self, rows: FloatArray, rate: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Mean and variance of ``rows`` (state rows with a ledger) after merging a ledger of
        at most ``cap`` anomalous readings as a block at per-reading ``rate`` (a mixture of
        the baseline and the ledger's distribution with weight ``1 - (1 - rate)^n``); a
        ledger with more is dropped (weight 0)."""
        c = self.col
        n = rows[:, self.n_col]
        w = -np.expm1(n * np.log1p(-np.minimum(rate, _C_ALMOST_ONE)))
        w = np.where(rows[:, self.n_col + 1] <= self.cap, w, _C_ZERO)
        held_var = rows[:, c + 3] / np.maximum(n, _C_ONE)
        diff = rows[:, c + 2] - rows[:, c]
        mean = rows[:, c] + w * diff
        var = (_C_ONE - w) * (rows[:, c + 1] + w * diff * diff) + w * held_var
        return mean, var


_C_ALMOST_ONE = const(1.0 - 1e-9)


def _learn_baselines(
    state: FloatArray,
    new: FloatArray,
    baselines: tuple[tuple[Baseline, FloatArray, FloatArray], ...],
    count_col: int,
    dt: FloatArray,
    learn: BoolArray,
    held: BoolArray,
) -> None:
    """Write the learned count, the ledger count and every baseline's columns of ``new``
    after one input per engine. ``baselines`` holds ``(baseline, its input, its memory in
    seconds)``; they share the learned count and the ledger count.

    Outside an anomalous episode (``held`` false) a ledger the last one left is merged first
    (or dropped, see :class:`Baseline`); then the input is learned if ``learn`` (it was
    judged normal) and otherwise starts a ledger. Inside one the input goes to the ledger.
    Rows in the usual state (no ledger, input learned) cost one EWMA step; the others are
    handled on their own subset.
    """
    n_col = baselines[0][0].n_col
    cap = baselines[0][0].cap
    count = state[:, count_col]
    n_held = state[:, n_col]
    any_held = np.count_nonzero(held) > 0
    now = learn & ~held if any_held else learn
    pending = n_held > _C_ZERO
    merge = pending & ~held if np.count_nonzero(pending) else pending
    merge_idx = np.flatnonzero(merge)
    hold_idx = np.flatnonzero(~now)
    means, variances = [], []
    for b, _, _ in baselines:
        means.append(state[:, b.col])
        variances.append(state[:, b.col + 1])
    if merge_idx.size:
        rows = state[merge_idx]
        count = count.copy()
        for k, (b, _, span) in enumerate(baselines):
            rate = learned_rate(span, dt[merge_idx], rows[:, count_col])
            m, v = b.merged(rows, rate)
            means[k] = means[k].copy()
            variances[k] = variances[k].copy()
            means[k][merge_idx] = m
            variances[k][merge_idx] = v
        count[merge_idx] += np.where(rows[:, n_col + 1] <= cap, rows[:, n_col], _C_ZERO)
    for k, (b, x, span) in enumerate(baselines):
        rate = learned_rate(span, dt, count)
        if hold_idx.size:
            rate[hold_idx] = 0.0
        c = b.col
        ewma_step(x - means[k], means[k], variances[k], rate, new[:, c], new[:, c + 1])
        # the ledger: kept, emptied after a merge, or extended by a held-back input
        new[:, c + 2] = state[:, c + 2]
        new[:, c + 3] = state[:, c + 3]
        if merge_idx.size:
            new[merge_idx, c + 2] = 0.0
            new[merge_idx, c + 3] = 0.0
        if hold_idx.size:
            n_old = np.where(merge[hold_idx], 0.0, n_held[hold_idx])
            mean_old = new[hold_idx, c + 2]
            xi = x[hold_idx]
            delta = xi - mean_old
            mean = mean_old + delta / (n_old + 1.0)
            new[hold_idx, c + 2] = mean
            new[hold_idx, c + 3] = new[hold_idx, c + 3] + delta * (xi - mean)
    np.add(count, now, out=new[:, count_col])
    new[:, n_col] = n_held
    new[:, n_col + 1] = state[:, n_col + 1]
    if merge_idx.size:
        new[merge_idx, n_col] = 0.0
        new[merge_idx, n_col + 1] = 0.0
    if hold_idx.size:
        new[hold_idx, n_col] += 1.0
        new[hold_idx, n_col + 1] += ~learn[hold_idx]


class GaussianTail:
    """Tail probability of the input under an EWMA Gaussian fit of the engine's past inputs.

    The simplest scorer: no smoothing of its own. State row:
    ``[learned, mean, var, held_mean, held_m2, held_n, held_anomalous]`` (see
    :class:`Baseline`).
    """

    state_size = 7

    def __init__(
        self,
        span_s: float = 86_400.0,
        episode_readings: float = 10.0,
        min_std: float = 1e-9,
        rel_std: float = 0.01,
    ) -> None:
        self.span_s = const(span_s)
        self.min_std = min_std
        self.rel_std = rel_std
        self.base = Baseline(1, 5, episode_readings)

    def init_state(self, n: int) -> FloatArray:
        return np.zeros((n, self.state_size), dtype=np.float64)

    def score_many(self, x: FloatArray, state: FloatArray, dt: FloatArray) -> FloatArray:
        std = _std(state[:, 1], state[:, 2], self.min_std, self.rel_std)
        return self._score(state, x - state[:, 1], std, log_hours(dt))

    def _score(
        self, state: FloatArray, diff: FloatArray, std: FloatArray, log_h: FloatArray
    ) -> FloatArray:
        out: FloatArray = np.where(state[:, 0] >= _C_TWO, _tail_score(diff, std, log_h), 0.0)
        return out

    def learn_many(
        self, x: FloatArray, state: FloatArray, dt: FloatArray, learn: BoolArray,
        held: BoolArray,
    ) -> FloatArray:
        new = np.empty((len(state), self.state_size), dtype=np.float64)
        _learn_baselines(state, new, ((self.base, x, self.span_s),), 0, dt, learn, held)
        return new

    def explain_many(
        self, x: FloatArray, state: FloatArray, dt: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray]:
        std = _std(state[:, 1], state[:, 2], self.min_std, self.rel_std)
        return x, _threshold(state[:, 1], std, level, log_hours(dt))

    def step_many(
        self,
        x: FloatArray,
        state: FloatArray,
        dt: FloatArray,
        level: float,
        learn_below: FloatArray,
        held: BoolArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        std = _std(state[:, 1], state[:, 2], self.min_std, self.rel_std)
        log_h = log_hours(dt)
        threshold = _threshold(state[:, 1], std, level, log_h)
        score = self._score(state, x - state[:, 1], std, log_h)
        return score, x, threshold, self.learn_many(x, state, dt, score < learn_below, held)


class AnomalyLikelihood:
    """HTM's anomaly likelihood (Ahmad et al. 2017) in constant memory per engine.

    The short-term average of the input (EWMA with rate ``short`` per reading, HTM's
    10-reading moving average) is compared with the long-run distribution of that average
    (EWMA mean and variance with a memory of ``span_s`` seconds, HTM's 8,640-reading
    window); the score is the log-scaled Gaussian tail probability of the current average.
    The short average follows every reading; the long-run distribution only what is learned
    (see :class:`Baseline`). Scores are 0 until two readings have been learned.
    State row: ``[learned, short_avg, long_mean, long_var, held_mean, held_m2, held_n,
    held_anomalous]``.
    """

    state_size = 8

    def __init__(
        self,
        short: float = 0.3,
        span_s: float = 86_400.0,
        episode_readings: float = 10.0,
        min_std: float = 1e-9,
        rel_std: float = 0.05,
    ) -> None:
        self.short = short
        self.span_s = span_s
        self.min_std = min_std
        self.rel_std = rel_std
        self.base = Baseline(2, 6, episode_readings)
        # the same numbers as 0-d arrays, cheaper operands (see ``stats.const``)
        self._c = {
            k: const(v)
            for k, v in {
                "keep": 1.0 - short, "short": short, "span": span_s, "min_std": min_std,
                "rel_std": rel_std,
            }.items()
        }  # fmt: skip

    def init_state(self, n: int) -> FloatArray:
        return np.zeros((n, self.state_size), dtype=np.float64)

    def _avg(self, x: FloatArray, state: FloatArray) -> FloatArray:
        c = self._c
        blend = c["keep"] * state[:, 1]
        blend += c["short"] * x  # (1 - short) * avg + short * x
        out: FloatArray = np.where((state[:, 0] > _C_ZERO) | (state[:, 6] > _C_ZERO), blend, x)
        return out

    def _ready(self, state: FloatArray) -> BoolArray:
        """Engines whose baseline has learned two readings (a spread exists)."""
        out: BoolArray = state[:, 0] >= _C_TWO
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

    def score_many(self, x: FloatArray, state: FloatArray, dt: FloatArray) -> FloatArray:
        _, std, diff = self._moments(x, state)
        out: FloatArray = np.where(
            self._ready(state), _tail_score(diff, std, log_hours(dt)), 0.0
        )
        return out

    def learn_many(
        self, x: FloatArray, state: FloatArray, dt: FloatArray, learn: BoolArray,
        held: BoolArray,
    ) -> FloatArray:
        return self._learn(state, self._avg(x, state), x, dt, learn, held)

    def _learn(
        self, state: FloatArray, avg: FloatArray, x: FloatArray, dt: FloatArray,
        learn: BoolArray, held: BoolArray,
    ) -> FloatArray:
        new = np.empty((len(state), self.state_size), dtype=np.float64)
        _learn_baselines(state, new, ((self.base, avg, self._c["span"]),), 0, dt, learn, held)
        new[:, 1] = avg
        return new

    def explain_many(
        self, x: FloatArray, state: FloatArray, dt: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray]:
        threshold = _threshold(state[:, 2], self._spread(state), level, log_hours(dt))
        return self._avg(x, state), threshold

    def step_many(
        self,
        x: FloatArray,
        state: FloatArray,
        dt: FloatArray,
        level: float,
        learn_below: FloatArray,
        held: BoolArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        avg, std, diff = self._moments(x, state)
        log_h = log_hours(dt)
        score: FloatArray = np.where(self._ready(state), _tail_score(diff, std, log_h), 0.0)
        threshold = _threshold(state[:, 2], std, level, log_h)
        new = self._learn(state, avg, x, dt, score < learn_below, held)
        return score, avg, threshold, new


class LikelihoodWithSpikes(AnomalyLikelihood):
    """The anomaly likelihood, plus a check of every single error against the raw errors.

    Heavy smoothing makes the likelihood see sustained departures but blunts one-reading
    spikes. This scorer also fits an EWMA Gaussian (memory ``spike_span_s`` seconds) to the
    raw, unsmoothed errors and takes the larger of the two scores. The spike part is
    log-scaled with a much deeper floor (``10**-spike_floor`` scores 1.0 instead of
    ``1e-10``), so only an error far outside anything recent counts: with the default 60, a
    1-in-1,000 raw error scores 0.05 and a 12-sigma one about 0.5. State row: the
    likelihood's, then ``[raw_mean, raw_var, raw_held_mean, raw_held_m2]``. ``explain_many``
    describes the likelihood part (the smoothed error and its threshold).
    """

    state_size = 12

    def __init__(
        self,
        short: float = 0.3,
        span_s: float = 86_400.0,
        spike_floor: float = 60.0,
        spike_span_s: float = 86_400.0,
        episode_readings: float = 10.0,
        spike_rel_std: float = 0.01,
    ) -> None:
        super().__init__(short, span_s, episode_readings)
        if spike_floor <= 0:
            raise ValueError("need spike_floor > 0")
        self.spike_log_floor = spike_floor * float(np.log(0.1))
        self.spike_span_s = spike_span_s
        self.spike_rel_std = spike_rel_std
        self.raw = Baseline(8, 6, episode_readings)
        self._c.update(
            spike_log_floor=const(self.spike_log_floor),
            spike_span=const(spike_span_s),
            spike_rel_std=const(spike_rel_std),
        )

    def score_many(self, x: FloatArray, state: FloatArray, dt: FloatArray) -> FloatArray:
        smoothed = super().score_many(x, state, dt)
        log_tail = log_normal_tail((x - state[:, 8]) / self._raw_std(state))
        return self._max_spike(smoothed, self._ready(state), log_tail, log_hours(dt))

    def _raw_std(self, state: FloatArray) -> FloatArray:
        return _std(state[:, 8], state[:, 9], self._c["min_std"], self._c["spike_rel_std"])

    def _max_spike(
        self, smoothed: FloatArray, ready: BoolArray, log_tail: FloatArray, log_h: FloatArray
    ) -> FloatArray:
        """The larger of the smoothed score and the spike score (from the raw error's
        ``log_tail``, counted in hours like the smoothed one)."""
        spike = np.where(ready, clip0((log_tail - log_h) / self._c["spike_log_floor"]), 0.0)
        out: FloatArray = np.maximum(smoothed, spike, out=spike)
        return out

    def _learn(
        self, state: FloatArray, avg: FloatArray, x: FloatArray, dt: FloatArray,
        learn: BoolArray, held: BoolArray,
    ) -> FloatArray:
        new = np.empty((len(state), self.state_size), dtype=np.float64)
        # The raw baseline has its own memory; same gate, same ledger.
        _learn_baselines(
            state, new,
            ((self.base, avg, self._c["span"]), (self.raw, x, self._c["spike_span"])),
            0, dt, learn, held,
        )
        new[:, 1] = avg
        return new

    def step_many(
        self,
        x: FloatArray,
        state: FloatArray,
        dt: FloatArray,
        level: float,
        learn_below: FloatArray,
        held: BoolArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        avg, std, diff = self._moments(x, state)
        raw_diff = x - state[:, 8]
        # Both tails (smoothed and raw error) in one call: at fleet batch sizes the cost is
        # per call, not per element.
        m = len(x)
        log_tail = log_normal_tail(np.concatenate((diff / std, raw_diff / self._raw_std(state))))
        ready = self._ready(state)
        log_h = log_hours(dt)
        smoothed: FloatArray = np.where(ready, tail_to_score(log_tail[:m], log_h), 0.0)
        score = self._max_spike(smoothed, ready, log_tail[m:], log_h)
        threshold = _threshold(state[:, 2], std, level, log_h)
        new = self._learn(state, avg, x, dt, score < learn_below, held)
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

    def score_many(self, x: FloatArray, state: FloatArray, dt: FloatArray) -> FloatArray:
        mean, eps = self._epsilon(state)
        return self._score(state, self._smooth(x, state), mean, eps)

    def _score(
        self, state: FloatArray, s: FloatArray, mean: FloatArray, eps: FloatArray
    ) -> FloatArray:
        ratio = (s - mean) / np.maximum(eps - mean, 1e-300)
        score = clip0(self.level * ratio)
        out: FloatArray = np.where(state[:, 0] >= 2, score, 0.0)
        return out

    def learn_many(
        self, x: FloatArray, state: FloatArray, dt: FloatArray, learn: BoolArray,
        held: BoolArray,
    ) -> FloatArray:
        return self._learn(state, self._smooth(x, state), learn & ~held)

    def _learn(self, state: FloatArray, s: FloatArray, learn: BoolArray) -> FloatArray:
        """The smoothed input always moves on; the ring takes it only where ``learn``."""
        new = state.copy()
        rows = np.flatnonzero(learn)
        pos = (state[rows, 0] % self.window).astype(np.int64)
        new[rows, 2 + pos] = s[rows]
        new[rows, 0] = state[rows, 0] + 1.0
        new[:, 1] = s
        return new

    def _threshold(self, mean: FloatArray, eps: FloatArray, level: float) -> FloatArray:
        out: FloatArray = mean + (eps - mean) * (level / self.level)
        return out

    def explain_many(
        self, x: FloatArray, state: FloatArray, dt: FloatArray, level: float
    ) -> tuple[FloatArray, FloatArray]:
        mean, eps = self._epsilon(state)
        return self._smooth(x, state), self._threshold(mean, eps, level)

    def step_many(
        self,
        x: FloatArray,
        state: FloatArray,
        dt: FloatArray,
        level: float,
        learn_below: FloatArray,
        held: BoolArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        s = self._smooth(x, state)
        mean, eps = self._epsilon(state)
        score = self._score(state, s, mean, eps)
        learned = self._learn(state, s, (score < learn_below) & ~held)
        return score, s, self._threshold(mean, eps, level), learned


class Thresholded:
    """A threshold around a scorer: flags inputs whose score reaches ``level``."""

    def __init__(self, scorer: Scorer, level: float) -> None:
        self.scorer = scorer
        self.level = level

    def flag_many(self, x: FloatArray, state: FloatArray, dt: FloatArray) -> FloatArray:
        """1.0 where the scorer's score of ``x`` reaches the level, else 0.0 (no learning)."""
        flags: FloatArray = (self.scorer.score_many(x, state, dt) >= self.level).astype(
            np.float64
        )
        return flags

    def learn_many(
        self, x: FloatArray, state: FloatArray, dt: FloatArray, learn: BoolArray,
        held: BoolArray,
    ) -> FloatArray:
        return self.scorer.learn_many(x, state, dt, learn, held)
