"""Stream recorded series through the service's own processing, one series = one engine.

:func:`stream` uses :class:`service.processor.BatchProcessor` with an in-memory
:class:`EngineStore`, the code the running service uses between decoding and output: per
reading, the residual of the prediction made one step earlier is scored (score, then
learn), then the model steps on the reading to predict the next one. All engines advance
together, one batched array call per round, exactly as the service does with many engines,
with the readings' own event times and the service's gap rule (``state.max_gap_ms``).
Nothing here can look ahead: round ``t`` only ever hands reading ``t`` of each series to
the processor.

:func:`replay` scores recorded residuals again with other scoring settings without stepping
the model: the predictor does not depend on the scoring, so a selection procedure that
tries many scoring settings steps each predictor once. A test checks that it gives exactly
the processor's scores and statuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.config import StateSettings
from service.domain import Reading
from service.processor import BatchProcessor, StepModel
from service.scoring import STATUS_ORDER, EngineScoring
from service.state import EngineStore

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: Event-time step given to series that have no timestamps (one reading per second).
DEFAULT_STEP_MS = 1000


@dataclass(frozen=True)
class Trace:
    """Per-reading outputs of one engine (row t = after reading t)."""

    score: FloatArray
    status: npt.NDArray[np.int8]
    error: FloatArray
    threshold: FloatArray
    changed: npt.NDArray[np.bool_]
    #: ``(T, C)`` the readings as the model took them (after any standardising), and the
    #: prediction each was scored against (NaN where there was none); set by :func:`stream`,
    #: None from :func:`replay`, which never steps the model
    reading: FloatArray | None = None
    predicted: FloatArray | None = None
    #: ``(T, C)`` each channel's share of the error (``ScoreBatch.contributions``; NaN where
    #: the reading was not scored); set by :func:`replay`, None from :func:`stream`
    contributions: FloatArray | None = None


@dataclass(frozen=True)
class Residuals:
    """What the model produced for one engine, enough to score it again (:func:`replay`).

    ``values[t]`` is the residual of reading ``t`` against the prediction made before it;
    ``scored[t]`` is false where there was no prediction (the first reading, and the first
    after a gap that restarted the engine; the scoring state starts afresh there).
    """

    values: FloatArray  #: (T, C)
    ts_ms: IntArray  #: (T,) the event times fed to the processor
    scored: npt.NDArray[np.bool_]  #: (T,)


def monotone_ms(ts_ms: npt.ArrayLike) -> IntArray:
    """Event times made strictly increasing: a time at or before its predecessor becomes the
    predecessor plus 1 ms. Recorded data sometimes repeats or steps back a timestamp (a few
    NAB files do); the service would skip such a reading as a duplicate or late, while an
    evaluation must score every row."""
    t = np.asarray(ts_ms, dtype=np.int64)
    k = np.arange(t.size, dtype=np.int64)
    out: IntArray = np.maximum.accumulate(t - k) + k
    return out


def stream(
    model: StepModel,
    scoring: EngineScoring,
    series: Sequence[FloatArray],
    engine_ids: Sequence[str] | None = None,
    ts_ms: Sequence[npt.ArrayLike] | None = None,
    max_gap_ms: int | None = None,
) -> tuple[list[Trace], list[Residuals]]:
    """Feed every series ``(T_i, C)`` (columns in ``model.channels`` order) as one engine.

    ``ts_ms`` gives each series' event times (epoch ms; made strictly increasing with
    :func:`monotone_ms`); without it readings are :data:`DEFAULT_STEP_MS` apart.
    ``max_gap_ms``: a longer silence restarts the engine, as in the service (default: the
    service's ``state.max_gap_ms``). Returns one trace per series and the residuals the
    model produced (for :func:`replay`); a trace also holds the readings and the predictions
    they were scored against (``Trace.reading``, ``Trace.predicted``). The first reading of
    an engine has no prediction to compare with: score 0, warmup.
    """
    ids = list(engine_ids) if engine_ids is not None else [f"e{i}" for i in range(len(series))]
    times = [
        monotone_ms(ts_ms[i]) if ts_ms is not None
        else np.arange(1, len(s) + 1, dtype=np.int64) * DEFAULT_STEP_MS
        for i, s in enumerate(series)
    ]
    for s, stamps in zip(series, times, strict=True):
        if stamps.shape != (len(s),):
            raise ValueError(f"{len(s)} readings but {stamps.size} timestamps")
    gap = StateSettings().max_gap_ms if max_gap_ms is None else max_gap_ms
    channels = model.channels
    store = EngineStore(
        window=2,
        channels=len(channels),
        model_state_size=model.state_size,
        score_state_size=scoring.state_size,
    )
    proc = BatchProcessor(model, scoring, store, STATUS_ORDER, max_gap_ms=gap, clock=lambda: 0.0)
    lengths = np.array([len(s) for s in series])
    out_score = [np.zeros(n) for n in lengths]
    out_status = [np.zeros(n, dtype=np.int8) for n in lengths]
    out_error = [np.full(n, np.nan) for n in lengths]
    out_thr = [np.full(n, np.nan) for n in lengths]
    out_changed = [np.zeros(n, dtype=np.bool_) for n in lengths]
    residuals = [np.full((n, len(channels)), np.nan) for n in lengths]
    predicted = [np.full((n, len(channels)), np.nan) for n in lengths]
    scored = [np.zeros(n, dtype=np.bool_) for n in lengths]
    prev_status = np.zeros(len(series), dtype=np.int8)
    for t in range(int(lengths.max(initial=0))):
        active = [int(i) for i in np.flatnonzero(lengths > t)]
        readings = [
            Reading(ids[i], int(times[i][t]),
                    {c: float(series[i][t, k]) for k, c in enumerate(channels)})
            for i in active
        ]
        before = {i: store.index.get(ids[i]) for i in active}
        pred = {
            i: store.last_pred[slot].copy()
            for i, slot in before.items()
            if slot is not None and store.has_pred[slot]
        }
        resets = {i: int(store.resets[slot]) for i, slot in before.items() if slot is not None}
        proc.process(readings, [0] * len(readings))
        slots = np.array([store.index[ids[i]] for i in active])
        status = store.status[slots]
        for j, i in enumerate(active):
            slot = slots[j]
            # Scored when there was a prediction and the gap rule did not restart the engine.
            if i in pred and store.resets[slot] == resets[i]:
                x = np.asarray(series[i][t : t + 1], dtype=np.float64)
                residuals[i][t] = model.scaled_residual(x, pred[i][None, :])[0]
                predicted[i][t] = pred[i]
                scored[i][t] = True
            out_score[i][t] = store.score[slot]
            out_status[i][t] = status[j]
            out_error[i][t] = store.error[slot]
            out_thr[i][t] = store.threshold[slot]
            out_changed[i][t] = status[j] != prev_status[i]
        prev_status[active] = status
    traces = [
        Trace(out_score[i], out_status[i], out_error[i], out_thr[i], out_changed[i],
              np.asarray(series[i], dtype=np.float64), predicted[i])
        for i in range(len(series))
    ]
    recorded = [Residuals(residuals[i], times[i], scored[i]) for i in range(len(series))]
    return traces, recorded


def replay(scoring: EngineScoring, recorded: Sequence[Residuals]) -> list[Trace]:
    """Score recorded residuals with ``scoring``: the processor's scores and statuses for the
    same model, without stepping the model again. All engines advance together, one
    ``EngineScoring.update`` per round. A reading without a prediction restarts the
    engine's scoring state (status warmup, score 0), as the processor does."""
    n = len(recorded)
    lengths = np.array([len(r.ts_ms) for r in recorded])
    depth = int(lengths.max(initial=0))
    n_ch = recorded[0].values.shape[1] if n else 1
    # (depth, n) views of everything the rounds need, padded past each engine's end
    vals = np.zeros((depth, n, n_ch))
    ts = np.zeros((depth, n), dtype=np.int64)
    has = np.zeros((depth, n), dtype=np.bool_)
    for i, r in enumerate(recorded):
        vals[: lengths[i], i] = r.values
        ts[: lengths[i], i] = r.ts_ms
        has[: lengths[i], i] = r.scored
    state = scoring.init_state(n)
    fresh = scoring.init_state(1)[0]
    score = np.zeros((depth, n))
    status = np.zeros((depth, n), dtype=np.int8)
    error = np.full((depth, n), np.nan)
    thr = np.full((depth, n), np.nan)
    shares = np.full((depth, n, n_ch), np.nan)
    current = np.zeros(n, dtype=np.int8)
    last_score = np.zeros(n)
    last_error = np.full(n, np.nan)
    last_thr = np.full(n, np.nan)
    for t in range(depth):
        live = t < lengths
        restart = live & ~has[t]
        if restart.any():
            state[restart] = fresh
            current[restart] = 0
            last_score[restart] = 0.0
        rows = np.flatnonzero(has[t])
        if rows.size:
            batch, new = scoring.update(vals[t, rows], state[rows], ts[t, rows])
            state[rows] = new
            current[rows] = batch.status
            last_score[rows] = batch.score
            last_error[rows] = batch.error
            last_thr[rows] = batch.threshold
            shares[t, rows] = batch.contributions
        score[t] = last_score
        status[t] = current
        error[t] = last_error
        thr[t] = last_thr
    traces = []
    for i in range(n):
        st = status[: lengths[i], i]
        prev = np.concatenate([[0], st[:-1]]).astype(np.int8)
        traces.append(
            Trace(score[: lengths[i], i].copy(), st.copy(), error[: lengths[i], i].copy(),
                  thr[: lengths[i], i].copy(), st != prev,
                  contributions=shares[: lengths[i], i].copy())
        )
    return traces
