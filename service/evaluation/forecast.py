"""``vibewatch evaluate forecast`` on the NumPy streaming kernel: no TensorFlow needed.

The report is :mod:`models.evaluate`'s (held-out engines, naive baselines, the same table);
only the model runs differently: the artifact's weights in the kernel the service uses,
which the artifact's probe check holds to the Keras model's outputs at load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models import evaluate as forecast
from service.model import StreamingModel, load_streaming_model


class KernelPredictor:
    """Keras' ``predict`` over whole scaled sequences, computed step by step in NumPy."""

    def __init__(self, model: StreamingModel) -> None:
        self.model = model

    def predict(self, z: np.ndarray, batch_size: int = 256, verbose: int = 0) -> np.ndarray:
        """Scaled (n, T, C) inputs to scaled (n, T, C) next-step predictions."""
        preds, _ = self.model.run(self.model.unscale(z))
        out: np.ndarray = self.model.scale(preds)
        return out


def load(artifact: Path) -> KernelPredictor:
    """The artifact's weights in the NumPy kernel (ArtifactError when unusable)."""
    return KernelPredictor(load_streaming_model(artifact))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    forecast.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return forecast.run(args, load_model=load)
