"""EngineScoring as the pipeline uses it: shapes, time, commissioning, alarms, purity."""

from __future__ import annotations

import numpy as np
import pytest

from service.config import ScoringSettings
from service.domain import Status
from service.scoring import STATUS_ORDER, EngineScoring, ScoreBatch
from service.scoring.engine import INTERVAL
from service.scoring.registry import SCORERS
from service.scoring.status import StatusMachine

T0 = 1_795_608_000_000
WARMUP, NORMAL, WARNING, ALARM = (STATUS_ORDER.index(s) for s in
                                  (Status.WARMUP, Status.NORMAL, Status.WARNING, Status.ALARM))
QUICK = ScoringSettings(commission_s=0.0, commission_readings=30, clear_s=3.0)


def _run(
    scoring: EngineScoring, residuals: np.ndarray, step_ms: float = 1000.0,
    state: np.ndarray | None = None, start: int = 0,
) -> tuple[list[ScoreBatch], np.ndarray]:
    """Feed (T, n, C) residuals, one reading per ``step_ms``; the batches and final state."""
    state = scoring.init_state(residuals.shape[1]) if state is None else state
    out = []
    for k, r in enumerate(residuals):
        ts = np.full(residuals.shape[1], T0 + int((start + k) * step_ms), dtype=np.int64)
        batch, state = scoring.update(r, state, ts)
        out.append(batch)
    return out, state


def test_status_order_codes() -> None:
    assert (WARMUP, NORMAL, WARNING, ALARM) == (0, 1, 2, 3)
    assert [s.value for s in STATUS_ORDER] == ["warmup", "normal", "warning", "alarm"]


def test_shapes_dtypes_and_bounds() -> None:
    scoring = EngineScoring(ScoringSettings(), n_channels=3)
    rng = np.random.default_rng(0)
    batches, state = _run(scoring, rng.normal(size=(200, 7, 3)))
    for b in batches:
        assert b.error.shape == b.threshold.shape == b.score.shape == (7,)
        assert b.status.dtype == np.int8 and b.changed.dtype == np.bool_
        assert np.all(b.score >= 0)
    assert state.shape == (7, scoring.state_size)


def test_update_checks_its_inputs() -> None:
    scoring = EngineScoring(ScoringSettings(), 1)
    state = scoring.init_state(2)
    with pytest.raises(ValueError, match="ts_ms"):
        scoring.update(np.zeros((2, 1)), state, np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="residuals"):
        scoring.update(np.zeros((2, 2)), state, np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_commissioning_then_a_fault_raises_an_alarm_that_clears(name: str) -> None:
    scoring = EngineScoring(QUICK.model_copy(update={"scorer": name}), n_channels=1)
    rng = np.random.default_rng(1)
    res = rng.normal(scale=0.1, size=(400, 2, 1))
    res[300:320, 0, 0] += 5.0  # engine 0 goes bad for 20 readings, engine 1 stays healthy
    batches, _ = _run(scoring, res)
    status = np.array([b.status for b in batches])
    assert np.all(status[:29] == WARMUP) and np.all(status[29] == NORMAL)
    assert np.all(np.array([b.score for b in batches[:29]]) == 0.0)
    assert np.any(status[300:320, 0] == ALARM)
    if name != "telemanom":
        # telemanom always finds its most separated points: on pure noise it warns now and
        # then (documented); the parametric scorers must not.
        assert not np.any(status[:300, 0] == ALARM)
        assert not np.any(status[:, 1] >= WARNING)
    assert status[-1, 0] == NORMAL
    changed = np.array([b.changed for b in batches])
    assert np.array_equal(changed[1:], status[1:] != status[:-1])


def test_commissioning_lasts_its_time_span_and_its_readings() -> None:
    settings = ScoringSettings(commission_s=60.0, commission_readings=10)
    rng = np.random.default_rng(2)
    res = np.abs(rng.normal(size=(200, 1, 1)))
    for step_ms, normal_from in ((1000.0, 60), (30_000.0, 9)):
        batches, _ = _run(EngineScoring(settings, 1), res, step_ms)
        status = [int(b.status[0]) for b in batches]
        first = status.index(NORMAL)
        assert first == normal_from, (step_ms, first)
    # A model that needs a day (the seasonal one) extends it to a day of readings.
    batches, _ = _run(EngineScoring(settings, 1, model_warmup_s=3600.0), res, 60_000.0)
    assert [int(b.status[0]) for b in batches].index(NORMAL) == 60


def test_the_sampling_interval_is_learned_and_settings_mean_time() -> None:
    # smoothing 0.5: the short-term average falls below clear_score within a reading or two
    settings = ScoringSettings(commission_s=0.0, commission_readings=30, clear_s=600.0,
                               hold_readings=1, smoothing=0.5)
    rng = np.random.default_rng(3)
    for step_ms in (1000.0, 300_000.0, 3_600_000.0):
        res = np.abs(rng.normal(1.0, 0.1, size=(1200, 1, 1)))
        res[300:305] += 10.0  # a short fault
        scoring = EngineScoring(settings, 1)
        batches, state = _run(scoring, res, step_ms)
        assert scoring.interval_s(state)[0] == pytest.approx(step_ms / 1000.0)
        status = np.array([b.status[0] for b in batches])
        score = np.array([b.score[0] for b in batches])
        assert status[300] == ALARM
        # cleared after 600 s without a warning-level reading, whatever the rate
        last_high = 300 + int(np.flatnonzero(score[300:400] >= settings.warning_score)[-1])
        cleared = 300 + int(np.flatnonzero(status[300:] == NORMAL)[0])
        expected = max(int(600_000 / step_ms), 1)
        # (a reading or two more when the ones just after are still above clear_score)
        assert expected <= cleared - last_high <= expected + 2, step_ms
        assert np.all(score[last_high + 1 : cleared] < settings.warning_score)
        assert not np.any(status[30:300] >= WARNING)


def test_irregular_timestamps_give_the_median_interval() -> None:
    scoring = EngineScoring(ScoringSettings(), 1)
    rng = np.random.default_rng(4)
    steps = rng.choice([9_000, 10_000, 11_000], size=400)
    steps[100] = 86_400_000  # a gap does not throw it off
    ts = T0 + np.cumsum(steps)
    state = scoring.init_state(1)
    for t in ts:
        _, state = scoring.update(np.array([[0.1]]), state, np.array([t], dtype=np.int64))
    assert 9.0 <= state[0, INTERVAL] <= 11.0


def test_one_noisy_reading_does_not_flap() -> None:
    scoring = EngineScoring(QUICK.model_copy(update={"smoothing": 1.0, "hold_readings": 3}), 1)
    rng = np.random.default_rng(2)
    res = rng.normal(scale=0.1, size=(300, 1, 1))
    res[250, 0, 0] = 50.0
    batches, _ = _run(scoring, res)
    assert batches[250].score[0] > 0.99
    assert all(b.status[0] == NORMAL for b in batches[40:])


def test_update_does_not_mutate_and_is_row_independent() -> None:
    scoring = EngineScoring(ScoringSettings(), n_channels=1)
    rng = np.random.default_rng(3)
    _, state = _run(scoring, rng.normal(size=(50, 4, 1)))
    before = state.copy()
    r = rng.normal(size=(4, 1))
    ts = np.full(4, T0 + 10**6, dtype=np.int64)
    batch_all, new_all = scoring.update(r, state, ts)
    assert np.array_equal(state, before)
    batch_one, new_one = scoring.update(r[[2]], state[[2]], ts[[2]])
    assert np.array_equal(new_one[0], new_all[2])
    assert batch_one.score[0] == batch_all.score[2]


def test_channel_max_scores_each_channel_on_its_own() -> None:
    rng = np.random.default_rng(4)
    res = rng.normal(scale=0.1, size=(300, 1, 8))
    res[:, 0, 1:] *= 100.0  # seven loud channels and one quiet one
    res[250:260, 0, 0] += 2.0  # an anomaly the loud channels would drown in an RMS
    by_max = EngineScoring(QUICK.model_copy(update={"channel_reduce": "max"}), n_channels=8)
    by_rms = EngineScoring(QUICK, n_channels=8)
    views = EngineScoring(QUICK, n_channels=8, views=True)  # a model's views: scored apart
    assert by_max.state_size == views.state_size == 6 + 8 * by_max.scorer.state_size + 5
    assert by_rms.state_size == 6 + by_rms.scorer.state_size + 5
    for scoring, alarms in ((by_max, True), (views, True), (by_rms, False)):
        batches, _ = _run(scoring, res)
        assert any(b.status[0] == ALARM for b in batches[250:262]) == alarms


def test_non_finite_residual_scores_one_and_is_not_learned() -> None:
    scoring = EngineScoring(QUICK, n_channels=1)
    rng = np.random.default_rng(5)
    _, state = _run(scoring, rng.normal(size=(100, 2, 1)))
    ts = np.full(2, T0 + 10**6, dtype=np.int64)
    batch, new = scoring.update(np.array([[np.nan], [0.1]]), state, ts)
    assert batch.score[0] == 1.0
    assert np.all(np.isfinite(new))
    lo = 6  # the scorer's columns: [learned, short_avg, long_mean, long_var, ...]
    # The reading went to the ledger of held-back readings: the baseline did not move.
    assert np.array_equal(new[0, lo + 2 : lo + 4], state[0, lo + 2 : lo + 4])


def test_rebaseline_restarts_commissioning_and_keeps_the_interval() -> None:
    scoring = EngineScoring(QUICK, 1)
    rng = np.random.default_rng(6)
    res = np.abs(rng.normal(1.0, 0.1, size=(600, 1, 1)))
    res[300:] += 4.0  # a lasting fault ...
    batches, state = _run(scoring, res, 10_000.0)
    assert batches[-1].status[0] == ALARM
    # ... then maintenance: the operator re-baselines at the new level.
    fresh = scoring.rebaseline(state)
    assert fresh.shape == state.shape
    assert fresh[0, INTERVAL] == state[0, INTERVAL] == pytest.approx(10.0)
    after, _ = _run(scoring, np.abs(rng.normal(5.0, 0.5, size=(200, 1, 1))), 10_000.0,
                    fresh, start=600)
    status = [int(b.status[0]) for b in after]
    assert status[:29] == [WARMUP] * 29 and status[29] == NORMAL
    assert ALARM not in status, "the new level is the new normal"
    with pytest.raises(ValueError):
        scoring.rebaseline(state[:, :3])


def test_status_machine_clears_after_quiet_time_only() -> None:
    machine = StatusMachine(warning=0.5, alarm=0.6, clear=0.1, hold=1, clear_ms=5_000.0)
    state = machine.init_state(1)
    no = np.zeros(1, dtype=bool)
    got = []
    # 1 s readings: high, quiet 3 s, high again (held through), then 6 s without a
    # warning-level reading (a middling one does not restart the quiet time): clears
    scores = [0.7, 0.0, 0.0, 0.0, 0.7, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0]
    for k, x in enumerate(scores):
        status, state = machine.update(np.array([x]), state,
                                       np.array([1000.0 * k]), no)
        got.append(int(status[0]))
    assert got == [ALARM] * 9 + [NORMAL] * 3  # 5 s after the last warning-level reading


def test_spike_scorer_sees_a_single_spike_that_heavy_smoothing_blunts() -> None:
    # A slowly wandering error (AR(1)) with one 3.0 spike on top, late in the series.
    rng = np.random.default_rng(7)
    noise = rng.normal(scale=0.1, size=800)
    res = np.zeros((800, 1, 1))
    for t in range(1, 800):
        res[t, 0, 0] = 0.95 * res[t - 1, 0, 0] + noise[t]
    res[700, 0, 0] += 3.0
    smooth = QUICK.model_copy(update={"scorer": "likelihood", "smoothing": 0.05, "hold_readings": 1,
                                      "baseline_s": 1000 * 3600.0})
    plain, _ = _run(EngineScoring(smooth, n_channels=1), res, 3_600_000.0)
    spikes, _ = _run(EngineScoring(smooth.model_copy(update={"scorer": "likelihood-spikes"}),
                                   n_channels=1), res, 3_600_000.0)
    assert plain[700].score[0] < 0.1
    assert spikes[700].score[0] > 0.5
    # Before the spike both agree: the spike part adds nothing on ordinary readings.
    before = [max(b.score[0] for b in batches[100:700]) for batches in (plain, spikes)]
    assert before[0] == before[1] < 0.3


def test_an_operators_baseline_window_sets_how_long_commissioning_lasts() -> None:
    """``rebaseline(commission_s=...)``: the window runs from the engine's next reading, in
    event time, instead of the settings' commissioning; the reading count still applies."""
    settings = ScoringSettings(commission_s=600.0, commission_readings=30)
    scoring = EngineScoring(settings, 1)
    rng = np.random.default_rng(7)
    _, state = _run(scoring, np.abs(rng.normal(1.0, 0.1, size=(100, 1, 1))), 10_000.0)
    # readings in warm-up: the window / 10 s, but at least commission_readings - 1
    for window, warm in ((3600.0, 360), (None, 60), (60.0, 29), (0.0, 29)):
        fresh = scoring.rebaseline(state, commission_s=window)
        after, _ = _run(scoring, np.abs(rng.normal(1.0, 0.1, size=(400, 1, 1))), 10_000.0,
                        fresh, start=10_000)  # far later: the window counts from then
        status = [int(b.status[0]) for b in after]
        assert status[:warm] == [WARMUP] * warm, window
        assert status[warm] != WARMUP, window
