"""Per-engine scoring as the service runs it: residuals -> error -> score -> status.

All scoring state of an engine is one float64 row (it is checkpointed to the state
changelog), laid out as ``[pace | scorer state | status state]``, where the pace columns are
``[seen, readings, last_ts_ms, interval_s, commission_start_ms]``. Memory per engine is
``state_size`` floats, fixed at construction.

Time: every reading comes with its event time. The engine's sampling interval is learned
from them (a running median of the steps between readings), so the settings' time spans
(commissioning, baseline memory, clearing) mean the same whatever the engine's rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.config import ScoringSettings
from service.domain import Status
from service.scoring.registry import build_scorer
from service.scoring.scorers import Scorer, learned_rate
from service.scoring.stats import FloatArray, const
from service.scoring.status import StatusMachine
from service.scoring.whitening import (
    EARLY_PER_CHANNEL,
    REFRESH_EVERY,
    ResidualWhitening,
    shares,
)

_C_ZERO, _C_ONE, _C_MS = const(0.0), const(1.0), const(0.001)
#: Step of the running median of an engine's sampling interval: each reading moves the
#: estimate by this fraction towards its own step, so a change of rate by 10x is learned in
#: about 50 readings and a single gap or burst moves it by 5 % only.
INTERVAL_STEP = 0.05
#: Columns of the pace block.
SEEN, COUNT, LAST_TS, INTERVAL, START, EPISODE = range(6)
PACE_SIZE = 6

#: Status code = index into this tuple.
STATUS_ORDER: tuple[Status, ...] = (Status.WARMUP, Status.NORMAL, Status.WARNING, Status.ALARM)


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of one reading per engine, in the order of the rows passed to ``update``."""

    error: FloatArray  #: (n,) the error statistic the scorer compared (e.g. smoothed error)
    threshold: FloatArray  #: (n,) error level at which the score reaches the alarm level
    score: FloatArray  #: (n,) anomaly score >= 0; higher = more anomalous (0 while commissioning)
    status: npt.NDArray[np.int8]  #: (n,) index into STATUS_ORDER
    changed: npt.NDArray[np.bool_]  #: (n,) status differs from before this reading
    #: (n, C) each channel's share of the error (rows sum to 1; see ``whitening``)
    contributions: FloatArray


def reduce_residuals(residuals: FloatArray) -> FloatArray:
    """One non-negative error per reading: the RMS over channels of the scaled residuals."""
    # sqrt(mean(square(r), axis=1)) without np.mean's Python-level overhead: the same sum
    # (np.add.reduce) divided by the same count.
    sq = np.square(residuals)
    out: FloatArray = np.add.reduce(sq, axis=1)
    np.divide(out, residuals.shape[1], out=out)
    return np.sqrt(out, out=out)


class EngineScoring:
    """Turns one residual row per engine into scores and statuses; vectorised over engines.

    Called by the pipeline once per batch with the residuals and event times of all engines
    that got a reading. ``update`` is pure: it returns the new state rows and the caller
    writes them back.

    What it learns, and when: during commissioning (an engine's first ``commission_s``
    seconds and at least ``commission_readings`` readings, status warmup) every reading is
    learned. After it, only readings scoring below ``warning_score`` are: a fault in
    progress is never learned as normal, so it stays in alarm however long it lasts, and a
    restart, a replay or a second fault meets the same baseline as the first. Even normal
    readings move the baseline by at most ``1 - exp(-interval/baseline_s)`` each.
    """

    def __init__(
        self,
        settings: ScoringSettings,
        n_channels: int,
        scorer: Scorer | None = None,
        views: bool = False,
        model_warmup_s: float = 0.0,
    ) -> None:
        """``views``: the model's channels are alternative predictions of one signal (the
        evaluations' seasonal model), always scored apart whatever ``channel_reduce`` says.
        ``model_warmup_s``: how long the model needs before its predictions mean anything (a
        seasonal model: one period); commissioning lasts at least that long."""
        self.settings = settings
        self.n_channels = n_channels
        self.scorer: Scorer = scorer if scorer is not None else build_scorer(settings)
        s = settings
        self.status = StatusMachine(
            warning=s.warning_score,
            alarm=s.alarm_score,
            clear=s.clear_score,
            hold=s.hold_readings,
            clear_ms=s.clear_s * 1000.0,
        )
        #: scored streams per engine: one (RMS over channels) or one per channel ("max")
        self._k = n_channels if views or s.channel_reduce == "max" else 1
        #: "joint": the residual vector is whitened against the engine's own residual
        #: distribution (``whitening``), which lives after the status block.
        self.whitening = (
            ResidualWhitening(n_channels, s.joint_shrinkage, s.smoothing)
            if s.channel_reduce == "joint" and not views else None
        )
        self._s0 = PACE_SIZE
        self._s1 = self._s0 + self.scorer.state_size * self._k
        self._s2 = self._s1 + self.status.state_size
        #: floats per engine; fixed for the life of this object
        self.state_size = self._s2 + (
            self.whitening.state_size if self.whitening is not None else 0
        )
        self._c = {
            k: const(v)
            for k, v in {
                "readings": s.commission_readings,
                "commission_ms": max(s.commission_s, model_warmup_s) * 1000.0,
                "warning": s.warning_score, "inf": np.inf, "eta": INTERVAL_STEP,
                "half_readings": s.commission_readings / 2,
                "early": EARLY_PER_CHANNEL * n_channels,
                "half_ms": max(s.commission_s, model_warmup_s) * 500.0,

            }.items()
        }  # fmt: skip

    def init_state(self, n: int) -> FloatArray:
        """State rows for ``n`` engines that have seen no reading (status warmup)."""
        state = np.zeros((n, self.state_size), dtype=np.float64)
        state[:, self._s0 : self._s1] = self.scorer.init_state(n * self._k).reshape(n, -1)
        state[:, self._s1 : self._s2] = self.status.init_state(n)
        return state

    def rebaseline(self, state: FloatArray, commission_s: float | None = None) -> FloatArray:
        """New rows for engines an operator re-baselines (after maintenance, say).

        The engines start commissioning afresh from their next reading: the error baseline
        and the status history are dropped (status warmup), while what describes the
        stream rather than the machine is kept: the learned sampling interval and the last
        event time. ``commission_s``: the operator's baseline window, how long (event time,
        from the next reading) this commissioning lasts instead of the settings' (still at
        least ``commission_readings`` readings). ``state`` is ``(n, state_size)``; it is not
        modified.
        """
        if state.ndim != 2 or state.shape[1] != self.state_size:
            raise ValueError(f"state must be (n, {self.state_size}), got {state.shape}")
        new = self.init_state(len(state))
        for col in (SEEN, LAST_TS, INTERVAL):
            new[:, col] = state[:, col]
        if commission_s is not None:
            # Before a commissioning's first reading START holds what to add to that
            # reading's time (see ``_pace``): commissioning then ends commission_s after it.
            new[:, START] = commission_s * 1000.0 - float(self._c["commission_ms"])
        return new

    def interval_s(self, state: FloatArray) -> FloatArray:
        """Each engine's learned sampling interval in seconds (0: not known yet)."""
        out: FloatArray = state[:, INTERVAL].copy()
        return out

    def update(
        self, residuals: FloatArray, state: FloatArray, ts_ms: npt.NDArray[np.int64]
    ) -> tuple[ScoreBatch, FloatArray]:
        """Score one reading per engine, then learn from it if it is judged normal.

        ``residuals`` is ``(n, C)``: actual minus predicted in the model's scaled units, each
        engine at most once; ``state`` is those engines' ``(n, state_size)`` rows; ``ts_ms``
        the readings' event times (epoch ms, ``(n,)`` int64, increasing per engine). Returns
        the scores and the new rows. The reading is scored against statistics that have not
        yet seen it. Raises ValueError on shape mismatch.
        """
        residuals = np.asarray(residuals, dtype=np.float64)
        if residuals.ndim != 2 or residuals.shape[1] != self.n_channels:
            raise ValueError(f"residuals must be (n, {self.n_channels}), got {residuals.shape}")
        n, k = residuals.shape[0], self._k
        if state.shape != (n, self.state_size):
            raise ValueError(f"state must be (n, {self.state_size}), got {state.shape}")
        ts = np.asarray(ts_ms).astype(np.float64)
        if ts.shape != (n,):
            raise ValueError(f"ts_ms must be ({n},), got {ts.shape}")
        s0, s1, s2 = self._s0, self._s1, self._s2
        c = self._c
        new_state = np.empty_like(state)
        warm, interval = self._pace(state, ts, new_state)

        # RMS over channels, the whitened residual's RMS (joint), or each channel's
        # |residual| scored on its own (then the max).
        wh = self.whitening
        share: FloatArray | None = None  # set below, whatever the reduction
        if wh is not None:
            finite = np.asarray(np.isfinite(residuals).all(axis=1))
            all_finite = np.count_nonzero(finite) == finite.size
            clean = residuals if all_finite else np.where(finite[:, None], residuals, 0.0)
            raw, terms = wh.whiten(clean, state[:, s2:])
        else:
            raw = reduce_residuals(residuals) if k == 1 else np.abs(residuals).reshape(-1)
            # A non-finite error (a model blow-up) must not poison the statistics for good:
            # it scores 1.0 and is not learned from.
            finite = np.isfinite(raw)
            all_finite = np.count_nonzero(finite) == finite.size  # usual: nothing to mask
        if not all_finite:
            raw = np.where(finite, raw, 0.0)
        # Learn everything while commissioning, afterwards only what scores below warning;
        # the others are held back until their episode is over (``scorers.Baseline``).
        episode = state[:, EPISODE]
        held = episode > _C_ZERO
        learn_below: FloatArray = c["warning"]
        if np.count_nonzero(warm):
            held &= ~warm
            learn_below = np.where(warm, c["inf"], c["warning"])
        if k > 1:
            if learn_below.ndim:
                learn_below = np.repeat(learn_below, k)
            interval = np.repeat(interval, k)
            held_k = np.repeat(held, k)
        else:
            held_k = held
        if wh is not None:
            # Joint: the error baseline learns from the second half of commissioning only,
            # once the residual covariance has settled (its first estimates are rough and
            # would inflate the error baseline for weeks).
            early = warm & ((new_state[:, COUNT] < c["half_readings"])
                            | (ts - new_state[:, START] < c["half_ms"]))
            if np.count_nonzero(early):
                learn_below = np.where(early, -np.inf, learn_below)
        if not all_finite:
            learn_below = np.where(finite, learn_below, -np.inf)
        sc_state = state[:, s0:s1].reshape(n * k, -1)
        scores, values, thresholds, learned = self.scorer.step_many(
            raw, sc_state, interval, self.settings.alarm_score, learn_below, held_k
        )
        if k == 1:
            score, value, threshold = scores, values, thresholds
            bad: npt.NDArray[np.bool_] = ~finite
        else:
            worst = np.argmax(scores.reshape(n, k), axis=1)[:, None]
            score = np.take_along_axis(scores.reshape(n, k), worst, axis=1)[:, 0]
            value = np.take_along_axis(values.reshape(n, k), worst, axis=1)[:, 0]
            threshold = np.take_along_axis(thresholds.reshape(n, k), worst, axis=1)[:, 0]
            bad = np.logical_not(finite.reshape(n, k).all(axis=1))
            share = shares(np.where(np.isfinite(scores), scores, 0.0).reshape(n, k))
        if wh is None and share is None:
            share = shares(np.square(np.where(np.isfinite(residuals), residuals, 0.0)))
        if np.count_nonzero(warm):
            score = np.where(warm, 0.0, score)  # no score counts before commissioning ends
        if not all_finite:
            score = np.where(bad, 1.0, score)
        new_state[:, s0:s1] = learned.reshape(n, -1)
        status = self.status.update_into(
            score, state[:, s1:s2], new_state[:, s1:s2], ts, warm
        )
        # Episodes: begin at the first reading at warning level or above (after
        # commissioning), end when the engine is normal again with a reading below it.
        high = (score >= c["warning"]) & ~warm
        over = (status <= 1.0) & ~high
        new_state[:, EPISODE] = np.where(over, _C_ZERO, np.where(high, _C_ONE, episode))
        if wh is not None:
            # The residual distribution is the engine's commissioning: learned from every
            # reading while it commissions, then frozen until a re-baseline. Learning the
            # readings judged normal afterwards let a slow departure drift into its mean
            # (C-MAPSS: 0 of 100 degrading engines detected).
            learn_w = finite & warm
            rate = learned_rate(self.settings.baseline_s, interval, state[:, s2])
            # its inverse: for an engine's first readings, every REFRESH_EVERY-th after
            # them, and at the first reading after commissioning (the final estimate)
            every = np.fmod(new_state[:, SEEN], REFRESH_EVERY) == 0.0
            done = ~warm & (state[:, s1] == _C_ZERO)  # status was warmup until this reading
            refresh = (warm & (every | (state[:, s2] < c["early"]))) | done
            new_state[:, s2:] = wh.learn(clean, terms, state[:, s2:], rate, learn_w,
                                         new_state[:, EPISODE] > _C_ZERO, refresh)
            share = wh.shares(new_state[:, s2:])
        batch = ScoreBatch(
            error=value,
            threshold=threshold,
            score=score,
            status=status.astype(np.int8),
            changed=status != state[:, s1],
            contributions=share if share is not None else np.full_like(residuals, np.nan),
        )
        return batch, new_state

    def explain(self, residuals: FloatArray, state: FloatArray) -> FloatArray:
        """Each channel's share of the error of one residual row per engine, ``(n, C)`` (rows
        sum to 1; NaN rows where the residual is not finite), from ``state`` as it is after
        that reading: what ``ScoreBatch.contributions`` said when it was scored (joint: read
        from the state; otherwise recomputed, up to what that reading itself taught).
        Called by the API and the metrics for engines' latest readings."""
        residuals = np.asarray(residuals, dtype=np.float64)
        n, k = residuals.shape[0], self._k
        finite = np.asarray(np.isfinite(residuals).all(axis=1))
        clean = np.where(finite[:, None], residuals, 0.0)
        if self.whitening is not None:
            share = self.whitening.shares(state[:, self._s2 :])
        elif k > 1:
            dt = np.repeat(state[:, INTERVAL], k)
            sc_state = state[:, self._s0 : self._s1].reshape(n * k, -1)
            share = shares(self.scorer.score_many(np.abs(clean).reshape(-1), sc_state, dt)
                           .reshape(n, k))
        else:
            share = shares(np.square(clean))
        out: FloatArray = np.where(finite[:, None], share, np.nan)
        return out

    def _pace(
        self, state: FloatArray, ts: FloatArray, out: FloatArray
    ) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        """The pace columns after this reading, written into ``out``; returns which engines
        are still commissioning and every engine's sampling interval (seconds)."""
        c = self._c
        step = ts - state[:, LAST_TS]
        step *= _C_MS
        old = state[:, INTERVAL]
        # Running median of the steps: 5 % towards each step; the first step sets it.
        interval = np.sign(step - old)
        interval *= c["eta"] * old
        interval += old
        odd = old <= _C_ZERO  # no interval yet
        if np.count_nonzero(odd):
            seen = state[:, SEEN] > _C_ZERO
            first = odd & seen & (step > _C_ZERO)
            interval = np.where(first, step, np.where(odd, old, interval))
        np.add(state[:, COUNT], _C_ONE, out=out[:, COUNT])
        count = out[:, COUNT]
        start = state[:, START]
        if np.count_nonzero(count == _C_ONE):  # engines starting (or re-starting) commissioning
            # START holds an offset until then: 0, or an operator's window (``rebaseline``)
            start = np.where(count == _C_ONE, ts + start, start)
        warm = count < c["readings"]
        elapsed = ts - start
        warm |= elapsed < c["commission_ms"]
        np.add(state[:, SEEN], _C_ONE, out=out[:, SEEN])
        out[:, LAST_TS] = ts
        out[:, INTERVAL] = interval
        out[:, START] = start
        return warm, interval
