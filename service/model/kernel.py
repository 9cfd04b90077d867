"""The batched one-step recurrent update, in NumPy.

One call advances every engine in the batch by one reading: O(layers * units^2) per engine
(plus O(k * C * filters) for a convolutional front-end), independent of how many readings the
engine has seen. The arithmetic follows Keras 3's causal Conv1D and its LSTM and GRU
(reset_after) cells in float32, so it reproduces the Keras model to ~1e-6.
"""

from __future__ import annotations

import numpy as np

from service.model.weights import CellWeights, ConvWeights, NetworkWeights


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warnings for large |x|, same value as 1 / (1 + exp(-x)).
    out: np.ndarray = 0.5 + 0.5 * np.tanh(0.5 * x)
    return out


class _Layer:
    """One recurrent layer with its input and recurrent kernels stacked for one matmul."""

    def __init__(self, weights: CellWeights) -> None:
        self.cell = weights.cell
        self.units = weights.units
        self.state_size = 2 * weights.units if weights.cell == "lstm" else weights.units
        if weights.cell == "lstm":
            self.stacked = np.concatenate([weights.kernel, weights.recurrent], axis=0)
            self.bias = weights.bias.astype(np.float32)
        else:
            self.kernel = weights.kernel
            self.recurrent = weights.recurrent
            self.input_bias = weights.bias[0]
            self.recurrent_bias = weights.bias[1]

    def step(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance ``state`` (n, state_size) by input ``x`` (n, in); return (h, new_state)."""
        u = self.units
        if self.cell == "lstm":
            h, c = state[:, :u], state[:, u:]
            z = np.concatenate([x, h], axis=1) @ self.stacked
            z += self.bias
            i = _sigmoid(z[:, :u])
            f = _sigmoid(z[:, u : 2 * u])
            g = np.tanh(z[:, 2 * u : 3 * u])
            o = _sigmoid(z[:, 3 * u :])
            c_new = f * c + i * g
            h_new = o * np.tanh(c_new)
            return h_new, np.concatenate([h_new, c_new], axis=1)
        h = state
        mx = x @ self.kernel + self.input_bias
        mh = h @ self.recurrent + self.recurrent_bias
        zg = _sigmoid(mx[:, :u] + mh[:, :u])
        r = _sigmoid(mx[:, u : 2 * u] + mh[:, u : 2 * u])
        hh = np.tanh(mx[:, 2 * u :] + r * mh[:, 2 * u :])
        h_new = zg * h + (1.0 - zg) * hh
        return h_new, h_new


class _Conv:
    """A causal convolution over the last ``size`` readings, run one reading at a time.

    Its memory is the ``size - 1`` readings before the current one (scaled units, oldest
    first), kept in the engine's state vector; zeros before an engine's first readings are
    exactly Keras's causal zero padding.
    """

    def __init__(self, weights: ConvWeights, channels: int) -> None:
        self.size = weights.size
        self.channels = channels
        self.state_size = (weights.size - 1) * channels
        # (k, C, F) -> (k * C, F): row j * C + c multiplies reading t - k + 1 + j, channel c.
        self.kernel = np.ascontiguousarray(weights.kernel.reshape(-1, weights.filters))
        self.bias = weights.bias
        self.activation = weights.activation

    def step(self, x: np.ndarray, buffer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x`` (n, C), ``buffer`` (n, state_size): return (features (n, F), new buffer)."""
        window = np.concatenate([buffer, x], axis=1)  # (n, k * C), oldest reading first
        z = window @ self.kernel
        z += self.bias
        if self.activation == "relu":
            z = np.maximum(z, 0.0)
        elif self.activation == "tanh":
            z = np.tanh(z)
        return z, window[:, self.channels :]


#: Smallest batch the matrix products see; see :meth:`Kernel.step`.
MIN_ROWS = 8


class Kernel:
    """The network in scaled units: ``step(x_scaled, state) -> (y_scaled, new_state)``.

    The state of one engine is every layer's state concatenated in layer order (for an LSTM
    layer ``h`` then ``c``, for a GRU layer ``h``), then, with a convolutional front-end of
    kernel size k, the k - 1 previous readings in scaled units (oldest first, C floats each):
    ``state_size`` floats in all. Zeros are the state of an engine that has seen nothing.
    """

    def __init__(self, weights: NetworkWeights) -> None:
        self.input_size = weights.input_size
        self.conv = None if weights.conv is None else _Conv(weights.conv, weights.input_size)
        self.layers = tuple(_Layer(c) for c in weights.cells)
        self.head_kernel = weights.head_kernel
        self.head_bias = weights.head_bias
        self.residual = weights.residual
        bounds = [0]
        for layer in self.layers:
            bounds.append(bounds[-1] + layer.state_size)
        self._bounds = bounds
        self.state_size = bounds[-1] + (0 if self.conv is None else self.conv.state_size)

    def step(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One reading for each of n engines: ``x`` (n, C) float32, ``state`` (n, S) float32.

        An engine's result is bit-for-bit independent of which other engines share the
        batch (exactly-once recovery relies on it): BLAS takes other code paths for products
        with very few rows, so small batches are padded to ``MIN_ROWS`` rows, and the output
        head (few columns) is an elementwise product and sum rather than a BLAS call.
        """
        n = x.shape[0]
        if n < MIN_ROWS:
            pad = MIN_ROWS - n
            x = np.concatenate([x, np.zeros((pad, x.shape[1]), dtype=x.dtype)])
            state = np.concatenate([state, np.zeros((pad, state.shape[1]), dtype=state.dtype)])
            y, new_state = self._step(x, state)
            return y[:n], new_state[:n]
        return self._step(x, state)

    def _step(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inp = x
        parts = []
        buffer = None
        if self.conv is not None:
            inp, buffer = self.conv.step(x, state[:, self._bounds[-1] :])
        for k, layer in enumerate(self.layers):
            sub = state[:, self._bounds[k] : self._bounds[k + 1]]
            inp, new = layer.step(inp, sub)
            parts.append(new)
        # Not a BLAS product: with so few output columns BLAS takes gemv/small-matrix paths
        # whose rounding depends on the row's position and alignment in the batch.
        y = (inp[:, :, None] * self.head_kernel[None, :, :]).sum(axis=1) + self.head_bias
        if self.residual:
            y = y + x
        if buffer is not None and buffer.shape[1]:
            parts.append(buffer)
        new_state = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return y, np.ascontiguousarray(new_state, dtype=np.float32)
