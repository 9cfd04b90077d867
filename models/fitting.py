"""Fitting one network on one split: training windows, the Keras fit, the validation score.

Shared by ``vibewatch train`` (one fit) and ``vibewatch tune`` (one fit per trial). TensorFlow
is imported only when a fit starts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.artifact import series_predictor
from models.data import Series
from models.forecast import Scaler, errors, level_shift_augment, windows
from models.network import import_keras
from models.splits import Split


@dataclass(frozen=True)
class FitSettings:
    """How a network is trained (everything but the architecture and the data)."""

    sequence_length: int = 256
    stride: int = 64
    batch_size: int = 32
    epochs: int = 60
    patience: int = 10
    learning_rate: float = 3e-3
    augment: int = 3
    level_jitter: float = 5.0
    loss: str = "mse"
    huber_delta: float = 0.1
    seed: int = 0
    verbose: int = 0

    def to_json(self) -> dict[str, Any]:
        """The manifest's record of these settings (its ``training`` section)."""
        out = asdict(self)
        out.pop("verbose")
        out.pop("sequence_length")  # recorded at the manifest's top level
        out["augment"] = {"copies": out.pop("augment"), "level_jitter": out.pop("level_jitter")}
        out["epochs_max"] = out.pop("epochs")
        delta = out.pop("huber_delta")
        out["loss"] = self.loss if self.loss == "mse" else f"huber({delta})"
        return out


@dataclass(frozen=True)
class FitResult:
    """What one fit produced besides the weights (which stay in the Keras model)."""

    history: dict[str, list[float]]
    fit_seconds: float
    train_windows: int
    val_windows: int

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    @property
    def best_epoch(self) -> int:
        return int(np.argmin(self.history["val_loss"])) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "train_windows": self.train_windows,
            "val_windows": self.val_windows,
            "fit_seconds": round(self.fit_seconds, 1),
            "history": self.history,
        }


def fit(model: Any, split: Split, scaler: Scaler, settings: FitSettings) -> FitResult:
    """Compile ``model`` and fit it on ``split.train``, early-stopped on ``split.val``.

    Every training window starts from a zero state, as an engine does in the service; the
    best epoch's weights (lowest validation loss) are restored at the end. Raises
    ``ValueError`` when no series is long enough to make a window.
    """
    keras = import_keras()
    s = settings
    x_tr, y_tr, w_tr = windows(split.train, scaler, s.sequence_length, s.stride)
    x_va, y_va, w_va = windows(split.val, scaler, s.sequence_length, s.stride)
    x_tr, y_tr, w_tr = level_shift_augment(x_tr, y_tr, w_tr, s.augment, s.level_jitter, s.seed)
    loss: Any = "mse" if s.loss == "mse" else keras.losses.Huber(s.huber_delta)
    model.compile(optimizer=keras.optimizers.Adam(s.learning_rate, clipnorm=1.0), loss=loss)
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=s.patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, s.patience // 2)
        ),
    ]
    started = time.monotonic()
    history = model.fit(
        x_tr,
        y_tr,
        sample_weight=w_tr,
        validation_data=(x_va, y_va, w_va),
        batch_size=s.batch_size,
        epochs=s.epochs,
        shuffle=True,
        callbacks=callbacks,
        verbose=s.verbose,
    )
    losses = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    return FitResult(losses, time.monotonic() - started, len(x_tr), len(x_va))


def validation_score(model: Any, scaler: Scaler, series: Sequence[Series]) -> float:
    """Next-value RMSE in scaled units, averaged over channels, of ``model`` run over whole
    ``series`` from a zero state (as the service runs an engine).

    Independent of the training-sequence length, so fits with different lengths compare.
    """
    predict = series_predictor(model, scaler, series)
    rmse = np.asarray(errors(series, predict).rmse) / np.asarray(scaler.scale)
    return float(np.mean(rmse))
