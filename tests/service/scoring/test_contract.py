"""The contract every scorer passes (after River's test_estimators): one suite, every
scorer of the registry, built from the settings as the service builds it.

Scorer level: higher means more anomalous and keeps growing (no ceiling), scores are finite
and non-negative, deterministic, constant memory, score before learn, engines independent,
the stated threshold scores the level, held-back readings never move the baseline.
Engine level (the alarm lifecycle, ``EngineScoring`` around each scorer): a persistent fault
is one alarm that never flaps, a second identical fault after a restart from a changelog row
is detected the same way, the score orders engines by severity, and what is learned moves
the baseline by at most the bounded rate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from service.config import ScoringSettings
from service.domain import Status
from service.scoring import STATUS_ORDER, EngineScoring
from service.scoring.registry import SCORERS
from service.scoring.scorers import Scorer, Thresholded
from service.state import EngineStore

#: Short memories so that the suite's few hundred readings exercise every phase.
SETTINGS = ScoringSettings(
    baseline_s=600.0, spike_s=300.0, smoothing=0.3, telemanom_window=50,
    commission_s=0.0, commission_readings=30, clear_s=30.0,
)
def _factory(name: str) -> Callable[[], Scorer]:
    return lambda: SCORERS[name].build(SETTINGS)


FACTORIES: dict[str, Callable[[], Scorer]] = {name: _factory(name) for name in SCORERS}
ALARM = STATUS_ORDER.index(Status.ALARM)
T0 = 1_795_608_000_000


@pytest.fixture(params=sorted(FACTORIES))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def scorer(name: str) -> Scorer:
    return FACTORIES[name]()


def _dt(n: int) -> np.ndarray:
    return np.ones(n)


def _no(n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool)


def _errors(rng: np.random.Generator, steps: int, n: int) -> np.ndarray:
    """Non-negative, heavy-tailed, per-engine differently scaled errors (steps, n)."""
    scale = np.geomspace(1e-3, 1e3, n)
    return np.abs(rng.standard_t(df=3, size=(steps, n))) * scale


def _learn(scorer: Scorer, xs: np.ndarray) -> np.ndarray:
    n = xs.shape[1]
    state = scorer.init_state(n)
    for x in xs:
        state = scorer.learn_many(x, state, _dt(n), ~_no(n), _no(n))
    return state


def test_the_registry_builds_every_scorer_from_the_settings() -> None:
    assert set(SCORERS) == {"likelihood", "likelihood-spikes", "gaussian", "telemanom"}
    for spec in SCORERS.values():
        assert spec.summary and spec.build(ScoringSettings()).state_size > 0


def test_non_negative_and_finite(scorer: Scorer) -> None:
    rng = np.random.default_rng(0)
    xs = _errors(rng, 300, 6)
    xs[150] *= 1e6
    xs[200] = 0.0
    state = scorer.init_state(6)
    for x in xs:
        s = scorer.score_many(x, state, _dt(6))
        assert s.shape == (6,)
        assert np.all(np.isfinite(s)) and np.all(s >= 0.0)
        state = scorer.learn_many(x, state, _dt(6), ~_no(6), _no(6))
        assert np.all(np.isfinite(state))


def test_higher_means_more_anomalous_without_a_ceiling(scorer: Scorer) -> None:
    rng = np.random.default_rng(1)
    xs = _errors(rng, 200, 4)
    state = _learn(scorer, xs)
    typical = np.median(xs, axis=0)
    grid = typical[None, :] * np.geomspace(0.5, 1e4, 40)[:, None]
    scores = np.array([scorer.score_many(g, state, _dt(4)) for g in grid])
    assert np.all(np.diff(scores, axis=0) >= -1e-12), "score must not fall as the error grows"
    # No ceiling: a far worse departure scores strictly higher, so sorting by score puts
    # the worst engine first.
    assert np.all(scores[-1] > scores[-5]) and np.all(scores[-1] > 1.0)


def test_deterministic_and_pure(scorer: Scorer, name: str) -> None:
    rng = np.random.default_rng(2)
    xs = _errors(rng, 120, 3)
    a, b = _learn(scorer, xs), _learn(FACTORIES[name](), xs)
    assert np.array_equal(a, b)
    before = a.copy()
    x = xs[-1] * 3
    s1 = scorer.score_many(x, a, _dt(3))
    s2 = scorer.score_many(x, a, _dt(3))
    scorer.explain_many(x, a, _dt(3), 0.7)
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
    first = scorer.score_many(outlier, state, _dt(2))
    learned = scorer.learn_many(outlier, state, _dt(2), ~_no(2), _no(2))
    # Learning is not a no-op: the state moved after seeing the outlier ...
    assert not np.array_equal(learned, state)
    # ... and the score handed out was computed without it.
    assert np.array_equal(first, scorer.score_many(outlier, state, _dt(2)))


def test_engines_are_independent(scorer: Scorer) -> None:
    rng = np.random.default_rng(5)
    xs = _errors(rng, 80, 5)
    together = _learn(scorer, xs)
    alone = _learn(scorer, xs[:, [3]])
    assert np.array_equal(together[[3]], alone)
    x = xs[-1] * 10
    assert np.array_equal(
        scorer.score_many(x, together, _dt(5))[[3]], scorer.score_many(x[[3]], alone, _dt(1))
    )


def test_explained_threshold_scores_the_level(scorer: Scorer, name: str) -> None:
    rng = np.random.default_rng(6)
    xs = _errors(rng, 200, 3)
    state = _learn(scorer, xs)
    level = 0.7
    dt = np.array([1.0, 60.0, 3600.0])  # the level means the same in time at any rate
    _, threshold = scorer.explain_many(xs[-1], state, dt, level)
    assert np.all(np.isfinite(threshold))
    # Scores of ever larger inputs cross the level where the stated threshold is crossed.
    value, _ = scorer.explain_many(xs[-1] * 1e4, state, dt, level)
    assert np.all(value > threshold)
    assert np.all(scorer.score_many(xs[-1] * 1e4, state, dt) >= level)
    if name == "gaussian":  # the statistic compared is the input itself
        assert np.allclose(scorer.score_many(threshold, state, dt), level, atol=1e-6)


def test_threshold_wraps_a_scorer(scorer: Scorer) -> None:
    rng = np.random.default_rng(7)
    xs = _errors(rng, 150, 2)
    state = _learn(scorer, xs)
    t = Thresholded(scorer, 0.7)
    big = np.median(xs, axis=0) * 1e4
    assert np.array_equal(t.flag_many(big, state, _dt(2)), np.ones(2))
    assert np.array_equal(
        t.flag_many(big, state, _dt(2)), (scorer.score_many(big, state, _dt(2)) >= 0.7) * 1.0
    )


def test_step_many_is_score_explain_learn_bit_for_bit(scorer: Scorer) -> None:
    """The one-pass call the service uses returns exactly what the separate calls do."""
    rng = np.random.default_rng(7)
    xs = _errors(rng, 160, 9)
    state = scorer.init_state(9)
    dt = np.linspace(1.0, 600.0, 9)
    learn_below = np.full(9, 0.3)
    for k, x in enumerate(xs):
        held = (np.arange(9) + k) % 7 == 0  # some engines inside an episode now and then
        score, value, threshold, learned = scorer.step_many(x, state, dt, 0.42, learn_below,
                                                            held)
        expect_value, expect_threshold = scorer.explain_many(x, state, dt, 0.42)
        expect_score = scorer.score_many(x, state, dt)
        for got, want in (
            (score, expect_score),
            (value, expect_value),
            (threshold, expect_threshold),
            (learned, scorer.learn_many(x, state, dt, expect_score < learn_below, held)),
        ):
            assert got.tobytes() == np.asarray(want).tobytes()
        state = learned


def test_held_back_readings_never_move_the_baseline(scorer: Scorer) -> None:
    rng = np.random.default_rng(8)
    xs = _errors(rng, 200, 3)
    state = _learn(scorer, xs)
    probe = np.median(xs, axis=0) * 2
    _, before = scorer.explain_many(probe, state, _dt(3), 0.5)
    fault = np.median(xs, axis=0) * 50
    held = state
    for _ in range(300):  # a long fault: every reading judged anomalous, inside the episode
        held = scorer.learn_many(fault, held, _dt(3), _no(3), ~_no(3))
    # The threshold (what the baseline says is normal) is what it was: nothing was learned.
    # (Short-term averages do follow the fault: they are the statistic, not the baseline.)
    _, after = scorer.explain_many(probe, held, _dt(3), 0.5)
    assert np.array_equal(after, before)


# --- the alarm lifecycle, EngineScoring around every scorer ---------------------------------


def _scoring(name: str, **changes: object) -> EngineScoring:
    return EngineScoring(SETTINGS.model_copy(update={"scorer": name, **changes}), 1)


def _feed(
    scoring: EngineScoring, errors: np.ndarray, state: np.ndarray, start: int = 0,
    step_ms: int = 1000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feed (T, n) errors from reading ``start`` on; (statuses (T, n), scores, new state)."""
    statuses, scores = [], []
    for k, e in enumerate(errors):
        ts = np.full(len(e), T0 + (start + k) * step_ms, dtype=np.int64)
        batch, state = scoring.update(e[:, None], state, ts)
        statuses.append(batch.status)
        scores.append(batch.score)
    return np.array(statuses), np.array(scores), state


def _noise(seed: int, steps: int, n: int = 1) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(1.0, 0.1, size=(steps, n)))


def _raises(status: np.ndarray) -> int:
    prev = np.concatenate([[0], status[:-1]])
    return int(np.sum((status >= ALARM) & (prev < ALARM)))


def test_a_persistent_fault_is_one_alarm_that_never_flaps(name: str) -> None:
    scoring = _scoring(name)
    healthy = _noise(1, 400)
    fault = _noise(2, 1500) + 3.0  # a step to four times the error, for good
    st, _, _ = _feed(scoring, np.concatenate([healthy, fault]), scoring.init_state(1))
    status = st[:, 0]
    assert not np.any(status[:400] >= ALARM)
    assert _raises(status) == 1
    first = int(np.flatnonzero(status >= ALARM)[0])
    assert first - 400 <= 5  # alarmed within a few readings of the onset
    assert np.all(status[first:] == ALARM), "a persistent fault must never clear or flap"


def test_a_second_fault_after_a_restart_is_detected_the_same_way(name: str) -> None:
    scoring = _scoring(name)
    store = EngineStore(window=4, channels=1, model_state_size=1,
                        score_state_size=scoring.state_size)
    init = scoring.init_state(1)[0]
    slot, _ = store.slots_for(["engine-7"], [0], init)
    healthy, fault = _noise(3, 400), _noise(4, 300) + 3.0
    repaired = _noise(5, 300)
    errors = np.concatenate([healthy, fault, repaired])
    st1, _, state = _feed(scoring, errors, store.score_state[slot])
    # Restart: the row goes to the changelog and comes back in a new process's store.
    store.score_state[slot] = state
    row = store.encode_row(int(slot[0]))
    fresh = EngineStore(window=4, channels=1, model_state_size=1,
                        score_state_size=scoring.state_size)
    fresh.restore_row("engine-7", row, init)
    restored = fresh.score_state[[fresh.index["engine-7"]]]
    assert np.array_equal(restored, state)
    st2, _, _ = _feed(scoring, np.concatenate([fault, repaired]), restored, start=len(errors))
    first = int(np.flatnonzero(st1[400:, 0] >= ALARM)[0])
    second = int(np.flatnonzero(st2[:, 0] >= ALARM)[0])
    assert _raises(st1[400:, 0]) == 1 and _raises(st2[:, 0]) == 1
    assert abs(second - first) <= 1, (first, second)


def test_the_worse_engine_scores_higher(name: str) -> None:
    scoring = _scoring(name)
    severities = np.array([1.0, 2.0, 5.0, 36.0])  # healthy, then ever worse faults
    healthy = _noise(6, 400, 4)
    fault = _noise(7, 50, 4) * severities
    _, scores, _ = _feed(scoring, np.concatenate([healthy, fault]), scoring.init_state(4))
    last = scores[-1]
    assert list(np.argsort(-last)) == [3, 2, 1, 0], last
    assert np.all(np.diff(scores[410:].mean(axis=0)) > 0)


def test_learning_is_frozen_in_a_fault(name: str) -> None:
    scoring = _scoring(name)
    _, _, state = _feed(scoring, _noise(8, 400), scoring.init_state(1))
    probe = np.array([[1.0]])
    ts = np.array([T0 + 10**9], dtype=np.int64)
    before = scoring.update(probe, state, ts)[0].threshold
    # A long fault: nothing of the baseline moves however long it lasts, so the threshold
    # the engine is measured against afterwards is the one it had.
    _, _, in_fault = _feed(scoring, _noise(9, 500) + 5.0, state, start=400)
    s0, s1 = 6, 6 + scoring.scorer.state_size  # the scorer's columns in the engine's row
    after = scoring.update(probe, in_fault, ts)[0].threshold
    assert np.array_equal(after, before)
    assert np.isfinite(in_fault[0, s0:s1]).all()


@pytest.mark.parametrize("ewma_name", [n for n in sorted(SCORERS) if n != "telemanom"])
def test_learning_moves_the_baseline_at_a_bounded_rate(ewma_name: str) -> None:
    """Outside a fault each learned reading moves the baseline's mean by at most
    ``max(1 - exp(-interval/baseline_s), 1/(learned + 1))`` of its distance (telemanom's
    ring has no rate: it replaces its oldest value)."""
    scoring = _scoring(ewma_name)
    s0 = 6
    mean_col = s0 + 2 if ewma_name.startswith("likelihood") else s0 + 1
    _, _, state = _feed(scoring, _noise(8, 400), scoring.init_state(1))
    rng = np.random.default_rng(10)
    moved_any = False
    for k in range(200):
        e = np.abs(rng.normal(1.0, 0.1, size=(1, 1)))
        ts = np.array([T0 + (400 + k) * 1000], dtype=np.int64)
        batch, new = scoring.update(e, state, ts)
        learned = state[0, s0]
        rate = max(1 - np.exp(-1.0 / SETTINGS.baseline_s), 1.0 / (learned + 1.0))
        moved = abs(new[0, mean_col] - state[0, mean_col])
        assert moved <= rate * abs(batch.error[0] - state[0, mean_col]) + 1e-12
        moved_any |= moved > 0
        state = new
    assert moved_any, "normal readings must be learned"
