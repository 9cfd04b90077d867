"""Each channel's change beside its level, the view in front of SKAB's ``baseline+change``
model (``predictors.with_changes``, ``PredictorSpec.change_rate``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from service.evaluation.predictors import with_changes
from service.evaluation.runs import PredictorSpec, Recording, record


def test_changes_show_a_step_at_once_and_forget_a_level_that_stays() -> None:
    z = np.zeros((300, 1))
    z[100:, 0] = 5.0  # a step that stays
    z[200:, 0] += np.arange(100) * 0.01  # then a slow drift, 0.01 per reading
    out = with_changes(z, 0.1)
    assert out.shape == (300, 2)
    assert np.array_equal(out[:, :1], z)  # the levels are the input
    change = out[:, 1]
    assert np.all(change[:100] == 0.0)
    assert change[100] == 5.0  # the step, at once
    assert abs(change[140]) < 0.1  # gone once the level has been followed (~1/rate)
    # a slow drift settles at about slope / rate, whatever its accumulated level (1.0)
    assert float(np.max(np.abs(change[230:]))) < 0.11


def test_changes_are_causal() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(500, 3))
    y = z.copy()
    y[300:] += 100.0
    a, b = with_changes(z, 0.1), with_changes(y, 0.1)
    assert np.array_equal(a[:300], b[:300])
    assert not np.array_equal(a[300:], b[300:])


def test_a_model_with_changes_records_twice_the_channels() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(50.0, 2.0, size=(600, 2))
    x[450:, 1] += 20.0
    rec = Recording("run", x, 1_700_000_000_000 + 1000 * np.arange(len(x), dtype=np.int64))
    spec = PredictorSpec("ewma", level_rate=0.0, standardise=True, freeze_after=400)
    plain = record(spec, [rec]).residuals[0].values
    both = record(replace(spec, change_rate=0.1),
                  [rec]).residuals[0].values
    assert plain.shape == (600, 2) and both.shape == (600, 4)
    # the level channels are the plain model's residuals, unchanged
    np.testing.assert_array_equal(both[:, :2], plain)
    # the shift stays in the level and fades from the change
    assert both[460, 1] > 5.0 and both[599, 1] > 5.0
    assert both[450, 3] > 5.0 and abs(both[599, 3]) < 3.0
