"""Streaming recorded series through the service's processor: same numbers, no look-ahead."""

from __future__ import annotations

import numpy as np
import pytest

from service.config import ScoringSettings
from service.evaluation.predictors import EwmaLevel, LastValue, standardise_online
from service.evaluation.stream import monotone_ms, replay, stream
from service.scoring import EngineScoring

T0 = 1_700_000_000_000


def _series(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=n)) + 10.0
    x[n // 2 : n // 2 + 5] += 30.0
    return x[:, None]


def test_processor_path_equals_direct_scoring_of_residuals() -> None:
    settings = ScoringSettings(commission_readings=10, commission_s=0)
    series = [_series(0, 300), _series(1, 200)]
    ts = [T0 + 60_000 * np.arange(len(s)) for s in series]
    traces, _ = stream(LastValue(("c0",)), EngineScoring(settings, 1), series, ts_ms=ts)
    # Direct: with the last-value predictor, residual t is x[t] - x[t-1], scored from t=1,
    # at the reading's own event time.
    for s, tr, t_ms in zip(series, traces, ts, strict=True):
        scoring = EngineScoring(settings, 1)
        state = scoring.init_state(1)
        assert tr.score[0] == 0.0 and tr.status[0] == 0
        for t in range(1, len(s)):
            batch, state = scoring.update((s[t] - s[t - 1])[None, :], state, t_ms[t : t + 1])
            assert tr.score[t] == batch.score[0]
            assert tr.status[t] == batch.status[0]


def test_replay_of_recorded_residuals_equals_the_processor_path() -> None:
    """What the selection procedure relies on: scoring recorded residuals again with other
    settings gives exactly what streaming through the processor with them gives, gaps and
    restarts included."""
    series = [_series(2, 400), _series(3, 250), _series(4, 320)]
    ts = [T0 + 1000 * np.arange(len(s)) for s in series]
    ts[1][120:] += 3 * 86_400_000  # a silence longer than the gap rule: a restart
    _, recorded = stream(EwmaLevel(("c0",)), EngineScoring(ScoringSettings(), 1), series,
                         ts_ms=ts)
    assert not recorded[1].scored[120] and recorded[1].scored[121]
    for settings in (ScoringSettings(commission_s=0, commission_readings=10),
                     ScoringSettings(scorer="likelihood-spikes", hold_readings=1)):
        direct, _ = stream(EwmaLevel(("c0",)), EngineScoring(settings, 1), series, ts_ms=ts)
        again = replay(EngineScoring(settings, 1), recorded)
        for a, b in zip(direct, again, strict=True):
            assert np.array_equal(a.score, b.score)
            assert np.array_equal(a.status, b.status)


def test_no_look_ahead() -> None:
    settings = ScoringSettings(commission_readings=10, commission_s=0)
    a = _series(2, 400)
    b = a.copy()
    b[250:] += 100.0  # a different future
    ta, tb = (stream(EwmaLevel(("c0",)), EngineScoring(settings, 1), [s])[0][0] for s in (a, b))
    assert np.array_equal(ta.score[:250], tb.score[:250])
    assert np.array_equal(ta.status[:250], tb.status[:250])
    assert not np.array_equal(ta.score[250:], tb.score[250:])


def test_monotone_times_repair_repeated_and_backward_stamps() -> None:
    got = monotone_ms(np.array([10, 20, 20, 15, 30, 31]))
    assert list(got) == [10, 20, 21, 22, 30, 31]


def test_standardise_online_is_causal_and_standardises() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(loc=500.0, scale=20.0, size=(2000, 2))
    z = standardise_online(x)
    y = x.copy()
    y[1500:] *= 3.0
    assert np.array_equal(z[:1500], standardise_online(y)[:1500])
    assert abs(float(np.mean(z[500:]))) < 0.2
    assert 0.8 < float(np.std(z[500:])) < 1.2


def test_level_and_season_predicts_one_period_back() -> None:
    from service.evaluation.predictors import LevelAndSeason

    period = 10
    x = np.tile(np.arange(period, dtype=np.float64), 5)
    model = LevelAndSeason(period, rate=0.1)
    state = model.zero_state(1)
    preds = []
    for v in x:
        pred, state = model.step(np.array([[v, v]]), state)
        preds.append(pred[0])
    p = np.array(preds)
    # From one period on, the seasonal view predicts the next reading exactly.
    assert np.array_equal(p[period - 1 : -1, 1], x[period:])
    assert state.shape == (1, model.state_size)


def test_level_and_season_profile_averages_past_periods() -> None:
    from service.evaluation.predictors import LevelAndSeason

    period = 4
    rng = np.random.default_rng(8)
    pattern = np.array([0.0, 10.0, 0.0, -10.0])
    x = np.tile(pattern, 200) + rng.normal(scale=1.0, size=800)
    x[400:404] += 50.0  # one odd period
    model = LevelAndSeason(period, rate=0.1, season_rate=0.2)
    state = model.zero_state(1)
    preds = []
    for v in x:
        pred, state = model.step(np.array([[v, v]]), state)
        preds.append(pred[0, 1])
    p = np.array(preds)
    # The seasonal view predicts the pattern, not last period's noise ...
    assert np.abs(p[700:-1] - x[701:] + 0).std() < 1.2 * 1.1
    assert np.abs(p[600:700] - np.roll(pattern, -1)[np.arange(600, 700) % period]).max() < 2.0
    # ... and one odd period moves it by season_rate of the excess, not all of it.
    assert 5.0 < p[403] - np.roll(pattern, -1)[403 % period] < 15.0
    assert state.shape == (1, model.state_size)


def test_range_view_is_zero_inside_the_range_and_measures_the_excess() -> None:
    from service.evaluation.predictors import LevelSeasonAndRange

    model = LevelSeasonAndRange(period=4, rate=0.1, season_rate=0.5, tolerance=0.1, warmup=8)
    x = np.array([0.0, 10.0, 5.0, 2.0] * 5 + [12.0, 10.5, -2.0], dtype=np.float64)
    state = model.zero_state(1)
    pred = None
    residuals = []
    for v in x:
        row = np.full((1, 4), v)
        if pred is not None:
            residuals.append(model.scaled_residual(row, pred)[0])
        pred, state = model.step(row, state)
    r = np.array(residuals)  # r[t - 1] is the residual of reading t
    # Before the warm-up the range channels are 0 whatever the reading.
    assert np.all(r[:7, 2:] == 0.0)
    # Inside the seen range [0, 10] widened by 10 % of it: 0.
    assert np.all(r[7:19, 2:] == 0.0)
    # 12 is 1.0 above the widened top (11) of a widened range 12 wide; then 10.5 is inside
    # the range (now up to 12 + 1.2); -2 is 0.8 below the widened bottom (-1.2).
    assert r[19, 2] == pytest.approx(1.0 / 12.0) and r[19, 3] == 0.0
    assert np.all(r[20, 2:] == 0.0)
    assert r[21, 3] == pytest.approx(0.8 / 14.4) and r[21, 2] == 0.0
    # The level and seasonal channels are those of LevelAndSeason.
    assert model.channels == ("c0", "c1", "c2", "c3")
    assert state.shape == (1, model.state_size) == (1, 5 + 4)


def test_no_look_ahead_with_the_nab_configuration() -> None:
    from service.evaluation.predictors import LevelSeasonAndRange

    settings = ScoringSettings(scorer="likelihood-spikes", commission_readings=10,
                               commission_s=0, hold_readings=1)
    a = np.repeat(_series(4, 400), 4, axis=1)
    b = a.copy()
    b[250:] += 100.0  # a different future, far outside the range seen so far

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = LevelSeasonAndRange(period=24, rate=0.05, season_rate=0.2, tolerance=0.1,
                                    robust=3.0)
        trace = stream(model, EngineScoring(settings, 4, views=True), [x],
                       ts_ms=[T0 + 3_600_000 * np.arange(400)])[0][0]
        return trace.score, trace.status

    (sa, ta), (sb, tb) = run(a), run(b)
    assert np.array_equal(sa[:250], sb[:250]) and np.array_equal(ta[:250], tb[:250])
    assert sb[250] > 1.0 and not np.array_equal(sa[250:], sb[250:])


def test_robust_level_is_not_dragged_by_one_spike() -> None:
    from service.evaluation.predictors import LevelAndSeason

    rng = np.random.default_rng(9)
    x = 10 + rng.normal(scale=0.5, size=600)
    x[300] = 10_000.0  # one huge spike
    for robust, dragged in ((0.0, True), (3.0, False)):
        model = LevelAndSeason(period=24, rate=0.01, robust=robust)
        state = model.zero_state(1)
        levels = []
        for v in x:
            pred, state = model.step(np.array([[v, v]]), state)
            levels.append(pred[0, 0])
        assert (abs(levels[320] - 10.0) > 20.0) == dragged, robust


def test_a_trace_holds_the_readings_and_the_predictions_they_were_scored_against() -> None:
    series = [_series(5, 50), _series(6, 30)]
    ts = [T0 + 1000 * np.arange(len(s)) for s in series]
    ts[0][20:] += 3 * 86_400_000  # a restart: reading 20 has no prediction
    traces, _ = stream(LastValue(("c0",)), EngineScoring(ScoringSettings(), 1), series,
                       ts_ms=ts)
    for s, tr in zip(series, traces, strict=True):
        assert tr.reading is not None and tr.predicted is not None
        assert np.array_equal(tr.reading, s)
        assert np.isnan(tr.predicted[0]).all()
    # the last-value model predicts each reading as the one before it
    p = traces[0].predicted
    assert p is not None and np.isnan(p[20]).all()
    assert np.array_equal(p[1:20], series[0][:19]) and np.array_equal(p[21:], series[0][20:-1])
    assert np.array_equal(traces[1].predicted[1:], series[1][:-1])  # type: ignore[index]
