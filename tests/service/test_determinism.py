"""The streaming step gives every engine bit-identical results whatever else is in the batch.

Exactly-once recovery compares state bit for bit with an uninterrupted run, in which the
same readings arrived in other polls, so batches were composed differently.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.config import DEFAULT_ARTIFACT
from service.model import load_streaming_model


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 9, 33, 500, 4096])
def test_row_results_do_not_depend_on_batch(n: int) -> None:
    model = load_streaming_model(DEFAULT_ARTIFACT)
    rng = np.random.default_rng(n)
    total = 12_000
    x = rng.uniform(0.04, 0.3, (total, len(model.channels)))
    state = rng.normal(0, 0.3, (total, model.state_size)).astype(np.float32)
    y_all, s_all = model.step(x, state)
    pick = rng.choice(total, size=n, replace=False)
    y, s = model.step(x[pick], state[pick])
    assert np.array_equal(y, y_all[pick])
    assert np.array_equal(s, s_all[pick])
