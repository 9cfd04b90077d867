"""Status per engine from its anomaly scores: warm-up, then normal/warning/alarm with hysteresis.

A level is raised only after ``hold`` consecutive readings at or above it, and an engine
returns to normal only after ``clear_hold`` (default ``hold``) consecutive readings below
``clear``: one noisy reading neither raises nor clears anything. During the first
``warmup`` readings the status is ``warmup`` whatever the scores, and the hold counters
stay at zero, so the readings that fed the warm-up cannot raise an alarm the moment it ends.

Optionally (``incident`` > 0), a reading that raises the status with a score of at least
``incident_score`` opens an *incident*: the engine is held in alarm for ``incident``
readings, so the rest of a long or bursty disturbance is part of that one event instead of
an alarm that clears and rises again with every burst.
"""

from __future__ import annotations

import numpy as np

from service.scoring.stats import FloatArray

WARMUP, NORMAL, WARNING, ALARM = 0, 1, 2, 3


class StatusMachine:
    """Vectorised hysteresis.

    State row: ``[count, status, above_warning, above_alarm, below_clear]``, plus
    ``[incident_readings_left]`` when ``incident`` > 0.
    """

    def __init__(
        self,
        warmup: int,
        warning: float,
        alarm: float,
        clear: float,
        hold: int,
        clear_hold: int | None = None,
        incident: int = 0,
        incident_score: float = 1.0,
    ) -> None:
        if not clear < warning <= alarm:
            raise ValueError("need clear < warning <= alarm")
        self.warmup = warmup
        self.warning = warning
        self.alarm = alarm
        self.clear = clear
        self.hold = hold
        self.clear_hold = hold if clear_hold is None else clear_hold
        if incident < 0:
            raise ValueError("need incident >= 0")
        self.incident = incident
        self.incident_score = incident_score
        #: floats per engine; the incident column exists only when incidents are used
        self.state_size = 6 if incident else 5

    def init_state(self, n: int) -> FloatArray:
        state = np.zeros((n, self.state_size), dtype=np.float64)
        state[:, 1] = WARMUP
        return state

    def update(self, score: FloatArray, state: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Advance by one reading per engine; returns (new status codes, new state rows)."""
        count = state[:, 0] + 1.0
        status = state[:, 1]
        warm = count <= self.warmup
        up_w = np.where(warm | (score < self.warning), 0.0, state[:, 2] + 1.0)
        up_a = np.where(warm | (score < self.alarm), 0.0, state[:, 3] + 1.0)
        down = np.where(warm | (score >= self.clear), 0.0, state[:, 4] + 1.0)

        new = np.where(status == WARMUP, float(NORMAL), status)
        new = np.where(up_a >= self.hold, float(ALARM), new)
        new = np.where((up_w >= self.hold) & (new < WARNING), float(WARNING), new)
        new = np.where((down >= self.clear_hold) & (new > NORMAL), float(NORMAL), new)
        new = np.where(warm, float(WARMUP), new)
        if not self.incident:
            return new, np.stack([count, new, up_w, up_a, down], axis=1)
        left = state[:, 5]
        held = left > 0
        opens = ~held & (new > status) & (new > NORMAL) & (score >= self.incident_score)
        new = np.where(held | opens, float(ALARM), new)
        left = np.where(opens, self.incident - 1.0, np.maximum(left - 1.0, 0.0))
        return new, np.stack([count, new, up_w, up_a, down, left], axis=1)
