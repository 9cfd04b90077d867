"""Streaming recorded series through the service's processor: same numbers, no look-ahead."""

from __future__ import annotations

import numpy as np
import pytest

from service.evaluation.predictors import EwmaLevel, LastValue, standardise_online
from service.evaluation.stream import stream
from service.scoring import EngineScoring
from service.scoring.params import ScoringParams


def _series(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=n)) + 10.0
    x[n // 2 : n // 2 + 5] += 30.0
    return x[:, None]


def test_processor_path_equals_direct_scoring_of_residuals() -> None:
    params = ScoringParams(warmup_readings=10)
    series = [_series(0, 300), _series(1, 200)]
    traces = stream(LastValue(("c0",)), EngineScoring(params, 1), series)
    # Direct: with the last-value predictor, residual t is x[t] - x[t-1], scored from t=1.
    for s, tr in zip(series, traces, strict=True):
        scoring = EngineScoring(params, 1)
        state = scoring.init_state(1)
        assert tr.score[0] == 0.0 and tr.status[0] == 0
        for t in range(1, len(s)):
            batch, state = scoring.update((s[t] - s[t - 1])[None, :], state)
            assert tr.score[t] == batch.score[0]
            assert tr.status[t] == batch.status[0]


def test_no_look_ahead() -> None:
    params = ScoringParams(warmup_readings=10)
    a = _series(2, 400)
    b = a.copy()
    b[250:] += 100.0  # a different future
    ta, tb = (stream(EwmaLevel(("c0",)), EngineScoring(params, 1), [s])[0] for s in (a, b))
    assert np.array_equal(ta.score[:250], tb.score[:250])
    assert np.array_equal(ta.status[:250], tb.status[:250])
    assert not np.array_equal(ta.score[250:], tb.score[250:])


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
    assert state.shape == (1, model.state_size) == (1, 4 + 4)


def test_no_look_ahead_with_the_nab_configuration() -> None:
    from service.evaluation.predictors import LevelSeasonAndRange

    params = ScoringParams(
        scorer="likelihood-spikes",
        warmup_readings=10,
        hold_readings=1,
        clear_readings=10,
        incident_readings=50,
        incident_score=0.4,
        channel_reduce="max",
    )
    a = np.repeat(_series(4, 400), 4, axis=1)
    b = a.copy()
    b[250:] += 100.0  # a different future, far outside the range seen so far

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = LevelSeasonAndRange(period=24, rate=0.05, season_rate=0.2, tolerance=0.1)
        trace = stream(model, EngineScoring(params, 4), [x])[0]
        return trace.score, trace.status

    (sa, ta), (sb, tb) = run(a), run(b)
    assert np.array_equal(sa[:250], sb[:250]) and np.array_equal(ta[:250], tb[:250])
    assert sb[250] == 1.0 and not np.array_equal(sa[250:], sb[250:])
