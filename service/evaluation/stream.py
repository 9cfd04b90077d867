"""Stream recorded series through the service's own processing, one series = one engine.

Uses :class:`service.processor.BatchProcessor` with an in-memory :class:`EngineStore`, the
code the running service uses between decoding and output: per reading, the residual of
the prediction made one step earlier is scored (score, then learn), then the model steps
on the reading to predict the next one. All engines advance together, one batched array
call per round, exactly as the service does with many engines. Nothing here can look
ahead: round ``t`` only ever hands reading ``t`` of each series to the processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.domain import Reading
from service.processor import BatchProcessor, StepModel
from service.scoring import STATUS_ORDER, EngineScoring
from service.state import EngineStore

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Trace:
    """Per-reading outputs of one engine (row t = after reading t)."""

    score: FloatArray
    status: npt.NDArray[np.int8]
    error: FloatArray
    threshold: FloatArray
    changed: npt.NDArray[np.bool_]


def stream(
    model: StepModel,
    scoring: EngineScoring,
    series: Sequence[FloatArray],
    engine_ids: Sequence[str] | None = None,
) -> list[Trace]:
    """Feed every series ``(T_i, C)`` (columns in ``model.channels`` order) as one engine.

    Readings get event times ``1, 2, ...`` ms (the processor only needs them to increase;
    real timestamps may step back, as a few NAB files do). Returns one trace per series.
    The first reading of an engine has no prediction to compare with: score 0, warmup.
    """
    ids = list(engine_ids) if engine_ids is not None else [f"e{i}" for i in range(len(series))]
    channels = model.channels
    store = EngineStore(
        window=2,
        channels=len(channels),
        model_state_size=model.state_size,
        score_state_size=scoring.state_size,
    )
    proc = BatchProcessor(model, scoring, store, STATUS_ORDER, clock=lambda: 0.0)
    lengths = np.array([len(s) for s in series])
    out_score = [np.zeros(n) for n in lengths]
    out_status = [np.zeros(n, dtype=np.int8) for n in lengths]
    out_error = [np.full(n, np.nan) for n in lengths]
    out_thr = [np.full(n, np.nan) for n in lengths]
    out_changed = [np.zeros(n, dtype=np.bool_) for n in lengths]
    prev_status = np.zeros(len(series), dtype=np.int8)
    for t in range(int(lengths.max(initial=0))):
        active = [int(i) for i in np.flatnonzero(lengths > t)]
        readings = [
            Reading(ids[i], t + 1, {c: float(series[i][t, k]) for k, c in enumerate(channels)})
            for i in active
        ]
        proc.process(readings, [0] * len(readings))
        slots = np.array([store.index[ids[i]] for i in active])
        status = store.status[slots]
        for j, i in enumerate(active):
            out_score[i][t] = store.score[slots[j]]
            out_status[i][t] = status[j]
            out_error[i][t] = store.error[slots[j]]
            out_thr[i][t] = store.threshold[slots[j]]
            out_changed[i][t] = status[j] != prev_status[i]
        prev_status[active] = status
    return [
        Trace(out_score[i], out_status[i], out_error[i], out_thr[i], out_changed[i])
        for i in range(len(series))
    ]
