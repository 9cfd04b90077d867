"""Joint scoring of several channels (``channel_reduce = "joint"``) and its attribution."""

from __future__ import annotations

import numpy as np
import pytest

from service.config import ScoringSettings
from service.scoring import STATUS_ORDER, EngineScoring
from service.scoring.whitening import ResidualWhitening, shares

from .test_engine import ALARM, QUICK, _run

JOINT = QUICK.model_copy(update={"channel_reduce": "joint"})


def _correlated(rng: np.random.Generator, t: int, n_ch: int) -> np.ndarray:
    """(t, 1, n_ch) residuals: channels 0 and 1 move together (one shared cause), the
    others are independent noise of very different sizes."""
    common = rng.normal(size=t)
    res = rng.normal(scale=0.05, size=(t, n_ch))
    res[:, 0] += common
    res[:, 1] += common
    res[:, 2:] *= np.geomspace(1.0, 100.0, n_ch - 2)
    return res[:, None, :]


def test_whitened_error_is_the_mahalanobis_distance() -> None:
    rng = np.random.default_rng(0)
    wh = ResidualWhitening(3, shrinkage=0.0)
    state = wh.init_state(1)
    cov_true = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 4.0]])
    x = rng.multivariate_normal(np.array([1.0, 0.0, -1.0]), cov_true, 5000)
    for r in x:
        terms = wh.whiten(r[None, :], state)[1]
        state = wh.learn(r[None, :], terms, state, np.array([1 / (state[0, 0] + 1)]),
                         np.array([True]), np.array([False]))
    mean, cov = x.mean(axis=0), np.cov(x.T, bias=True)
    assert np.allclose(state[0, 1:4], mean)
    probe = np.array([[2.0, -1.0, 0.5]])
    w = probe[0] - mean
    s = wh.covariance(state)[0]
    error, terms = wh.whiten(probe, state)
    assert error[0] == pytest.approx(np.sqrt(w @ np.linalg.solve(s, w) / 3))
    p = np.linalg.inv(s)  # reconstruction-based contributions: (P w)_i^2 / P_ii
    assert np.allclose(terms[0], (p @ w) ** 2 / np.diag(p))
    assert np.allclose(s, cov, rtol=0.01, atol=1e-3)  # shrinkage 3/5001, floor 1e-3 of mean


def test_shares_rows_sum_to_one_and_a_zero_row_is_even() -> None:
    out = shares(np.array([[1.0, 3.0, -2.0], [0.0, 0.0, 0.0]]))
    assert np.allclose(out, [[0.25, 0.75, 0.0], [1 / 3, 1 / 3, 1 / 3]])


def test_joint_alarms_on_a_broken_correlation_and_names_the_channels() -> None:
    """Two channels that always move together part ways: each stays within its own usual
    range (the RMS and the per-channel scores see nothing), the joint score alarms and names
    them."""
    rng = np.random.default_rng(1)
    res = _correlated(rng, 700, 6)
    res[600:, 0, 0] += 1.5  # break: 0 goes up while 1 follows the common cause alone
    res[600:, 0, 1] -= 1.5
    joint = EngineScoring(JOINT, n_channels=6)
    assert joint.state_size == 6 + joint.scorer.state_size + 5 + 1 + 6 + 36 + 36 + 6 + 1
    batches, _ = _run(joint, res)
    assert all(b.status[0] != ALARM for b in batches[:600]), "no false alarm before"
    first = next(i for i, b in enumerate(batches) if b.status[0] == ALARM)
    assert 600 <= first < 610
    top2 = set(np.argsort(batches[first].contributions[0])[-2:])
    assert top2 == {0, 1}
    assert batches[first].contributions[0, :2].sum() > 0.8
    for by in ("rms", "max"):
        other = EngineScoring(QUICK.model_copy(update={"channel_reduce": by}), n_channels=6)
        ob, _ = _run(other, res)
        assert all(b.status[0] != ALARM for b in ob[600:]), by


def test_joint_commissioning_fits_covariance_before_the_error_baseline() -> None:
    """The rough first covariance estimates are not learned into the error baseline: a
    normal reading right after commissioning scores low."""
    rng = np.random.default_rng(2)
    settings = JOINT.model_copy(update={"commission_readings": 60})
    joint = EngineScoring(settings, n_channels=8)
    batches, _ = _run(joint, _correlated(rng, 400, 8))
    status = [STATUS_ORDER[b.status[0]].value for b in batches]
    assert status[:59] == ["warmup"] * 59 and "alarm" not in status
    assert max(b.score[0] for b in batches[60:]) < 0.3


def test_joint_does_not_learn_a_fault() -> None:
    rng = np.random.default_rng(3)
    res = _correlated(rng, 3000, 4)
    res[500:, 0, 3] += 300.0  # the loudest channel shifts far out of its range, for good
    joint = EngineScoring(JOINT, n_channels=4)
    batches, _ = _run(joint, res)
    assert all(b.status[0] == ALARM for b in batches[505:])
    assert np.argmax(batches[-1].contributions[0]) == 3


def test_joint_non_finite_residual_scores_one_and_is_not_learned() -> None:
    """While commissioning (when the residual distribution learns), a non-finite residual
    scores 1.0 and leaves the engine's distribution as it was; a finite one is learned."""
    joint = EngineScoring(JOINT.model_copy(update={"commission_readings": 200}), n_channels=3)
    rng = np.random.default_rng(4)
    # 103 readings: the next, the 104th, is one whose inverse is recomputed (every 8th)
    _, state = _run(joint, rng.normal(size=(103, 2, 3)))
    ts = np.full(2, 1_795_608_000_000 + 10**6, dtype=np.int64)
    batch, new = joint.update(np.array([[np.nan, 0.0, 0.0], [0.1, 0.2, 0.3]]), state, ts)
    assert batch.score[0] == 1.0
    assert np.all(np.isfinite(new))
    s2 = joint.state_size - joint.whitening.state_size  # type: ignore[union-attr]
    learned = slice(s2, s2 + 1 + 3 + 9)  # count, mean, covariance (not the inverse, terms)
    assert np.array_equal(new[0, learned], state[0, learned])
    assert not np.array_equal(new[1, learned], state[1, learned])


def test_joint_distribution_is_frozen_after_commissioning() -> None:
    """After commissioning the residual distribution does not move (a slow drift must not
    creep into it); its inverse is the final estimate's; a re-baseline fits it again."""
    joint = EngineScoring(JOINT, n_channels=3)
    wh = joint.whitening
    assert wh is not None
    s2 = joint.state_size - wh.state_size
    rng = np.random.default_rng(8)
    _, state = _run(joint, rng.normal(size=(31, 1, 3)))  # commissioning ends at 30
    frozen = state[0, s2 : s2 + wh.state_size - 4].copy()  # all but terms and episode
    assert np.allclose(wh.covariance(state[:, s2:])[0] @ frozen[1 + 3 + 9 :].reshape(3, 3),
                       np.eye(3))
    drift = rng.normal(size=(300, 1, 3)) + np.linspace(0, 1, 300)[:, None, None]
    drift[200:] += 5.0  # and then a step
    batches, after = _run(joint, drift, state=state, start=31)
    assert np.array_equal(after[0, s2 : s2 + wh.state_size - 4], frozen)
    assert all(b.status[0] == ALARM for b in batches[210:])
    fresh = joint.rebaseline(after)
    assert fresh[0, s2] == 0.0  # nothing learned: commissioning starts again


def test_one_channel_joint_matches_the_scale_free_rms() -> None:
    """With one channel the joint error is |r - mean| / std: alarms like rms on a shift."""
    rng = np.random.default_rng(5)
    res = rng.normal(scale=0.1, size=(400, 1, 1))
    res[300:] += 1.0
    for settings in (JOINT, ScoringSettings(**{**QUICK.model_dump(), "channel_reduce": "rms"})):
        batches, _ = _run(EngineScoring(settings, n_channels=1), res)
        assert batches[-1].status[0] == ALARM
        assert np.all(batches[-1].contributions == 1.0)
