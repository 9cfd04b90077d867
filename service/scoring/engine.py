"""Per-engine scoring as the service runs it: residuals -> error -> score -> status.

All scoring state of an engine is one float64 row (it is checkpointed to the state
changelog), laid out as ``[readings | scorer state | status state]``.
Memory per engine is ``state_size`` floats, fixed at construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.config import ScoringSettings
from service.domain import Status
from service.scoring.params import ScoringParams
from service.scoring.scorers import (
    AnomalyLikelihood,
    GaussianTail,
    LikelihoodWithSpikes,
    NonparametricThreshold,
    Scorer,
)
from service.scoring.stats import FloatArray, const
from service.scoring.status import StatusMachine

_C_ONE = const(1.0)

#: Status code = index into this tuple.
STATUS_ORDER: tuple[Status, ...] = (Status.WARMUP, Status.NORMAL, Status.WARNING, Status.ALARM)


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of one reading per engine, in the order of the rows passed to ``update``."""

    error: FloatArray  #: (n,) the error statistic the scorer compared (e.g. smoothed error)
    threshold: FloatArray  #: (n,) error level at which the score reaches the alarm level
    score: FloatArray  #: (n,) anomaly score in [0, 1]; higher = more anomalous
    status: npt.NDArray[np.int8]  #: (n,) index into STATUS_ORDER
    changed: npt.NDArray[np.bool_]  #: (n,) status differs from before this reading


def reduce_residuals(residuals: FloatArray) -> FloatArray:
    """One non-negative error per reading: the RMS over channels of the scaled residuals."""
    # sqrt(mean(square(r), axis=1)) without np.mean's Python-level overhead: the same sum
    # (np.add.reduce) divided by the same count.
    sq = np.square(residuals)
    out: FloatArray = np.add.reduce(sq, axis=1)
    np.divide(out, residuals.shape[1], out=out)
    return np.sqrt(out, out=out)


def build_scorer(params: ScoringParams) -> Scorer:
    """The scorer named by ``params.scorer``, configured from ``params``."""
    if params.scorer == "gaussian":
        return GaussianTail(decay=params.error_decay, min_count=2)
    if params.scorer == "telemanom":
        return NonparametricThreshold(
            window=params.telemanom_window, smoothing=params.smoothing, level=params.alarm_score
        )
    if params.scorer == "likelihood-spikes":
        return LikelihoodWithSpikes(
            short=params.smoothing,
            long=params.error_decay,
            learning=params.warmup_readings,
            spike_floor=params.spike_floor,
            spike_decay=params.spike_decay,
        )
    return AnomalyLikelihood(
        short=params.smoothing, long=params.error_decay, learning=params.warmup_readings
    )


class EngineScoring:
    """Turns one residual row per engine into scores and statuses; vectorised over engines.

    Called by the pipeline once per batch with the residuals of all engines that got a
    reading. ``update`` is pure: it returns the new state rows and the caller writes them back.
    """

    def __init__(
        self,
        settings: ScoringSettings | ScoringParams,
        n_channels: int,
        scorer: Scorer | None = None,
    ) -> None:
        self.params = ScoringParams.from_settings(settings)
        self.n_channels = n_channels
        self.scorer: Scorer = scorer if scorer is not None else build_scorer(self.params)
        p = self.params
        self.status = StatusMachine(
            warmup=p.warmup_readings,
            warning=p.warning_score,
            alarm=p.alarm_score,
            clear=p.clear_score,
            hold=p.hold_readings,
            clear_hold=p.clear_readings or p.hold_readings,
            incident=p.incident_readings,
            incident_score=p.incident_score,
        )
        #: scored streams per engine: one (RMS over channels) or one per channel ("max")
        self._k = n_channels if p.channel_reduce == "max" else 1
        self._s0 = 1
        self._s1 = self._s0 + self.scorer.state_size * self._k
        #: floats per engine; fixed for the life of this object
        self.state_size = self._s1 + self.status.state_size

    def init_state(self, n: int) -> FloatArray:
        """State rows for ``n`` engines that have seen no reading (status warmup)."""
        state = np.zeros((n, self.state_size), dtype=np.float64)
        state[:, self._s0 : self._s1] = self.scorer.init_state(n * self._k).reshape(n, -1)
        state[:, self._s1 :] = self.status.init_state(n)
        return state

    def rebaseline(self, state: FloatArray) -> FloatArray:
        """What an operator's re-baseline does to engines' scoring rows: commissioning
        starts afresh (the rows are those of new engines)."""
        return self.init_state(len(state))

    def update(self, residuals: FloatArray, state: FloatArray) -> tuple[ScoreBatch, FloatArray]:
        """Score one reading per engine, then learn from it.

        ``residuals`` is ``(n, C)``: actual minus predicted in the model's scaled units, each
        engine at most once; ``state`` is those engines' ``(n, state_size)`` rows. Returns the
        scores and the new rows. The reading is scored against statistics that have not yet
        seen it. Raises ValueError on shape mismatch.
        """
        residuals = np.asarray(residuals, dtype=np.float64)
        if residuals.ndim != 2 or residuals.shape[1] != self.n_channels:
            raise ValueError(f"residuals must be (n, {self.n_channels}), got {residuals.shape}")
        if state.shape != (residuals.shape[0], self.state_size):
            raise ValueError(f"state must be (n, {self.state_size}), got {state.shape}")
        n, k = residuals.shape[0], self._k
        s0, s1 = self._s0, self._s1
        # RMS over channels, or each channel's |residual| scored on its own (then the max).
        raw = reduce_residuals(residuals) if k == 1 else np.abs(residuals).reshape(-1)
        # A non-finite error (a model blow-up) must not poison the statistics for good:
        # it scores 1.0 and is not learned from.
        finite = np.isfinite(raw)
        all_finite = np.count_nonzero(finite) == finite.size  # usual: nothing to mask
        if not all_finite:
            raw = np.where(finite, raw, 0.0)
        sc_state = state[:, s0:s1].reshape(n * k, -1)
        # score, explanation and learning in one pass over the scorer's intermediates
        scores, values, thresholds, learned = self.scorer.step_many(
            raw, sc_state, self.params.alarm_score
        )
        if not all_finite:
            scores = np.where(finite, scores, 1.0)
        cols = self.scorer.baseline_columns
        if not self.params.learn_from_anomalies and cols:
            # A developing fault must not become the baseline it is measured against: while
            # a reading scores at warning level or above, the long-run statistics stay put
            # (the short-term average still follows the readings).
            hold = scores >= self.params.warning_score
            if np.count_nonzero(hold):
                idx = np.asarray(cols)
                kept = learned[:, idx]
                kept[hold] = sc_state[hold][:, idx]
                learned[:, idx] = kept
        if not all_finite:
            learned = np.where(finite[:, None], learned, sc_state)
        if k == 1:
            score, value, threshold = scores, values, thresholds
        else:
            worst = np.argmax(scores.reshape(n, k), axis=1)[:, None]
            score = np.take_along_axis(scores.reshape(n, k), worst, axis=1)[:, 0]
            value = np.take_along_axis(values.reshape(n, k), worst, axis=1)[:, 0]
            threshold = np.take_along_axis(thresholds.reshape(n, k), worst, axis=1)[:, 0]

        new_state = np.empty_like(state)
        np.add(state[:, 0], _C_ONE, out=new_state[:, 0])
        new_state[:, s0:s1] = learned.reshape(n, -1)
        status = self.status.update_into(score, state[:, s1:], new_state[:, s1:])
        batch = ScoreBatch(
            error=value,
            threshold=threshold,
            score=score,
            status=status.astype(np.int8),
            changed=status != state[:, s1 + 1],
        )
        return batch, new_state
