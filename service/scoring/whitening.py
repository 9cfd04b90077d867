"""Joint scoring of an engine's channels: its residual vector against its own residual
distribution, and which channels drive the result.

With ``scoring.channel_reduce = "joint"`` each engine fits the mean and covariance of its
residual vectors while it commissions (its first ``commission_s``, or an operator's
baseline window) and keeps them until it is re-baselined: learning readings judged normal
afterwards, as the error baseline does, let a slow departure drift into the mean (C-MAPSS's
degrading engines went undetected). A reading's residual ``r`` is whitened against them: with
``w = r - mean`` and ``S`` the covariance shrunk towards its diagonal, the squared
Mahalanobis distance is ``d2 = w' S^-1 w`` and the error handed to the scorer is
``sqrt(d2 / C)``: the RMS of the whitened residual, so 1 is a typical reading at any number
of channels. Correlated channels then count once, not once per channel, and a channel
that is usually quiet weighs more when it moves than one that always wobbles.

Attribution: a channel's contribution is how much ``d2`` falls when that channel alone is
replaced by the value the others make most likely, ``(S^-1 w)_i^2 / (S^-1)_ii`` (the
reconstruction-based contribution of Alcala and Qin, 2009). It is never negative, and when
two channels that always move together part ways it names both (the split of ``d2`` into
``w_i (S^-1 w)_i`` would credit whichever is further from its mean and give the other a
negative term). The score comes from the smoothed error (the scorer's EWMA at
``scoring.smoothing``), so the contributions are smoothed the same way, and within an
anomalous episode (from its first reading at warning level) averaged over the episode's
readings; a channel's share is its contribution over their sum: the channels behind the
score and the disturbance, not behind one noisy reading. For the other reductions the share
is the channel's part of the reading's sum of squared residuals.

Memory per engine: ``2 + 2C + 2C*C`` floats (146 at 8 channels, 422 at 14): the covariance
and its shrunk inverse, kept so that scoring a reading is a matrix-vector product. Cost:
after commissioning, that product; while commissioning, the covariance's EWMA step and a
batched ``C x C`` inversion every :data:`REFRESH_EVERY` readings.
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
#: While an engine commissions its covariance learns every reading, and its inverse is
#: recomputed for the first readings (until it has :data:`EARLY_PER_CHANNEL` times the
#: channels), then every this many (a few readings more barely move an estimate from
#: dozens), and once more at the first reading after commissioning.
REFRESH_EVERY = 8
EARLY_PER_CHANNEL = 2


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
        c = n_channels
        self.n_channels = c
        self.shrinkage = shrinkage
        self.smoothing = smoothing
        self._cov = 1 + c  # the covariance, then its shrunk inverse, then the smoothed terms
        self._prec = self._cov + c * c
        self._t0 = self._prec + c * c
        self._ep = self._t0 + c  # readings of the current episode the terms average
        self.state_size = self._ep + 1
        self._eye = np.eye(c, dtype=np.float64)

    def init_state(self, n: int) -> FloatArray:
        return np.zeros((n, self.state_size), dtype=np.float64)

    def _parts(self, state: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        c = self.n_channels
        count = state[:, 0]
        mean = state[:, 1 : self._cov]
        cov = state[:, self._cov : self._prec].reshape(-1, c, c)
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
        channel's reconstruction-based contribution, ``(n, C)`` (its squared residual while
        not ready), with
        the inverse of :meth:`covariance` as of the last :meth:`learn` that learned.
        Residuals must be finite."""
        c = self.n_channels
        count, mean, _ = self._parts(state)
        w = residuals - mean
        prec = state[:, self._prec : self._t0].reshape(-1, c, c)
        pw = np.einsum("nij,nj->ni", prec, w)
        d2 = np.maximum(np.einsum("ni,ni->n", w, pw), _C_ZERO)
        # reconstruction-based contributions: (P w)_i^2 / P_ii
        terms = np.square(pw)
        terms /= np.maximum(np.diagonal(prec, axis1=1, axis2=2), 1e-300)
        ready = count >= 2.0
        error: FloatArray = np.where(ready, np.sqrt(d2 / c), 0.0)
        out: FloatArray = np.where(ready[:, None], terms, np.square(residuals))
        return error, out

    def shares(self, state: FloatArray) -> FloatArray:
        """Each channel's share of the smoothed distance, ``(n, C)``, as of the last
        :meth:`learn` (equal shares before any reading)."""
        return shares(state[:, self._t0 : self._ep])

    def learn(self, residuals: FloatArray, terms: FloatArray, state: FloatArray,
              rate: FloatArray, learn: BoolArray, episode: BoolArray,
              refresh: BoolArray | None = None) -> FloatArray:
        """New state rows after one reading per engine: the ``terms`` (from :meth:`whiten`)
        move the smoothed terms (EWMA at ``smoothing``), or, for engines in an anomalous
        episode (``episode``), their mean over the episode's readings so far: what drives
        the disturbance, not its last few readings. Where ``learn`` (bool) the residual is
        learned at per-reading EWMA ``rate`` (n,), ``mean += rate*diff`` and ``cov = (1 -
        rate) * (cov + rate * diff diff')``, and the inverse of the shrunk covariance is
        recomputed where ``refresh`` (default: wherever learned; one batched ``C x C``
        inversion over those rows only)."""
        new = state.copy()
        a = self.smoothing
        old = state[:, self._t0 : self._ep]
        first = (state[:, 0] == 0.0)[:, None]  # the first reading sets them
        smooth = np.where(first, terms, (1.0 - a) * old + a * terms)
        k = np.where(episode, state[:, self._ep] + 1.0, 0.0)
        new[:, self._ep] = k
        if np.count_nonzero(episode):
            # episode mean: the first reading of an episode (k = 1) replaces the history
            mean = old + (terms - old) / np.maximum(k, 1.0)[:, None]
            smooth = np.where(episode[:, None], mean, smooth)
        new[:, self._t0 : self._ep] = smooth
        idx = np.flatnonzero(learn)
        if idx.size:
            self._learn_rows(residuals, state, new, rate, idx)
        if refresh is not None:
            idx = np.flatnonzero(refresh)
        if idx.size:
            new[idx, self._prec : self._t0] = np.linalg.inv(
                self.covariance(new[idx])
            ).reshape(len(idx), -1)
        return new

    def _learn_rows(self, residuals: FloatArray, state: FloatArray, new: FloatArray,
                    rate: FloatArray, idx: npt.NDArray[np.intp]) -> None:
        """The EWMA step of the mean and covariance of rows ``idx``, written into ``new``."""
        rows = state[idx]
        count, mean, cov = self._parts(rows)
        r = rate[idx]
        diff = residuals[idx] - mean
        new[idx, 0] = count + 1.0
        new[idx, 1 : self._cov] = mean + r[:, None] * diff
        keep = 1.0 - r
        new_cov = cov * keep[:, None, None]
        scaled = diff * np.sqrt(keep * r)[:, None]  # (1 - r) * r * diff diff'
        new_cov += scaled[:, :, None] * scaled[:, None, :]
        new[idx, self._cov : self._prec] = new_cov.reshape(len(idx), -1)
