"""A runtime with the fake model, fed four engines (one wearing) without Kafka."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.config import load_settings
from service.domain import Reading
from service.runtime import Runtime
from service.testing import FakeStepModel

T0 = 1_795_608_000_000
TOKEN = "s3cret-token"


def fed_runtime(artifact_dir: Path) -> Runtime:
    """60 readings for engine-0..3; engine-2 wears from reading 41 on."""
    (artifact_dir / "model_card.md").write_text("# Card\n\nA fake model for tests.\n")
    settings = load_settings(
        api={"token": TOKEN}, model={"artifact_dir": artifact_dir},
        scoring={"commission_readings": 20, "commission_s": 0}, state={"window": 16},
    )
    rt = Runtime(settings, model=FakeStepModel())
    rng = np.random.default_rng(0)
    for k in range(60):
        wear = 0.2 * (k - 40) ** 2 if k > 40 else 0.0
        readings = [
            Reading(f"engine-{i}", T0 + 1000 * k,
                    {"vibration": 1.0 + rng.normal(0, 0.01) + (wear if i == 2 else 0.0)})
            for i in range(4)
        ]
        # What the anomalies topic would give back once committed.
        rt.event_index.add(rt.processor.process(readings, [0] * 4).events)
    return rt
