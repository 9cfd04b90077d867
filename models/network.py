"""The Keras network: an optional causal convolution, a stack of LSTM or GRU layers and a
dense next-step head.

Imports TensorFlow and Keras inside functions (through :func:`import_keras`) so that importing
this module stays cheap and TensorFlow's own start-up noise is kept off the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

CELLS = ("lstm", "gru")
#: Activations of the convolutional front-end (the streaming kernel implements these).
CONV_ACTIVATIONS = ("linear", "relu", "tanh")


@dataclass(frozen=True)
class ArchitectureConfig:
    """What the trainer builds. ``residual``: the head predicts the change from the current
    reading (output = input + head(h)), which makes the model level-invariant.

    ``conv_kernel`` > 0 puts a causal ``Conv1D(conv_filters, conv_kernel)`` in front of the
    recurrent stack: each step's recurrent input is a learned filter over the last
    ``conv_kernel`` readings (zeros, i.e. the training mean, before the first ones).
    """

    cell: str = "lstm"
    units: int = 64
    layers: int = 1
    dropout: float = 0.0
    residual: bool = True
    conv_kernel: int = 0
    conv_filters: int = 16
    conv_activation: str = "relu"

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; known: {CELLS}")
        if self.units < 1 or self.layers < 1 or not 0 <= self.dropout < 1:
            raise ValueError("units and layers must be >= 1 and dropout in [0, 1)")
        if self.conv_kernel < 0 or self.conv_filters < 1:
            raise ValueError("conv kernel must be >= 0 (0 = none) and conv filters >= 1")
        if self.conv_activation not in CONV_ACTIVATIONS:
            raise ValueError(
                f"unknown conv activation {self.conv_activation!r}; known: {CONV_ACTIVATIONS}"
            )

    @property
    def label(self) -> str:
        """Short name used in versions, e.g. ``lstm64x1`` or ``conv5-gru32x2``."""
        core = f"{self.cell}{self.units}x{self.layers}"
        return f"conv{self.conv_kernel}-{core}" if self.conv_kernel else core

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        conv = {
            "kernel_size": out.pop("conv_kernel"),
            "filters": out.pop("conv_filters"),
            "activation": out.pop("conv_activation"),
        }
        out["conv"] = conv if self.conv_kernel else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArchitectureConfig:
        """The inverse of :meth:`to_json` (manifests written before ``conv`` existed read as
        no convolution)."""
        conv = data.get("conv") or {}
        return cls(
            cell=data["cell"],
            units=int(data["units"]),
            layers=int(data["layers"]),
            dropout=float(data.get("dropout", 0.0)),
            residual=bool(data.get("residual", False)),
            conv_kernel=int(conv.get("kernel_size", 0)),
            conv_filters=int(conv.get("filters", 16)),
            conv_activation=str(conv.get("activation", "relu")),
        )


@contextlib.contextmanager
def _stderr_closed() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block.

    TensorFlow's native libraries write through absl before its logging is initialised
    ("All log messages before absl::InitializeLog() ...", oneDNN and CUDA-stub notices);
    TF_CPP_MIN_LOG_LEVEL does not reach those, only the descriptor does.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras() -> Any:
    """Import TensorFlow and Keras and return the ``keras`` module. Called wherever models/
    first needs either.

    Unless the root logger is at DEBUG (``vibewatch --log-level DEBUG``), TensorFlow's own
    logging is kept quiet: its native start-up notices, ``failed call to cuInit`` on a machine
    without a GPU and graph-rewrite (NodeDef) warnings say nothing actionable to someone
    training on a CPU. An explicit ``TF_CPP_MIN_LOG_LEVEL`` in the environment is respected.
    """
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    quiet = logging.getLogger().getEffectiveLevel() > logging.DEBUG
    if not quiet:
        import keras
        import tensorflow  # noqa: F401

        return keras
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_closed():
        import keras
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    return keras


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (reproducible runs)."""
    keras = import_keras()
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(n_channels: int, arch: ArchitectureConfig) -> Any:
    """A functional model (batch, time, C) -> (batch, time, C) predicting the next reading."""
    keras = import_keras()
    inputs = keras.Input(shape=(None, n_channels), name="readings")
    h = inputs
    if arch.conv_kernel:
        h = keras.layers.Conv1D(
            arch.conv_filters,
            arch.conv_kernel,
            padding="causal",
            activation=arch.conv_activation,
            name="conv",
        )(h)
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
