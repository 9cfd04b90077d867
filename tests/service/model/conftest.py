"""Fixtures for the runtime model tests: small artifacts built by the trainer's writer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.service.model.helpers import BuildArtifact


@pytest.fixture(scope="session")
def build_artifact(tmp_path_factory: pytest.TempPathFactory) -> BuildArtifact:
    """Build an artifact with an untrained network of the given architecture (random
    weights, seeded) through the trainer's own writer; returns its directory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.artifact import write_artifact
    from models.data import Series
    from models.forecast import Scaler
    from models.network import ArchitectureConfig, build_model, seed_everything

    def build(
        cell: str = "lstm",
        units: int = 16,
        layers: int = 1,
        channels: int = 1,
        seed: int = 0,
        conv_kernel: int = 0,
        conv_filters: int = 6,
        conv_activation: str = "relu",
    ) -> Path:
        out = tmp_path_factory.mktemp(f"{cell}{units}x{layers}c{channels}k{conv_kernel}")
        seed_everything(seed)
        arch = ArchitectureConfig(
            cell=cell,
            units=units,
            layers=layers,
            conv_kernel=conv_kernel,
            conv_filters=conv_filters,
            conv_activation=conv_activation,
        )
        model = build_model(channels, arch)
        rng = np.random.default_rng(seed)
        names = tuple(f"ch{k}" for k in range(channels))
        values = rng.normal(1.0, 0.5, size=(200, channels)) * np.arange(1, channels + 1)
        series = Series("e1", "synthetic", names, values)
        scaler = Scaler.fit([series])
        write_artifact(
            out,
            model,
            name="test",
            channels=names,
            units=("g",) * channels,
            scaler=scaler,
            sequence_length=32,
            arch=arch,
            extra={},
        )
        return out

    return build
