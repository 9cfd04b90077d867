"""Helpers for the runtime model tests: the shipped default artifact, synthetic readings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "models" / "artifacts"
DEFAULT_ARTIFACT = ARTIFACTS / "default"
IMS_DATA = REPO / "models" / "data" / "ims"

BuildArtifact = Callable[..., Path]


def healthy_readings(rng: np.random.Generator, engines: int, steps: int) -> np.ndarray:
    """Raw (engines, steps, 1) readings like healthy IMS bearings: a level in 0.06-0.13 g,
    a slow drift and small noise, with occasional spikes."""
    level = rng.uniform(0.06, 0.13, size=(engines, 1, 1))
    drift = np.cumsum(rng.normal(0, 2e-4, size=(engines, steps, 1)), axis=1)
    noise = rng.normal(0, 3e-3, size=(engines, steps, 1))
    spikes = (rng.random((engines, steps, 1)) < 0.002) * rng.uniform(0.05, 0.3)
    out: np.ndarray = level + drift + noise + spikes
    return out
