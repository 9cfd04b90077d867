"""Read the trained weights straight out of a ``.keras`` file, without TensorFlow.

A ``.keras`` file is a zip archive holding ``config.json`` (the layer graph) and
``model.weights.h5`` (the variables). The runtime accepts exactly the graphs the trainer
builds: an input, optionally a causal ``Conv1D`` over the last k readings, a stack of LSTM or
GRU layers returning sequences, a dense head and, optionally, an ``Add`` that makes the head
predict the change from the current reading.
Anything else is refused, because the kernel would not compute what Keras computes.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from service.errors import ArtifactError

_RECURRENT = {"LSTM": "lstm", "GRU": "gru"}
_SUPPORTED = {"InputLayer", "Conv1D", "LSTM", "GRU", "Dense", "Add"}
_CONV_ACTIVATIONS = ("linear", "relu", "tanh")


@dataclass(frozen=True, slots=True)
class CellWeights:
    """One recurrent layer: ``kernel`` (in, g*u), ``recurrent`` (u, g*u), ``bias``.

    For an LSTM ``bias`` is (4u,); for a GRU (reset_after) it is (2, 3u): input and
    recurrent biases.
    """

    cell: str
    units: int
    kernel: np.ndarray
    recurrent: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True, slots=True)
class ConvWeights:
    """A causal convolution: ``kernel`` (k, in, filters), ``bias`` (filters,); the output at
    step t is ``activation(sum_j x[t - k + 1 + j] @ kernel[j] + bias)``."""

    kernel: np.ndarray
    bias: np.ndarray
    activation: str

    @property
    def size(self) -> int:
        return int(self.kernel.shape[0])

    @property
    def filters(self) -> int:
        return int(self.kernel.shape[2])


@dataclass(frozen=True, slots=True)
class NetworkWeights:
    """The whole network as the kernel runs it."""

    input_size: int
    conv: ConvWeights | None
    cells: tuple[CellWeights, ...]
    head_kernel: np.ndarray  # (units, C)
    head_bias: np.ndarray  # (C,)
    residual: bool


def read_keras_weights(path: Path) -> NetworkWeights:
    """Parse ``path`` (a ``.keras`` archive); raise :class:`ArtifactError` naming it if bad."""
    where = str(path)
    if not path.is_file():
        raise ArtifactError(where, "model file is missing")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            for member in ("config.json", "model.weights.h5"):
                if member not in names:
                    raise ArtifactError(where, f"not a Keras model archive: no {member} inside")
            config_bytes = archive.read("config.json")
            weights_bytes = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, zlib.error) as exc:
        raise ArtifactError(where, f"corrupt or truncated .keras archive ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise ArtifactError(where, f"cannot read .keras archive ({exc})") from exc
    try:
        config = json.loads(config_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(where, f"config.json inside is not valid JSON ({exc})") from exc
    layers = _layers(config, where)
    try:
        h5 = h5py.File(io.BytesIO(weights_bytes), "r")
    except (OSError, ValueError) as exc:
        raise ArtifactError(where, f"model.weights.h5 inside is corrupt ({exc})") from exc
    try:
        with h5:
            return _network(layers, h5, where)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ArtifactError(where, f"config.json inside is malformed ({exc!r})") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactError(where, f"model.weights.h5 inside is corrupt ({exc})") from exc


def _layers(config: Any, where: str) -> list[dict[str, Any]]:
    try:
        layers = config["config"]["layers"]
        if config["class_name"] not in ("Functional", "Sequential"):
            raise TypeError(config["class_name"])
    except (KeyError, TypeError) as exc:
        raise ArtifactError(where, f"config.json is not a Keras functional model ({exc})") from exc
    if not isinstance(layers, list):
        raise ArtifactError(where, "config.json has no layer list")
    for layer in layers:
        kind = layer.get("class_name") if isinstance(layer, dict) else None
        if kind not in _SUPPORTED:
            raise ArtifactError(
                where, f"layer type {kind!r} is not supported by the streaming kernel"
            )
    return layers


def _snake(name: str) -> str:
    # The same conversion as keras.src.utils.naming.to_snake_case.
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _h5_names(layers: list[dict[str, Any]]) -> list[str]:
    # Keras names each layer's weight group after its class in snake case, numbered
    # _1, _2, ... for repeats, in the order the layers appear in the config.
    seen: dict[str, int] = {}
    names = []
    for layer in layers:
        base = _snake(layer["class_name"])
        count = seen.get(base, 0)
        seen[base] = count + 1
        names.append(base if count == 0 else f"{base}_{count}")
    return names


def _var(h5: h5py.File, group: str, index: int, where: str) -> np.ndarray:
    key = f"layers/{group}/vars/{index}"
    if key not in h5:
        raise ArtifactError(where, f"weights missing: {key}")
    return np.asarray(h5[key][()], dtype=np.float32)


def _network(layers: list[dict[str, Any]], h5: h5py.File, where: str) -> NetworkWeights:
    names = _h5_names(layers)
    kinds = [layer["class_name"] for layer in layers]
    if kinds[0] != "InputLayer":
        raise ArtifactError(where, "the model must start with an input layer")
    shape = layers[0]["config"].get("batch_shape") or layers[0]["config"].get("batch_input_shape")
    if not isinstance(shape, list) or len(shape) != 3 or not isinstance(shape[2], int):
        raise ArtifactError(where, f"input must be (batch, time, channels), got {shape}")
    input_size = shape[2]

    conv: ConvWeights | None = None
    i = 1
    if i < len(kinds) and kinds[i] == "Conv1D":
        conv = _conv(layers[i], names[i], h5, where)
        i += 1
    cells: list[CellWeights] = []
    while i < len(kinds) and kinds[i] in _RECURRENT:
        cells.append(_cell(layers[i], names[i], h5, where))
        i += 1
    if not cells:
        raise ArtifactError(where, "no recurrent layer after the input")
    if i >= len(kinds) or kinds[i] != "Dense":
        raise ArtifactError(where, "the recurrent stack must be followed by a Dense head")
    dense_cfg = layers[i]["config"]
    if dense_cfg.get("activation", "linear") != "linear" or not dense_cfg.get("use_bias", True):
        raise ArtifactError(where, "the Dense head must be linear with a bias")
    head_kernel = _var(h5, names[i], 0, where)
    head_bias = _var(h5, names[i], 1, where)
    rest = kinds[i + 1 :]
    if rest not in ([], ["Add"]):
        raise ArtifactError(where, f"unexpected layers after the head: {rest}")
    residual = rest == ["Add"]

    prev = input_size
    if conv is not None:
        if conv.kernel.ndim != 3 or conv.kernel.shape[1] != input_size:
            raise ArtifactError(where, "weight shapes of the Conv1D layer do not match")
        if conv.bias.shape != (conv.filters,):
            raise ArtifactError(where, "weight shapes of the Conv1D layer do not match")
        prev = conv.filters
    for cell in cells:
        gates = 4 if cell.cell == "lstm" else 3
        want_bias = (gates * cell.units,) if cell.cell == "lstm" else (2, gates * cell.units)
        if (
            cell.kernel.shape != (prev, gates * cell.units)
            or cell.recurrent.shape != (cell.units, gates * cell.units)
            or cell.bias.shape != want_bias
        ):
            raise ArtifactError(where, f"weight shapes of a {cell.cell} layer do not match")
        prev = cell.units
    if head_kernel.shape != (prev, input_size) or head_bias.shape != (input_size,):
        raise ArtifactError(where, "weight shapes of the Dense head do not match")
    arrays = [head_kernel, head_bias, *(a for c in cells for a in (c.kernel, c.recurrent))]
    if conv is not None:
        arrays += [conv.kernel, conv.bias]
    for arr in arrays:
        if not np.all(np.isfinite(arr)):
            raise ArtifactError(where, "weights hold non-finite values")
    return NetworkWeights(input_size, conv, tuple(cells), head_kernel, head_bias, residual)


def _conv(layer: dict[str, Any], name: str, h5: h5py.File, where: str) -> ConvWeights:
    cfg = layer["config"]
    checks: dict[str, Any] = {
        "padding": "causal",
        "strides": [1],
        "dilation_rate": [1],
        "groups": 1,
        "data_format": "channels_last",
        "use_bias": True,
    }
    for key, want in checks.items():
        if cfg.get(key, want) != want:
            raise ArtifactError(
                where, f"layer {cfg.get('name')!r}: {key}={cfg.get(key)!r} is not supported"
            )
    activation = cfg.get("activation", "linear")
    if activation not in _CONV_ACTIVATIONS:
        raise ArtifactError(
            where, f"layer {cfg.get('name')!r}: activation {activation!r} is not supported"
        )
    return ConvWeights(_var(h5, name, 0, where), _var(h5, name, 1, where), activation)


def _cell(layer: dict[str, Any], name: str, h5: h5py.File, where: str) -> CellWeights:
    cfg = layer["config"]
    kind = _RECURRENT[layer["class_name"]]
    checks = {
        "return_sequences": True,
        "go_backwards": False,
        "stateful": False,
        "use_bias": True,
        "activation": "tanh",
        "recurrent_activation": "sigmoid",
    }
    if kind == "gru":
        checks["reset_after"] = True
    for key, want in checks.items():
        if cfg.get(key, want) != want:
            raise ArtifactError(
                where, f"layer {cfg.get('name')!r}: {key}={cfg.get(key)!r} is not supported"
            )
    units = cfg.get("units")
    if not isinstance(units, int) or units < 1:
        raise ArtifactError(where, f"layer {cfg.get('name')!r}: bad units {units!r}")
    group = f"{name}/cell"
    return CellWeights(
        cell=kind,
        units=units,
        kernel=_var(h5, group, 0, where),
        recurrent=_var(h5, group, 1, where),
        bias=_var(h5, group, 2, where),
    )
