"""The simulator's fleet: healthy engines untouched by faults, each fault kind as documented."""

from __future__ import annotations

import numpy as np
import pytest

from service.simulator import BURST_EVERY, STEP_GAIN, Fault, Fleet

TICKS = 8_000


def _values(faults: list[Fault], engines: int = 4, ticks: int = TICKS) -> np.ndarray:
    fleet = Fleet(engines, seed=3, faults=faults)
    return np.stack([fleet.next_values() for _ in range(ticks)])


@pytest.fixture(scope="module")
def healthy() -> np.ndarray:
    return _values([])


@pytest.mark.parametrize(("text", "expected"), [
    ("engine-0003:wear@500", Fault("engine-0003", "wear", 500)),
    ("engine-0003:step", Fault("engine-0003", "step", 300)),
    ("engine-0003:spike@10", Fault("engine-0003", "spike", 10)),
    ("engine-0004:step@300+600", Fault("engine-0004", "step", 300, 600)),
    ("e.1:intermittent@0", Fault("e.1", "intermittent", 0)),
])
def test_parse(text: str, expected: Fault) -> None:
    assert Fault.parse(text, default_onset=300) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("engine-0003:melt@5", "unknown fault kind 'melt'"),
    ("engine-0003", "is not ENGINE:KIND"),
    ("engine-0003:step@5+0", "at least 1 reading"),
    ("engine-0003:step@-5", "is not ENGINE:KIND"),
])
def test_parse_refuses_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Fault.parse(text, default_onset=300)


def test_unknown_kind_in_code_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fleet(2, faults=[Fault("engine-0001", "melt", 5)])


def test_faults_never_change_the_healthy_engines(healthy: np.ndarray) -> None:
    faults = [Fault("engine-0001", "wear", 100), Fault("engine-0002", "intermittent", 50),
              Fault("engine-0003", "step", 70, 100)]
    values = _values(faults)
    np.testing.assert_array_equal(values[:, 0], healthy[:, 0])
    for k in (1, 2, 3):  # before its onset every faulty engine reads as healthy
        onset = faults[k - 1].onset
        np.testing.assert_array_equal(values[:onset, k], healthy[:onset, k])


def test_step_multiplies_the_level_until_repaired(healthy: np.ndarray) -> None:
    values = _values([Fault("engine-0002", "step", 1000, 500)])
    ratio = values[:, 2] / healthy[:, 2]
    np.testing.assert_allclose(ratio[1000:1500], STEP_GAIN)
    np.testing.assert_allclose(ratio[:1000], 1.0)
    np.testing.assert_allclose(ratio[1500:], 1.0)


def test_spike_is_the_former_name_of_step() -> None:
    a = _values([Fault("engine-0001", "spike", 100)], ticks=300)
    b = _values([Fault("engine-0001", "step", 100)], ticks=300)
    np.testing.assert_array_equal(a, b)


def test_wear_rises_quadratically(healthy: np.ndarray) -> None:
    values = _values([Fault("engine-0001", "wear", 1000)])
    level_ratio = values[:, 1] / healthy[:, 1]
    # the noise grows too, so compare averages over a stretch around 400 readings in:
    # (400 / 200)^2 = 4, the level five times the healthy one
    assert 4.0 < np.median(level_ratio[1380:1420]) < 6.0
    assert np.median(level_ratio[1080:1120]) < 1.5
    # rising while the noise (3x the rise) still leaves the level readable
    assert np.all(np.diff([np.median(level_ratio[s:s + 100]) for s in range(1000, 1700, 100)])
                  > 0)


def test_intermittent_bursts(healthy: np.ndarray) -> None:
    values = _values([Fault("engine-0003", "intermittent", 500)])
    ratio = values[:, 3] / healthy[:, 3]
    np.testing.assert_allclose(ratio[:500], 1.0)
    after = ratio[500:]
    bursting = ~np.isclose(after, 1.0)
    assert np.all((after[bursting] >= 3.0 - 1e-9) & (after[bursting] <= 6.0 + 1e-9))
    # runs of burst readings: 1-4 readings long (two bursts can touch), about one start
    # every BURST_EVERY readings between bursts
    edges = np.diff(np.concatenate([[0], bursting.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    assert np.all(ends - starts >= 1)
    expected = (TICKS - 500) / (BURST_EVERY + 2.5)
    assert 0.6 * expected < len(starts) < 1.4 * expected
    assert bursting.mean() < 0.1  # mostly healthy between bursts


def test_intermittent_is_seeded() -> None:
    faults = [Fault("engine-0001", "intermittent", 10)]
    np.testing.assert_array_equal(_values(faults, ticks=2000), _values(faults, ticks=2000))
