"""The artifact manifest as the runtime reads it: parsed, checked, frozen.

Called once per load by :func:`service.model.load_streaming_model`. Every check failure is an
:class:`~service.errors.ArtifactError` naming ``manifest.json`` and the field that is wrong, so
an operator can tell a bad manifest from bad weights.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import ArtifactError

#: The manifest formats this runtime understands.
FORMATS = ("vibewatch.model/1",)
#: Recurrent cells the kernel implements.
CELLS = ("lstm", "gru")
#: Activations of the convolutional front-end the kernel implements.
CONV_ACTIVATIONS = ("linear", "relu", "tanh")
#: Default tolerance of the probe check, in scaled units.
PROBE_TOLERANCE = 1e-5


@dataclass(frozen=True, slots=True)
class Architecture:
    """The recurrent stack: ``layers`` cells of ``units`` each, then a dense head.

    ``residual`` means the head predicts the change from the current (scaled) reading, so the
    model's output is ``x + head(h)``. ``conv_kernel`` > 0 means a causal convolution of
    ``conv_filters`` filters over the last ``conv_kernel`` readings feeds the recurrent stack
    (0: no convolution, the readings feed it directly).
    """

    cell: str
    units: int
    layers: int
    residual: bool
    conv_kernel: int = 0
    conv_filters: int = 0
    conv_activation: str = "linear"


@dataclass(frozen=True, slots=True)
class ManifestSpec:
    """What the runtime needs from ``manifest.json``; ``raw`` keeps the whole document."""

    version: str
    channels: tuple[str, ...]
    units: tuple[str, ...]  # one per channel; "" where the manifest does not say
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    sequence_length: int
    architecture: Architecture
    model_file: str
    probe_inputs: np.ndarray  # (n, T, C) raw units, float64
    probe_outputs: np.ndarray  # (n, T, C) raw units, float64
    probe_tolerance: float
    raw: dict[str, Any]


def read_manifest(path: Path) -> ManifestSpec:
    """Read and check ``path``; raise :class:`ArtifactError` naming it when anything is off."""
    where = str(path)
    if not path.is_file():
        raise ArtifactError(where, "manifest file is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(where, f"manifest is not readable JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ArtifactError(where, "manifest must be a JSON object")
    return _parse(raw, where)


def _parse(raw: dict[str, Any], where: str) -> ManifestSpec:
    def fail(field: str, message: str) -> ArtifactError:
        return ArtifactError(where, f"field {field!r}: {message}")

    fmt = raw.get("format")
    if fmt not in FORMATS:
        raise fail("format", f"unsupported format {fmt!r}; this runtime reads {list(FORMATS)}")
    version = raw.get("version")
    if not isinstance(version, str) or not version.strip():
        raise fail("version", "missing or empty")

    channels = raw.get("channels")
    if (
        not isinstance(channels, list)
        or not channels
        or not all(isinstance(c, str) and c for c in channels)
    ):
        raise fail("channels", "must be a non-empty list of channel names")
    if len(set(channels)) != len(channels):
        raise fail("channels", "channel names must be unique")
    n_channels = len(channels)
    units = raw.get("units", [""] * n_channels)
    if (
        not isinstance(units, list)
        or len(units) != n_channels
        or not all(isinstance(u, str) for u in units)
    ):
        raise fail("units", f"must be a list of {n_channels} strings, one per channel")

    scaler = raw.get("scaler")
    if not isinstance(scaler, dict) or scaler.get("kind") != "standard":
        raise fail("scaler", "must be an object with kind 'standard'")
    mean = _floats(scaler.get("mean"), n_channels, lambda m: fail("scaler.mean", m))
    scale = _floats(scaler.get("scale"), n_channels, lambda m: fail("scaler.scale", m))
    if any(s <= 0 for s in scale):
        raise fail("scaler.scale", "every scale must be > 0")

    seq_len = raw.get("sequence_length")
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
        raise fail("sequence_length", "must be a positive integer")

    arch = raw.get("architecture")
    if not isinstance(arch, dict):
        raise fail("architecture", "missing")
    cell = arch.get("cell")
    if cell not in CELLS:
        raise fail("architecture.cell", f"unknown cell type {cell!r}; known: {list(CELLS)}")
    n_units, layers = arch.get("units"), arch.get("layers")
    if not isinstance(n_units, int) or isinstance(n_units, bool) or n_units < 1:
        raise fail("architecture.units", "must be a positive integer")
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
        raise fail("architecture.layers", "must be a positive integer")
    residual = arch.get("residual", False)
    if not isinstance(residual, bool):
        raise fail("architecture.residual", "must be true or false")
    conv_kernel, conv_filters, conv_activation = _conv(arch.get("conv"), fail)

    model_file = raw.get("model_file", "model.keras")
    if not isinstance(model_file, str) or "/" in model_file or model_file.startswith("."):
        raise fail("model_file", "must be a plain file name inside the artifact directory")

    probe = raw.get("probe")
    if not isinstance(probe, dict):
        raise fail("probe", "missing: the artifact must carry a probe sequence")
    inputs = _probe_array(probe.get("inputs"), n_channels, lambda m: fail("probe.inputs", m))
    outputs = _probe_array(probe.get("outputs"), n_channels, lambda m: fail("probe.outputs", m))
    if inputs.shape != outputs.shape:
        raise fail("probe", f"inputs {inputs.shape} and outputs {outputs.shape} differ in shape")
    tolerance = probe.get("tolerance", PROBE_TOLERANCE)
    if not isinstance(tolerance, int | float) or not 0 < tolerance <= 1e-3:
        raise fail("probe.tolerance", "must be a number in (0, 1e-3]")

    return ManifestSpec(
        version=version,
        channels=tuple(channels),
        units=tuple(units),
        mean=mean,
        scale=scale,
        sequence_length=seq_len,
        architecture=Architecture(
            cell=cell,
            units=n_units,
            layers=layers,
            residual=residual,
            conv_kernel=conv_kernel,
            conv_filters=conv_filters,
            conv_activation=conv_activation,
        ),
        model_file=model_file,
        probe_inputs=inputs,
        probe_outputs=outputs,
        probe_tolerance=float(tolerance),
        raw=raw,
    )


def _conv(value: object, fail: Any) -> tuple[int, int, str]:
    """``architecture.conv``: absent or null (no convolution) or
    ``{"kernel_size": k, "filters": f, "activation": a}``."""
    if value is None:
        return 0, 0, "linear"
    if not isinstance(value, dict):
        raise fail("architecture.conv", "must be null or an object")
    kernel = _positive_int(value.get("kernel_size"), "architecture.conv.kernel_size", fail)
    filters = _positive_int(value.get("filters"), "architecture.conv.filters", fail)
    activation = value.get("activation", "linear")
    if activation not in CONV_ACTIVATIONS:
        raise fail(
            "architecture.conv.activation",
            f"unknown activation {activation!r}; known: {list(CONV_ACTIVATIONS)}",
        )
    return kernel, filters, str(activation)


def _positive_int(value: object, field: str, fail: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise fail(field, "must be a positive integer")
    return value


def _floats(value: object, n: int, fail: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n:
        raise fail(f"must be a list of {n} numbers, one per channel")
    out: list[float] = []
    for v in value:
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise fail("must hold finite numbers")
        out.append(float(v))
    return tuple(out)


def _probe_array(value: object, n_channels: int, fail: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise fail(f"not a numeric (engines, steps, channels) array ({exc})") from exc
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise fail(f"must be a (engines, steps, channels) array, got shape {arr.shape}")
    if arr.shape[2] != n_channels:
        raise fail(f"has {arr.shape[2]} channels but the manifest names {n_channels}")
    if not np.all(np.isfinite(arr)):
        raise fail("holds non-finite values")
    return arr
