"""scoring.learn_from_anomalies=false keeps a developing fault in alarm."""

from __future__ import annotations

import numpy as np

from service.config import ScoringSettings
from service.domain import Status
from service.scoring import STATUS_ORDER, EngineScoring


def _statuses(learn: bool) -> list[Status]:
    scoring = EngineScoring(ScoringSettings(learn_from_anomalies=learn), 1)
    state = scoring.init_state(1)
    rng = np.random.default_rng(5)
    out = []
    for k in range(6000):
        # healthy noise, then noise that grows slowly and steadily (wear)
        err = abs(rng.normal(0, 1.0 + (0.004 * (k - 2000) if k >= 2000 else 0.0)))
        batch, state = scoring.update(np.array([[err]]), state)
        out.append(STATUS_ORDER[int(batch.status[0])])
    return out


def test_frozen_baseline_holds_the_alarm_on_slow_wear() -> None:
    frozen = _statuses(learn=False)
    learning = _statuses(learn=True)
    for run in (frozen, learning):
        assert Status.ALARM not in run[:2000]  # no alarm on the healthy part
    # frozen: the wear stays anomalous to the end
    assert all(s == Status.ALARM for s in frozen[-1000:])
    # learning (the default): the growing noise becomes the new normal
    assert learning[-1000:].count(Status.ALARM) < 500
