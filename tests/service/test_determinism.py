"""The streaming step gives every engine bit-identical results whatever else is in the batch.

Exactly-once recovery compares state bit for bit with an uninterrupted run, in which the
same readings arrived in other polls, so batches were composed differently. BLAS rounding
can depend on a row's position and memory alignment, so rows are taken at many offsets.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.config import DEFAULT_ARTIFACT
from service.model import load_streaming_model


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 500])
def test_row_results_do_not_depend_on_batch(n: int) -> None:
    model = load_streaming_model(DEFAULT_ARTIFACT)
    rng = np.random.default_rng(n)
    total = 4096
    x = rng.uniform(0.04, 0.3, (total, len(model.channels)))
    state = rng.normal(0, 0.3, (total, model.state_size)).astype(np.float32)
    y_all, s_all = model.step(x, state)
    for offset in range(0, 24):
        y, s = model.step(x[offset : offset + n], state[offset : offset + n])
        assert np.array_equal(y, y_all[offset : offset + n]), offset
        assert np.array_equal(s, s_all[offset : offset + n]), offset
    pick = rng.choice(total, size=n, replace=False)
    y, s = model.step(x[pick], state[pick])
    assert np.array_equal(y, y_all[pick]) and np.array_equal(s, s_all[pick])
