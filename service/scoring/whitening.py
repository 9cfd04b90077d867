"""Joint scoring of an engine's channels: its residual vector against its own residual
distribution, and which channels drive the result.

With ``scoring.channel_reduce = "joint"`` each engine keeps an EWMA mean and covariance of
its residual vectors (learned while it commissions, then from readings judged normal only,
like the error baseline). A reading's residual ``r`` is whitened against them: with
``w = r - mean`` and ``S`` the covariance shrunk towards its diagonal, the squared
Mahalanobis distance is ``d2 = w' S^-1 w`` and the error handed to the scorer is
``sqrt(d2 / C)``: the RMS of the whitened residual, so 1 is a typical reading at any number
of channels. Correlated channels then count once, not once per channel, and a channel
that is usually quiet weighs more when it moves than one that always wobbles.

Attribution: ``d2`` splits exactly into per-channel terms ``w_i (S^-1 w)_i``. The score
comes from the smoothed error (the scorer's EWMA with rate ``scoring.smoothing``), so the
terms are smoothed the same way, and a channel's share is its smoothed term (negative
terms, which only arise between correlated channels, count 0) over their sum: the channels
behind the score, not behind one noisy reading. For the other reductions the share is the
channel's part of the reading's sum of squared residuals.

Memory per engine: ``1 + 2C + C*C`` floats (81 at 8 channels, 225 at 14). Cost: one batched
``C x C`` solve per batch (about 0.6 us per engine at 8 channels on the 2-core box).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from service.scoring.stats import FloatArray, const

BoolArray = npt.NDArray[np.bool_]

_C_ZERO, _C_ONE = const(0.0), const(1.0)
#: Variance floor relative to the channels' average variance: a channel that never moved
#: during commissioning must not make its first tiny wobble a certain anomaly.
REL_VAR_FLOOR = 1e-3
#: Absolute variance floor (scaled units), for engines whose residuals are all ~0.
ABS_VAR_FLOOR = 1e-12


def shares(terms: FloatArray) -> FloatArray:
    """Per-row shares of non-negative ``terms`` (n, C): rows sum to 1; a row of zeros gives
    equal shares (nothing stands out)."""
    pos = np.maximum(terms, _C_ZERO)
    total = pos.sum(axis=1, keepdims=True)
    n_ch = terms.shape[1]
    out: FloatArray = np.where(total > _C_ZERO, pos / np.where(total > 0, total, 1.0),
                               1.0 / n_ch)
    return out


class ResidualWhitening:
    """Per-engine residual mean and shrinkage covariance, and the smoothed per-channel terms
    of the distance; state row ``[learned, mean (C), covariance (C*C, row-major), terms
    (C)]``.

    Called by :class:`service.scoring.engine.EngineScoring` once per reading: ``whiten``
    before the reading is learned, ``learn`` after the scorer judged it.
    """

    def __init__(self, n_channels: int, shrinkage: float, smoothing: float = 1.0) -> None:
        if n_channels < 1:
            raise ValueError("need at least one channel")
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError("shrinkage must be in [0, 1]")
        self.n_channels = n_channels
        self.shrinkage = shrinkage
        self.smoothing = smoothing
        self._t0 = 1 + n_channels + n_channels * n_channels  # the smoothed terms
        self.state_size = self._t0 + n_channels
        self._eye = np.eye(n_channels, dtype=np.float64)

    def init_state(self, n: int) -> FloatArray:
        return np.zeros((n, self.state_size), dtype=np.float64)

    def _parts(self, state: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        c = self.n_channels
        count = state[:, 0]
        mean = state[:, 1 : 1 + c]
        cov = state[:, 1 + c : self._t0].reshape(-1, c, c)
        return count, mean, cov

    def covariance(self, state: FloatArray) -> FloatArray:
        """The shrunk, floored covariance each engine's residuals are whitened with,
        ``(n, C, C)``: shrinkage towards the diagonal is at least ``C / (learned + 1)``, so an
        engine that has seen few readings leans on the channels' own variances."""
        count, _, cov = self._parts(state)
        c = self.n_channels
        lam = np.minimum(np.maximum(self.shrinkage, c / (count + _C_ONE)), _C_ONE)
        diag = np.diagonal(cov, axis1=1, axis2=2)
        floor = REL_VAR_FLOOR * np.maximum(diag, 0.0).mean(axis=1) + ABS_VAR_FLOOR
        out: FloatArray = (1.0 - lam)[:, None, None] * cov
        out += (lam[:, None] * diag + floor[:, None])[:, :, None] * self._eye
        return out

    def whiten(self, residuals: FloatArray, state: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``(error, terms)`` of one residual vector per engine: ``sqrt(d2 / C)`` (0 for an
        engine that has learned fewer than two readings: no spread exists yet) and each
        channel's term of ``d2``, ``(n, C)`` (its squared residual while not ready).
        Residuals must be finite."""
        count, mean, _ = self._parts(state)
        w = residuals - mean
        solved = np.linalg.solve(self.covariance(state), w[:, :, None])[:, :, 0]
        terms = w * solved
        d2 = np.maximum(terms.sum(axis=1), _C_ZERO)
        ready = count >= 2.0
        error: FloatArray = np.where(ready, np.sqrt(d2 / self.n_channels), 0.0)
        out: FloatArray = np.where(ready[:, None], terms, np.square(residuals))
        return error, out

    def shares(self, state: FloatArray) -> FloatArray:
        """Each channel's share of the smoothed distance, ``(n, C)``, as of the last
        :meth:`learn` (equal shares before any reading)."""
        return shares(state[:, self._t0 :])

    def learn(self, residuals: FloatArray, terms: FloatArray, state: FloatArray,
              rate: FloatArray, learn: BoolArray) -> FloatArray:
        """New state rows after one reading per engine: the smoothed ``terms`` (from
        :meth:`whiten`) always move on; the residual is learned where ``learn`` (bool), at
        per-reading EWMA ``rate`` (n,): ``mean += rate*diff`` and ``cov = (1 - rate) * (cov +
        rate * diff diff')``."""
        count, mean, cov = self._parts(state)
        r = np.where(learn, rate, 0.0)
        diff = residuals - mean
        new = np.empty_like(state)
        c = self.n_channels
        new[:, 0] = count + learn
        new[:, 1 : 1 + c] = mean + r[:, None] * diff
        outer = diff[:, :, None] * diff[:, None, :]
        new_cov = (1.0 - r)[:, None, None] * (cov + r[:, None, None] * outer)
        new[:, 1 + c : self._t0] = new_cov.reshape(len(state), -1)
        a = self.smoothing
        old = state[:, self._t0 :]
        first = (count == 0.0)[:, None]  # the first reading sets them
        new[:, self._t0 :] = np.where(first, terms, (1.0 - a) * old + a * terms)
        return new
