"""Small in-memory fakes for unit tests (never used by the running service)."""

from __future__ import annotations

import numpy as np

from service.state import F32, F64


class FakeStepModel:
    """A tiny deterministic recurrent model with the StreamingModel interface.

    State per engine is an exponential average of its inputs; the prediction of the next
    reading is that average. Scaling is the identity.
    """

    def __init__(self, channels: tuple[str, ...] = ("vibration",), alpha: float = 0.5,
                 version: str = "fake-1") -> None:
        self._channels = channels
        self.alpha = alpha
        self._version = version

    @property
    def version(self) -> str:
        return self._version

    @property
    def channels(self) -> tuple[str, ...]:
        return self._channels

    @property
    def state_size(self) -> int:
        return len(self._channels)

    def zero_state(self, n: int) -> F32:
        return np.zeros((n, self.state_size), dtype=np.float32)

    def step(self, x: F64, state: F32) -> tuple[F64, F32]:
        new = ((1 - self.alpha) * state + self.alpha * x).astype(np.float32)
        return new.astype(np.float64), new

    def scaled_residual(self, actual: F64, predicted: F64) -> F64:
        out: F64 = np.asarray(actual, dtype=np.float64) - predicted
        return out
