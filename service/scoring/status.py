"""Status per engine from its anomaly scores: commissioning, then normal/warning/alarm.

The alarm lifecycle an operator can trust: one alarm per disturbance.

* A level (warning, alarm) is raised after ``hold`` consecutive readings at or above it:
  one noisy reading raises nothing. A warning escalates to an alarm the same way; an alarm
  never steps down to a warning.
* A raised status clears to normal only after ``clear_ms`` of event time without a reading
  at warning level or above, the last ``hold`` of them below ``clear``: an alarm is held
  while its disturbance lasts, bursts and lulls included, and does not flap. (One middling
  reading does not restart the quiet time: at a reading a second, some always come.)
* While an engine is commissioning (``warm``, decided by the caller) the status is warmup
  whatever the scores, and the counters stay at zero, so the readings that fed the
  commissioning cannot raise an alarm the moment it ends.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from service.scoring.stats import FloatArray, const

WARMUP, NORMAL, WARNING, ALARM = 0, 1, 2, 3
_C_WARMUP, _C_NORMAL, _C_WARNING = const(WARMUP), const(NORMAL), const(WARNING)


class StatusMachine:
    """Vectorised hysteresis over engines.

    State row: ``[status, above_warning, above_alarm, below_clear, last_warning_ms]``: the
    status code, the lengths (in readings) of the current runs at or above the warning and
    alarm levels and below the clear level, and the event time of the last reading at
    warning level or above.
    """

    state_size = 5

    def __init__(
        self, warning: float, alarm: float, clear: float, hold: int, clear_ms: float
    ) -> None:
        if not clear < warning <= alarm:
            raise ValueError("need clear < warning <= alarm")
        if hold < 1 or clear_ms < 0:
            raise ValueError("need hold >= 1 and clear_ms >= 0")
        self.warning = warning
        self.alarm = alarm
        self.clear = clear
        self.hold = hold
        self.clear_ms = clear_ms
        # the levels as 0-d arrays, cheaper operands (see ``stats.const``)
        self._c = {
            k: const(v)
            for k, v in {
                "one": 1.0, "warning": warning, "alarm": alarm, "clear": clear, "hold": hold,
                "clear_ms": clear_ms,
            }.items()
        }  # fmt: skip

    def init_state(self, n: int) -> FloatArray:
        """Rows for ``n`` engines in warmup."""
        state = np.zeros((n, self.state_size), dtype=np.float64)
        state[:, 0] = WARMUP
        return state

    def update(
        self,
        score: FloatArray,
        state: FloatArray,
        ts_ms: FloatArray,
        warm: npt.NDArray[np.bool_],
    ) -> tuple[FloatArray, FloatArray]:
        """Advance by one reading per engine; returns (new status codes, new state rows)."""
        new_state = np.empty((len(state), self.state_size), dtype=np.float64)
        return self.update_into(score, state, new_state, ts_ms, warm), new_state

    def update_into(
        self,
        score: FloatArray,
        state: FloatArray,
        out: FloatArray,
        ts_ms: FloatArray,
        warm: npt.NDArray[np.bool_],
    ) -> FloatArray:
        """:meth:`update` writing the new rows into ``out`` (``(n, state_size)``, for example
        the status columns of a larger state block); returns the new status codes.
        ``ts_ms`` is each reading's event time, ``warm`` marks engines still commissioning."""
        c = self._c
        status = state[:, 0]
        # Most engines, most of the time: normal, scoring below clear. For them only the
        # quiet run grows; the full rules run on the others alone.
        active = (score >= c["clear"]) | (status != _C_NORMAL)
        np.copyto(out, state)  # one pass over the block, then the two columns that change
        out[:, 1:3] = 0.0
        out[:, 3] += c["one"]
        idx = np.flatnonzero(active)
        if idx.size:
            out[idx] = self._rules(score[idx], state[idx], ts_ms[idx], warm[idx])
        new: FloatArray = out[:, 0]
        return new

    def _rules(
        self, score: FloatArray, state: FloatArray, ts_ms: FloatArray,
        warm: npt.NDArray[np.bool_],
    ) -> FloatArray:
        """The new state rows of ``state`` after ``score`` (every rule, for a subset)."""
        c = self._c
        one = c["one"]
        status = state[:, 0]
        low_w = score < c["warning"]
        low_a = score < c["alarm"]
        high_c = score >= c["clear"]
        cold = np.count_nonzero(warm) > 0
        if cold:
            low_w |= warm
            low_a |= warm
            high_c |= warm
        up_w = np.where(low_w, 0.0, state[:, 1] + one)
        up_a = np.where(low_a, 0.0, state[:, 2] + one)
        down = np.where(high_c, 0.0, state[:, 3] + one)
        last_high = np.where(low_w, state[:, 4], ts_ms)

        new = np.where(status == _C_WARMUP, float(NORMAL), status)
        new = np.where(up_a >= c["hold"], float(ALARM), new)
        new = np.where((up_w >= c["hold"]) & (new < _C_WARNING), float(WARNING), new)
        quiet = (down >= c["hold"]) & (ts_ms - last_high >= c["clear_ms"])
        new = np.where(quiet & (new > _C_NORMAL), float(NORMAL), new)
        if cold:
            new = np.where(warm, float(WARMUP), new)
        rows: FloatArray = np.stack([new, up_w, up_a, down, last_high], axis=1)
        return rows
