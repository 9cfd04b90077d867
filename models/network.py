"""The Keras network: a stack of LSTM or GRU layers and a dense next-step head.

Imports Keras inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

CELLS = ("lstm", "gru")


@dataclass(frozen=True)
class ArchitectureConfig:
    """What the trainer builds. ``residual``: the head predicts the change from the current
    reading (output = input + head(h)), which makes the model level-invariant."""

    cell: str = "lstm"
    units: int = 64
    layers: int = 1
    dropout: float = 0.0
    residual: bool = True

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; known: {CELLS}")
        if self.units < 1 or self.layers < 1 or not 0 <= self.dropout < 1:
            raise ValueError("units and layers must be >= 1 and dropout in [0, 1)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter; call before importing it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (reproducible runs)."""
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(n_channels: int, arch: ArchitectureConfig) -> Any:
    """A functional model (batch, time, C) -> (batch, time, C) predicting the next reading."""
    quiet_tensorflow()
    import keras

    inputs = keras.Input(shape=(None, n_channels), name="readings")
    h = inputs
    layer_cls = keras.layers.LSTM if arch.cell == "lstm" else keras.layers.GRU
    for k in range(arch.layers):
        h = layer_cls(
            arch.units,
            return_sequences=True,
            dropout=arch.dropout if k > 0 else 0.0,
            name=f"{arch.cell}_{k + 1}",
        )(h)
    out = keras.layers.Dense(n_channels, name="head")(h)
    if arch.residual:
        out = keras.layers.Add(name="next_reading")([inputs, out])
    return keras.Model(inputs, out, name=f"vibewatch_{arch.cell}")
