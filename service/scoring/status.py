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

from service.scoring.stats import FloatArray, const

WARMUP, NORMAL, WARNING, ALARM = 0, 1, 2, 3
_C_WARMUP, _C_NORMAL, _C_WARNING = const(WARMUP), const(NORMAL), const(WARNING)


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
        # the levels as 0-d arrays, cheaper operands (see ``stats.const``)
        self._c = {
            k: const(v)
            for k, v in {
                "one": 1.0, "warmup": warmup, "warning": warning, "alarm": alarm,
                "clear": clear, "hold": hold, "clear_hold": self.clear_hold,
            }.items()
        }  # fmt: skip

    def init_state(self, n: int) -> FloatArray:
        state = np.zeros((n, self.state_size), dtype=np.float64)
        state[:, 1] = WARMUP
        return state

    def update(self, score: FloatArray, state: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Advance by one reading per engine; returns (new status codes, new state rows)."""
        new_state = np.empty((len(state), self.state_size), dtype=np.float64)
        return self.update_into(score, state, new_state), new_state

    def update_into(self, score: FloatArray, state: FloatArray, out: FloatArray) -> FloatArray:
        """:meth:`update` writing the new state rows into ``out`` (``(n, state_size)``, for
        example the status columns of a larger state block); returns the new status codes."""
        c = self._c
        one = c["one"]
        count = np.add(state[:, 0], one, out=out[:, 0])
        status = state[:, 1]
        warm = count <= c["warmup"]
        low_w = score < c["warning"]
        low_a = score < c["alarm"]
        high_c = score >= c["clear"]
        cold = np.count_nonzero(warm) > 0  # after the warm-up (the usual case) none is warm
        if cold:
            low_w |= warm
            low_a |= warm
            high_c |= warm
        up_w = np.where(low_w, 0.0, state[:, 2] + one)
        up_a = np.where(low_a, 0.0, state[:, 3] + one)
        down = np.where(high_c, 0.0, state[:, 4] + one)

        new = np.where(status == _C_WARMUP, float(NORMAL), status)
        new = np.where(up_a >= c["hold"], float(ALARM), new)
        new = np.where((up_w >= c["hold"]) & (new < _C_WARNING), float(WARNING), new)
        new = np.where((down >= c["clear_hold"]) & (new > _C_NORMAL), float(NORMAL), new)
        if cold:
            new = np.where(warm, float(WARMUP), new)
        if self.incident:
            left = state[:, 5]
            held = left > 0
            opens = ~held & (new > status) & (new > NORMAL) & (score >= self.incident_score)
            new = np.where(held | opens, float(ALARM), new)
            out[:, 5] = np.where(opens, self.incident - 1.0, np.maximum(left - 1.0, 0.0))
        out[:, 1] = new
        out[:, 2] = up_w
        out[:, 3] = up_a
        out[:, 4] = down
        return new
