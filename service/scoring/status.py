"""Status per engine from its anomaly scores: warm-up, then normal/warning/alarm with hysteresis.

A level is raised only after ``hold`` consecutive readings at or above it, and an engine
returns to normal only after ``clear_hold`` (default ``hold``) consecutive readings below
``clear``: one noisy reading neither raises nor clears anything. During the first
``warmup`` readings the status is ``warmup`` whatever the scores, and the hold counters
stay at zero, so the readings that fed the warm-up cannot raise an alarm the moment it ends.
"""

from __future__ import annotations

import numpy as np

from service.scoring.stats import FloatArray

WARMUP, NORMAL, WARNING, ALARM = 0, 1, 2, 3


class StatusMachine:
    """Vectorised hysteresis.

    State row: ``[count, status, above_warning, above_alarm, below_clear]``.
    """

    state_size = 5

    def __init__(
        self,
        warmup: int,
        warning: float,
        alarm: float,
        clear: float,
        hold: int,
        clear_hold: int | None = None,
    ) -> None:
        if not clear < warning <= alarm:
            raise ValueError("need clear < warning <= alarm")
        self.warmup = warmup
        self.warning = warning
        self.alarm = alarm
        self.clear = clear
        self.hold = hold
        self.clear_hold = hold if clear_hold is None else clear_hold

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
        return new, np.stack([count, new, up_w, up_a, down], axis=1)
