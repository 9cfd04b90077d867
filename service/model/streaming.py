"""The model the service runs: load an artifact, advance per-engine state one reading at a time.

TensorFlow is never imported here (nor by anything this imports): the weights are read from
the artifact's ``.keras`` archive with zipfile + h5py and run by :mod:`service.model.kernel`.
At load the manifest's probe sequence, recorded from the Keras model at export, is replayed
through the kernel; an artifact that does not reproduce it is refused.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import ArtifactError
from service.model.kernel import Kernel
from service.model.manifest import Architecture, ManifestSpec, read_manifest
from service.model.weights import NetworkWeights, read_keras_weights

MANIFEST_FILE = "manifest.json"


class StreamingModel:
    """A loaded artifact. Stateless itself: callers own the per-engine state arrays.

    ``state`` arrays are (n, ``state_size``) float32, one row per engine, built with
    :meth:`zero_state` for engines seen for the first time. Memory is ``4 * state_size``
    bytes per engine and lives wherever the caller keeps it.
    """

    def __init__(self, path: Path, spec: ManifestSpec, weights: NetworkWeights) -> None:
        self.path = path
        self._spec = spec
        self._kernel = Kernel(weights)
        self._mean = np.asarray(spec.mean, dtype=np.float64)
        self._scale = np.asarray(spec.scale, dtype=np.float64)

    @property
    def version(self) -> str:
        """The artifact's version string from the manifest."""
        return self._spec.version

    @property
    def channels(self) -> tuple[str, ...]:
        """Channel names, in the column order of every (n, C) array."""
        return self._spec.channels

    @property
    def units(self) -> tuple[str, ...]:
        """Each channel's unit (e.g. ``"g"``), in :attr:`channels` order; ``""`` where the
        manifest does not say (artifacts written before units were recorded)."""
        return self._spec.units

    @property
    def state_size(self) -> int:
        """Floats of state per engine: every layer's h (and c for an LSTM), then, with a
        convolutional front-end of kernel size k, the k - 1 previous scaled readings.
        Opaque to callers: store it, pass it back, start from :meth:`zero_state`."""
        return self._kernel.state_size

    @property
    def sequence_length(self) -> int:
        """Length of the training sequences; a sensible re-warm window."""
        return self._spec.sequence_length

    @property
    def architecture(self) -> Architecture:
        """Cell type, units, layers, residual head, convolutional front-end."""
        return self._spec.architecture

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the whole manifest document."""
        return copy.deepcopy(self._spec.raw)

    def zero_state(self, n: int) -> np.ndarray:
        """The state of ``n`` engines that have seen no reading yet: zeros (n, state_size)."""
        return np.zeros((n, self.state_size), dtype=np.float32)

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Raw values (..., C) to the model's scaled units (float64)."""
        return (np.asarray(x, dtype=np.float64) - self._mean) / self._scale

    def unscale(self, z: np.ndarray) -> np.ndarray:
        """Scaled values (..., C) back to raw units (float64)."""
        return np.asarray(z, dtype=np.float64) * self._scale + self._mean

    def scaled_residual(self, actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """``actual - predicted`` (both raw, (n, C)) in scaled units: comparable across channels."""
        diff = np.asarray(actual, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
        out: np.ndarray = diff / self._scale
        return out

    def step(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance n engines by one reading each.

        ``x``: (n, C) raw readings in :attr:`channels` order; ``state``: (n, state_size).
        Returns the prediction of each engine's *next* reading (n, C) in raw units (float64)
        and the new state (n, state_size) float32. The input state is not modified.
        ``x`` must be finite (the ingest stage guarantees it): a NaN would stay in that
        engine's state for good.
        Raises ``ValueError`` on wrong shapes (a caller bug, not bad data).
        """
        x = np.asarray(x)
        n = x.shape[0] if x.ndim == 2 else -1
        if x.ndim != 2 or x.shape[1] != len(self.channels):
            raise ValueError(f"x must be (n, {len(self.channels)}), got {x.shape}")
        if state.shape != (n, self.state_size):
            raise ValueError(f"state must be ({n}, {self.state_size}), got {state.shape}")
        xs = self.scale(x).astype(np.float32)
        y, new_state = self._kernel.step(xs, state.astype(np.float32, copy=False))
        return self.unscale(y), new_state

    def run(self, xs: np.ndarray, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Feed sequences ``xs`` (n, T, C) raw: every step's prediction (n, T, C) and the end state.

        Used to re-warm state from a window of recent readings, and for the probe check.
        """
        xs = np.asarray(xs, dtype=np.float64)
        if xs.ndim != 3:
            raise ValueError(f"xs must be (n, T, C), got {xs.shape}")
        n, steps, _ = xs.shape
        current = self.zero_state(n) if state is None else state
        preds = np.empty(xs.shape, dtype=np.float64)
        for t in range(steps):
            preds[:, t, :], current = self.step(xs[:, t, :], current)
        return preds, current

    def probe_error(self) -> float:
        """Largest difference, in scaled units, between the kernel and the recorded probe."""
        preds, _ = self.run(self._spec.probe_inputs)
        return float(np.max(np.abs(self.scale(preds) - self.scale(self._spec.probe_outputs))))


def load_streaming_model(path: Path) -> StreamingModel:
    """Load the artifact directory ``path`` (``manifest.json`` + the ``.keras`` model).

    Called at start-up and on model reload. Raises :class:`ArtifactError` naming the file at
    fault when the directory or a file is missing, corrupt or truncated, when the manifest is
    inconsistent with itself or with the model, or when the kernel does not reproduce the
    manifest's probe sequence within its tolerance (1e-5 in scaled units by default).
    """
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(str(path), "artifact directory does not exist")
    spec = read_manifest(path / MANIFEST_FILE)
    model_path = path / spec.model_file
    weights = read_keras_weights(model_path)
    _check_consistent(spec, weights, path / MANIFEST_FILE)
    model = StreamingModel(path, spec, weights)
    err = model.probe_error()
    if not err <= spec.probe_tolerance:  # also catches NaN
        raise ArtifactError(
            str(model_path),
            f"the streaming kernel does not reproduce the probe sequence recorded in "
            f"{MANIFEST_FILE}: max difference {err:.3g} > tolerance {spec.probe_tolerance:g} "
            "(scaled units); the weights and the manifest do not belong together",
        )
    return model


def _check_consistent(spec: ManifestSpec, weights: NetworkWeights, manifest: Path) -> None:
    arch = spec.architecture
    found = {
        "channels": (len(spec.channels), weights.input_size),
        "architecture.layers": (arch.layers, len(weights.cells)),
        "architecture.residual": (arch.residual, weights.residual),
    }
    for field, (declared, actual) in found.items():
        if declared != actual:
            raise ArtifactError(
                str(manifest), f"field {field!r} says {declared} but the model has {actual}"
            )
    conv = weights.conv
    declared_conv = (arch.conv_kernel, arch.conv_filters, arch.conv_activation)
    actual_conv = (0, 0, "linear") if conv is None else (conv.size, conv.filters, conv.activation)
    if declared_conv != actual_conv:
        raise ArtifactError(
            str(manifest),
            f"field 'architecture.conv' says {_conv_text(*declared_conv)} but the model has "
            f"{_conv_text(*actual_conv)}",
        )
    for k, cell in enumerate(weights.cells):
        if cell.cell != arch.cell or cell.units != arch.units:
            raise ArtifactError(
                str(manifest),
                f"architecture says {arch.cell}({arch.units}) but model layer {k} is "
                f"{cell.cell}({cell.units})",
            )


def _conv_text(kernel: int, filters: int, activation: str) -> str:
    return f"Conv1D(kernel {kernel}, {filters} filters, {activation})" if kernel else "none"
