"""Anomaly scorers: per-engine error stream -> score in [0, 1], higher = more anomalous.

The contract follows River's anomaly detectors (``score_one`` then ``learn_one``), vectorised
over engines and with the state held outside the scorer so that it can be checkpointed:

* ``init_state(n)`` returns ``(n, state_size)`` float64 rows for ``n`` new engines;
* ``score_many(x, state)`` scores one reading per engine *without* learning from it;
* ``learn_many(x, state)`` returns new state rows that have learned from those readings;
* ``error_at(score, state)`` is the input value that would score exactly ``score`` now, so a
  threshold on the score can be shown in the units of the error.

A scorer never decides whether something is an anomaly: a threshold is a wrapper around a
scorer (see :class:`Thresholded`). Memory per engine is exactly ``state_size`` floats and
never grows.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from service.scoring.stats import (
    FloatArray,
    ewma_rate,
    ewma_update,
    log_normal_tail,
    normal_isf,
    score_to_log_tail,
    tail_to_score,
)


class Scorer(Protocol):
    """What every scorer provides (checked by the contract tests)."""

    @property
    def state_size(self) -> int: ...

    def init_state(self, n: int) -> FloatArray: ...

    def score_many(self, x: FloatArray, state: FloatArray) -> FloatArray: ...

    def learn_many(self, x: FloatArray, state: FloatArray) -> FloatArray: ...

    def error_at(self, score: float, state: FloatArray) -> FloatArray: ...


class GaussianTail:
    """Tail probability of ``x`` under an EWMA Gaussian fit of the engine's past inputs.

    State row: ``[count, mean, var]``. The variance has a floor (``min_std`` absolute plus
    ``rel_std`` times the mean) so that a perfectly flat history does not turn the first
    tiny wobble into a certain anomaly.
    """

    state_size = 3

    def __init__(
        self, decay: float = 0.01, min_count: int = 2, min_std: float = 1e-6, rel_std: float = 0.01
    ) -> None:
        self.decay = decay
        self.min_count = min_count
        self.min_std = min_std
        self.rel_std = rel_std

    def init_state(self, n: int) -> FloatArray:
        return np.zeros((n, self.state_size), dtype=np.float64)

    def _std(self, state: FloatArray) -> FloatArray:
        mean, var = state[:, 1], state[:, 2]
        floor = self.min_std + self.rel_std * np.abs(mean)
        out: FloatArray = np.sqrt(np.maximum(var, 0.0) + floor * floor)
        return out

    def score_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        z = (x - state[:, 1]) / self._std(state)
        score = tail_to_score(log_normal_tail(z))
        out: FloatArray = np.where(state[:, 0] >= self.min_count, score, 0.0)
        return out

    def learn_many(self, x: FloatArray, state: FloatArray) -> FloatArray:
        count = state[:, 0]
        mean, var = ewma_update(x, state[:, 1], state[:, 2], ewma_rate(self.decay, count))
        return np.stack([count + 1.0, mean, var], axis=1)

    def error_at(self, score: float, state: FloatArray) -> FloatArray:
        z = normal_isf(score_to_log_tail(score))
        out: FloatArray = state[:, 1] + z * self._std(state)
        return out


class Thresholded:
    """A threshold around a scorer: flags readings whose score reaches ``level``."""

    def __init__(self, scorer: Scorer, level: float) -> None:
        self.scorer = scorer
        self.level = level

    def flag_many(self, x: FloatArray, state: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Return (flags as 0/1, threshold in input units) for one reading per engine."""
        score = self.scorer.score_many(x, state)
        flags: FloatArray = (score >= self.level).astype(np.float64)
        return flags, self.scorer.error_at(self.level, state)
