"""Writing and reading model artifacts on the training side.

An artifact is a directory (see ``docs/model.md``)::

    model.keras      the Keras model, .keras format (zip: config.json + model.weights.h5)
    manifest.json    version, channels, units, scaler, architecture, data hash, split,
                     metrics, code version, probe sequence (raw inputs + the Keras model's
                     outputs; synthetic, so an artifact never carries training data)
    model_card.md    human summary, with the PNG plots next to it

The runtime (``service.model``) reads the same files without TensorFlow and replays the probe.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.data import Series
from models.forecast import Scaler
from models.network import ArchitectureConfig, import_keras

FORMAT = "vibewatch.model/1"
MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
PROBE_STEPS = 64
PROBE_TOLERANCE = 1e-5


@functools.cache
def code_version() -> str:
    """The git commit of this code, with ``+dirty`` when models/ has local changes.

    Cached: train and tune call it when they start, so an artifact names the code that
    trained it even if the tree changes while a long run goes on.
    """
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=here, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "*.py"],
            cwd=here, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def probe_inputs(scaler: Scaler, steps: int = PROBE_STEPS, seed: int = 0) -> np.ndarray:
    """Probe sequences (4, steps, C) raw: three seeded random walks with noise and a spike,
    each channel starting at its own level within +-2 scaled units, plus one sweep from -3 to
    +3 scaled units on every channel, so the whole input range and the steps between readings
    are exercised.

    Synthetic on purpose: the manifest then holds no reading of the training data, whose
    licence may not allow redistributing it (SKAB is GPL-3.0).
    """
    n_channels = len(scaler.mean)
    rng = np.random.default_rng(seed)
    start = rng.uniform(-2.0, 2.0, size=(3, 1, n_channels))
    walk = np.cumsum(rng.normal(0.0, 0.15, size=(3, steps, n_channels)), axis=1)
    noise = rng.normal(0.0, 0.05, size=(3, steps, n_channels))
    rows = start + walk + noise
    rows[:, steps // 2, :] += 2.5  # a spike, as a fault would make
    sweep = np.linspace(-3.0, 3.0, steps)[None, :, None] * np.ones((1, 1, n_channels))
    z = np.concatenate([rows, sweep])
    out: np.ndarray = scaler.inverse(z).astype(np.float64)
    return out


def predict_sequences(model: Any, scaler: Scaler, xs: np.ndarray) -> np.ndarray:
    """The Keras model over whole sequences ``xs`` (n, T, C) raw; predictions (n, T, C) raw."""
    z = scaler.transform(xs).astype(np.float32)
    out = np.asarray(model.predict(z, batch_size=256, verbose=0), dtype=np.float64)
    result: np.ndarray = scaler.inverse(out)
    return result


def series_predictor(
    model: Any, scaler: Scaler, series: Sequence[Series]
) -> Callable[[Series], np.ndarray]:
    """Predict every series of ``series`` in one padded batch; return a lookup by series.

    The network is causal, so padding after a series' end does not change its predictions;
    one batched call is far faster than one call per series (each length would retrace).
    """
    if not series:
        return lambda s: np.empty((0, len(scaler.mean)))
    longest = max(len(s) for s in series)
    xs = np.empty((len(series), longest, len(scaler.mean)), dtype=np.float64)
    for k, s in enumerate(series):
        xs[k, : len(s)] = s.values
        xs[k, len(s) :] = s.values[-1]
    preds = predict_sequences(model, scaler, xs)
    table = {id(s): preds[k, : len(s)] for k, s in enumerate(series)}

    def predict(s: Series) -> np.ndarray:
        return table[id(s)]

    return predict


def write_artifact(
    out: Path,
    model: Any,
    *,
    name: str,
    channels: Sequence[str],
    units: Sequence[str],
    scaler: Scaler,
    sequence_length: int,
    arch: ArchitectureConfig,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Save ``model`` and its manifest into ``out``; return the manifest.

    ``units`` holds one unit per channel (``""`` when unknown). The probe's expected outputs
    come from the model as saved and re-loaded with safe mode, so the manifest describes
    exactly the file on disk.
    """
    if len(units) != len(channels):
        raise ValueError(f"{len(units)} units for {len(channels)} channels")
    keras = import_keras()
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / MODEL_FILE
    model.save(model_path)
    reloaded = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    probe_x = probe_inputs(scaler)
    probe_y = predict_sequences(reloaded, scaler, probe_x)
    created = datetime.now(UTC)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": f"{name}-{arch.label}-{created:%Y%m%dT%H%M%SZ}",
        "created": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "code_version": code_version(),
        "keras_version": keras.__version__,
        "model_file": MODEL_FILE,
        "channels": list(channels),
        "units": list(units),
        "scaler": {"kind": "standard", "mean": list(scaler.mean), "scale": list(scaler.scale)},
        "sequence_length": sequence_length,
        "architecture": arch.to_json(),
        **extra,
        "probe": {
            "tolerance": PROBE_TOLERANCE,
            "units": "raw; compared in scaled units",
            "inputs": probe_x.tolist(),
            "outputs": probe_y.tolist(),
        },
    }
    (out / MANIFEST_FILE).write_text(dump_manifest(manifest), encoding="utf-8")
    return manifest


def dump_manifest(manifest: dict[str, Any]) -> str:
    """JSON text of ``manifest``: indented, except the probe arrays (one engine per line)."""
    head = {k: v for k, v in manifest.items() if k != "probe"}
    text = json.dumps(head, indent=1)
    probe = manifest.get("probe")
    if probe is None:
        return text + "\n"
    lines = []
    for key, value in probe.items():
        if isinstance(value, list):
            rows = ",\n   ".join(json.dumps(row) for row in value)
            lines.append(f'  "{key}": [\n   {rows}\n  ]')
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return text[:-2] + ',\n "probe": {\n' + ",\n".join(lines) + "\n }\n}\n"


def read_manifest(artifact: Path) -> dict[str, Any]:
    """The manifest of an artifact directory (training-side reader, no checks beyond JSON)."""
    path = artifact / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: manifest is not a JSON object")
    return data


def load_keras(artifact: Path) -> Any:
    """The artifact's Keras model, loaded with safe mode."""
    keras = import_keras()
    return keras.saving.load_model(artifact / MODEL_FILE, safe_mode=True, compile=False)
