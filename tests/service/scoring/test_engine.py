"""EngineScoring as the pipeline uses it: shapes, warm-up, alarms, hysteresis, purity."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from service.config import ScoringSettings
from service.domain import Status
from service.scoring import STATUS_ORDER, EngineScoring, ScoreBatch
from service.scoring.params import SCORERS, ScoringParams
from service.scoring.status import StatusMachine


def _run(scoring: EngineScoring, residuals: np.ndarray) -> tuple[list[ScoreBatch], np.ndarray]:
    """Feed (T, n, C) residuals one step at a time; return the batches and the final state."""
    state = scoring.init_state(residuals.shape[1])
    out = []
    for r in residuals:
        batch, state = scoring.update(r, state)
        out.append(batch)
    return out, state


def test_status_order_codes() -> None:
    assert STATUS_ORDER.index(Status.WARMUP) == 0
    assert [s.value for s in STATUS_ORDER] == ["warmup", "normal", "warning", "alarm"]


def test_init_state_is_warmup_and_fixed_size() -> None:
    scoring = EngineScoring(ScoringSettings(), n_channels=2)
    state = scoring.init_state(5)
    assert state.shape == (5, scoring.state_size)
    assert state.dtype == np.float64


def test_shapes_dtypes_and_bounds() -> None:
    scoring = EngineScoring(ScoringSettings(), n_channels=3)
    rng = np.random.default_rng(0)
    batches, state = _run(scoring, rng.normal(size=(200, 7, 3)))
    for b in batches:
        assert b.error.shape == b.threshold.shape == b.score.shape == (7,)
        assert b.status.dtype == np.int8 and b.changed.dtype == np.bool_
        assert np.all((b.score >= 0) & (b.score <= 1))
    assert state.shape == (7, scoring.state_size)


@pytest.mark.parametrize("name", SCORERS)
def test_warmup_then_normal_and_spike_raises_alarm_then_clears(name: str) -> None:
    params = ScoringParams(scorer=name, warmup_readings=30, hold_readings=3)  # type: ignore[arg-type]
    scoring = EngineScoring(params, n_channels=1)
    rng = np.random.default_rng(1)
    res = rng.normal(scale=0.1, size=(400, 2, 1))
    res[300:320, 0, 0] += 5.0  # engine 0 goes bad for 20 readings, engine 1 stays healthy
    batches, _ = _run(scoring, res)
    status = np.array([b.status for b in batches])
    assert np.all(status[:30] == STATUS_ORDER.index(Status.WARMUP))
    assert status[30, 0] == STATUS_ORDER.index(Status.NORMAL)
    assert np.any(status[300:320, 0] == STATUS_ORDER.index(Status.ALARM))
    if name != "telemanom":
        # telemanom always finds its most separated points: on pure noise it raises a
        # warning every ~1,000 readings (documented); the parametric scorers must not.
        assert not np.any(status[:300, 0] == STATUS_ORDER.index(Status.ALARM))
        assert not np.any(status[:, 1] >= STATUS_ORDER.index(Status.WARNING))
    assert status[-1, 0] == STATUS_ORDER.index(Status.NORMAL)
    changed = np.array([b.changed for b in batches])
    assert np.array_equal(changed[1:], status[1:] != status[:-1])


def test_settings_object_is_accepted_and_overrides_defaults() -> None:
    scoring = EngineScoring(ScoringSettings(hold_readings=7), n_channels=1)
    assert scoring.params.hold_readings == 7
    assert scoring.params.alarm_score == ScoringSettings().alarm_score


def test_one_noisy_reading_does_not_flap() -> None:
    params = ScoringParams(smoothing=1.0, hold_readings=3)
    scoring = EngineScoring(params, n_channels=1)
    rng = np.random.default_rng(2)
    res = rng.normal(scale=0.1, size=(300, 1, 1))
    res[250, 0, 0] = 50.0
    batches, _ = _run(scoring, res)
    assert batches[250].score[0] > 0.99
    assert all(b.status[0] == STATUS_ORDER.index(Status.NORMAL) for b in batches[40:])


def test_update_does_not_mutate_and_is_row_independent() -> None:
    scoring = EngineScoring(ScoringSettings(), n_channels=1)
    rng = np.random.default_rng(3)
    _, state = _run(scoring, rng.normal(size=(50, 4, 1)))
    before = state.copy()
    r = rng.normal(size=(4, 1))
    batch_all, new_all = scoring.update(r, state)
    assert np.array_equal(state, before)
    batch_one, new_one = scoring.update(r[[2]], state[[2]])
    assert np.array_equal(new_one[0], new_all[2])
    assert batch_one.score[0] == batch_all.score[2]


def test_channel_max_scores_each_channel_on_its_own() -> None:
    rng = np.random.default_rng(4)
    res = rng.normal(scale=0.1, size=(300, 1, 8))
    res[:, 0, 1:] *= 100.0  # seven loud channels and one quiet one
    res[250:260, 0, 0] += 2.0  # an anomaly the loud channels would drown in an RMS
    by_max = EngineScoring(ScoringParams(channel_reduce="max", hold_readings=3), n_channels=8)
    by_rms = EngineScoring(ScoringParams(hold_readings=3), n_channels=8)
    assert by_max.state_size == 1 + 8 * by_max.scorer.state_size + 5
    assert by_rms.state_size == 1 + by_rms.scorer.state_size + 5
    max_batches, _ = _run(by_max, res)
    rms_batches, _ = _run(by_rms, res)
    alarm = STATUS_ORDER.index(Status.ALARM)
    assert any(b.status[0] == alarm for b in max_batches[250:262])
    assert not any(b.status[0] == alarm for b in rms_batches[250:262])


def test_non_finite_residual_scores_high_and_is_not_learned() -> None:
    scoring = EngineScoring(ScoringParams(), n_channels=1)
    rng = np.random.default_rng(5)
    _, state = _run(scoring, rng.normal(size=(100, 2, 1)))
    batch, new = scoring.update(np.array([[np.nan], [0.1]]), state)
    assert batch.score[0] == 1.0
    assert np.all(np.isfinite(new))
    # Only the counters and status moved for the engine with the bad residual.
    lo, hi = 1, 1 + scoring.scorer.state_size
    assert np.array_equal(new[0, lo:hi], state[0, lo:hi])


def _bursts() -> np.ndarray:
    """(T, 1, 1) residuals: quiet noise, then three bursts 40 readings apart."""
    rng = np.random.default_rng(6)
    res = rng.normal(scale=0.1, size=(600, 1, 1))
    for start in (400, 440, 480):
        res[start : start + 5, 0, 0] += 20.0
    return res


#: levels that plain noise never reaches, raised and cleared reading by reading
_LOUD: dict[str, Any] = {
    "smoothing": 1.0,
    "warning_score": 0.5,
    "alarm_score": 0.6,
    "hold_readings": 1,
    "clear_readings": 3,
}


def test_incident_holds_one_alarm_through_a_bursty_disturbance() -> None:
    base = ScoringParams(**_LOUD)
    alarm = STATUS_ORDER.index(Status.ALARM)
    plain, _ = _run(EngineScoring(base, n_channels=1), _bursts())
    held_scoring = EngineScoring(
        replace(base, incident_readings=150, incident_score=0.7), n_channels=1
    )
    held, _ = _run(held_scoring, _bursts())
    assert held_scoring.state_size == EngineScoring(base, n_channels=1).state_size + 1

    def alarm_onsets(batches: list[ScoreBatch]) -> list[int]:
        return [t for t, b in enumerate(batches) if b.changed[0] and b.status[0] == alarm]

    assert alarm_onsets(plain) == [400, 440, 480]
    assert alarm_onsets(held) == [400]
    status = np.array([b.status[0] for b in held])
    assert np.all(status[400:550] == alarm)
    assert status[-1] == STATUS_ORDER.index(Status.NORMAL)


def test_incident_opens_only_at_the_incident_score_and_lasts_its_readings() -> None:
    machine = StatusMachine(
        warmup=0, warning=0.5, alarm=0.6, clear=0.1, hold=1, incident=5, incident_score=0.9
    )
    scores = [0.7, 0.0, 0.0, 0.95, 0.0, 0.7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7]
    state = machine.init_state(1)
    got = []
    for x in scores:
        status, state = machine.update(np.array([x]), state)
        got.append(int(status[0]))
    n, a = STATUS_ORDER.index(Status.NORMAL), STATUS_ORDER.index(Status.ALARM)
    # 0.7 raises an ordinary alarm that clears; 0.95 opens a 5-reading incident, which
    # swallows the 0.7 inside it; after it the next 0.7 is a new alarm.
    assert got == [a, n, n, a, a, a, a, a, n, n, n, a]
    assert state.shape == (1, machine.state_size) and machine.state_size == 6


def test_spike_scorer_sees_a_single_spike_that_heavy_smoothing_blunts() -> None:
    # A slowly wandering error (AR(1)) with one 3.0 spike on top, late in the series.
    rng = np.random.default_rng(7)
    noise = rng.normal(scale=0.1, size=800)
    res = np.zeros((800, 1, 1))
    for t in range(1, 800):
        res[t, 0, 0] = 0.95 * res[t - 1, 0, 0] + noise[t]
    res[700, 0, 0] += 3.0
    smooth = ScoringParams(smoothing=0.05, error_decay=0.001, hold_readings=1)
    plain, _ = _run(EngineScoring(smooth, n_channels=1), res)
    spikes, _ = _run(EngineScoring(replace(smooth, scorer="likelihood-spikes"), n_channels=1), res)
    assert plain[700].score[0] < 0.1
    assert spikes[700].score[0] > 0.5
    # Before the spike both agree: the spike part adds nothing on ordinary readings.
    before = [max(b.score[0] for b in batches[100:700]) for batches in (plain, spikes)]
    assert before[0] == before[1] < 0.3
