"""The contract every scorer passes (after River's test_estimators): one suite, all scorers.

Higher means more anomalous, bounded in [0, 1], deterministic, constant memory per engine,
score before learn, engines independent of each other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from service.scoring.scorers import (
    AnomalyLikelihood,
    GaussianTail,
    LikelihoodWithSpikes,
    NonparametricThreshold,
    Scorer,
    Thresholded,
)

FACTORIES: dict[str, Callable[[], Scorer]] = {
    "gaussian": lambda: GaussianTail(decay=0.02),
    "likelihood": lambda: AnomalyLikelihood(short=0.3, long=0.01, learning=20),
    "telemanom": lambda: NonparametricThreshold(window=50),
    "likelihood-spikes": lambda: LikelihoodWithSpikes(short=0.05, long=0.01, learning=20),
}


@pytest.fixture(params=sorted(FACTORIES))
def scorer(request: pytest.FixtureRequest) -> Scorer:
    return FACTORIES[request.param]()


def _errors(rng: np.random.Generator, steps: int, n: int) -> np.ndarray:
    """Non-negative, heavy-tailed, per-engine differently scaled errors (steps, n)."""
    scale = np.geomspace(1e-3, 1e3, n)
    return np.abs(rng.standard_t(df=3, size=(steps, n))) * scale


def _learn(scorer: Scorer, xs: np.ndarray) -> np.ndarray:
    state = scorer.init_state(xs.shape[1])
    for x in xs:
        state = scorer.learn_many(x, state)
    return state


def test_bounded_and_finite(scorer: Scorer) -> None:
    rng = np.random.default_rng(0)
    xs = _errors(rng, 300, 6)
    xs[150] *= 1e6
    xs[200] = 0.0
    state = scorer.init_state(6)
    for x in xs:
        s = scorer.score_many(x, state)
        assert s.shape == (6,)
        assert np.all(np.isfinite(s)) and np.all((s >= 0.0) & (s <= 1.0))
        state = scorer.learn_many(x, state)
        assert np.all(np.isfinite(state))


def test_higher_means_more_anomalous(scorer: Scorer) -> None:
    rng = np.random.default_rng(1)
    xs = _errors(rng, 200, 4)
    state = _learn(scorer, xs)
    typical = np.median(xs, axis=0)
    grid = typical[None, :] * np.geomspace(0.5, 1e4, 40)[:, None]
    scores = np.array([scorer.score_many(g, state) for g in grid])
    assert np.all(np.diff(scores, axis=0) >= -1e-12), "score must not fall as the error grows"
    assert np.all(scores[-1] > scores[0])
    assert np.all(scores[-1] > 0.9)


def test_deterministic_and_pure(scorer: Scorer) -> None:
    rng = np.random.default_rng(2)
    xs = _errors(rng, 120, 3)
    a, b = _learn(scorer, xs), _learn(FACTORIES_BY_TYPE[type(scorer)](), xs)
    assert np.array_equal(a, b)
    before = a.copy()
    x = xs[-1] * 3
    s1 = scorer.score_many(x, a)
    s2 = scorer.score_many(x, a)
    scorer.explain_many(x, a, 0.7)
    assert np.array_equal(s1, s2)
    assert np.array_equal(a, before), "scoring must not change the state"


def test_constant_memory(scorer: Scorer) -> None:
    rng = np.random.default_rng(3)
    size = scorer.state_size
    state = scorer.init_state(2)
    assert state.shape == (2, size) and state.dtype == np.float64
    for steps in (10, 1000):
        state = _learn(scorer, _errors(rng, steps, 2))
        assert state.shape == (2, size)
    assert scorer.state_size == size


def test_score_before_learn(scorer: Scorer) -> None:
    rng = np.random.default_rng(4)
    xs = _errors(rng, 150, 2)
    state = _learn(scorer, xs)
    outlier = np.median(xs, axis=0) * 1e3
    first = scorer.score_many(outlier, state)
    learned = scorer.learn_many(outlier, state)
    # Learning is not a no-op: the state moved after seeing the outlier ...
    assert not np.array_equal(learned, state)
    # ... and the score handed out was computed without it.
    assert np.array_equal(first, scorer.score_many(outlier, state))


def test_engines_are_independent(scorer: Scorer) -> None:
    rng = np.random.default_rng(5)
    xs = _errors(rng, 80, 5)
    together = _learn(scorer, xs)
    alone = _learn(scorer, xs[:, [3]])
    assert np.array_equal(together[[3]], alone)
    x = xs[-1] * 10
    assert np.array_equal(scorer.score_many(x, together)[[3]], scorer.score_many(x[[3]], alone))


def test_explain_threshold_matches_score(scorer: Scorer) -> None:
    rng = np.random.default_rng(6)
    xs = _errors(rng, 200, 3)
    state = _learn(scorer, xs)
    level = 0.7
    _, threshold = scorer.explain_many(xs[-1], state, level)
    assert np.all(np.isfinite(threshold))
    # Scores of ever larger inputs cross the level where the stated threshold is crossed.
    value, _ = scorer.explain_many(xs[-1] * 1e4, state, level)
    assert np.all(value > threshold)
    assert np.all(scorer.score_many(xs[-1] * 1e4, state) >= level)


def test_threshold_wraps_a_scorer(scorer: Scorer) -> None:
    rng = np.random.default_rng(7)
    xs = _errors(rng, 150, 2)
    state = _learn(scorer, xs)
    t = Thresholded(scorer, 0.7)
    big = np.median(xs, axis=0) * 1e4
    assert np.array_equal(t.flag_many(big, state), np.ones(2))
    assert np.array_equal(t.flag_many(big, state), (scorer.score_many(big, state) >= 0.7) * 1.0)


FACTORIES_BY_TYPE: dict[type, Callable[[], Scorer]] = {type(f()): f for f in FACTORIES.values()}


def test_step_many_is_score_explain_learn_bit_for_bit(scorer: Scorer) -> None:
    """The one-pass call the service uses returns exactly what the three separate calls do."""
    rng = np.random.default_rng(7)
    xs = _errors(rng, 120, 9)
    state = scorer.init_state(9)
    for x in xs:
        score, value, threshold, learned = scorer.step_many(x, state, 0.42)
        expect_value, expect_threshold = scorer.explain_many(x, state, 0.42)
        for got, want in (
            (score, scorer.score_many(x, state)),
            (value, expect_value),
            (threshold, expect_threshold),
            (learned, scorer.learn_many(x, state)),
        ):
            assert got.tobytes() == np.asarray(want).tobytes()
        state = learned
