"""Writing and reading model artifacts on the training side.

An artifact is a directory (see ``docs/model.md``)::

    model.keras      the Keras model, .keras format (zip: config.json + model.weights.h5)
    manifest.json    version, channels, scaler, architecture, data hash, split, metrics,
                     code version, probe sequence (raw inputs + the Keras model's outputs)
    model_card.md    human summary, with the PNG plots next to it

The runtime (``service.model``) reads the same files without TensorFlow and replays the probe.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.data import Series
from models.forecast import Scaler
from models.network import ArchitectureConfig, quiet_tensorflow

FORMAT = "vibewatch.model/1"
MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
PROBE_STEPS = 64
PROBE_TOLERANCE = 1e-5


def code_version() -> str:
    """The git commit of this code, with ``+dirty`` when models/ has local changes."""
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


def probe_inputs(series: Sequence[Series], scaler: Scaler, steps: int = PROBE_STEPS) -> np.ndarray:
    """Probe sequences (n, steps, C) raw: the starts of up to three held-out series plus one
    synthetic sweep from -3 to +3 scaled units, so every part of the input range is exercised."""
    n_channels = len(scaler.mean)
    rows = [s.values[:steps] for s in series if len(s) >= steps][:3]
    sweep = np.linspace(-3.0, 3.0, steps)[:, None] * np.ones((1, n_channels))
    rows.append(scaler.inverse(sweep))
    return np.stack(rows).astype(np.float64)


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
    scaler: Scaler,
    sequence_length: int,
    arch: ArchitectureConfig,
    probe_series: Sequence[Series],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Save ``model`` and its manifest into ``out``; return the manifest.

    The probe's expected outputs come from the model as saved and re-loaded with safe mode,
    so the manifest describes exactly the file on disk.
    """
    quiet_tensorflow()
    import keras

    out.mkdir(parents=True, exist_ok=True)
    model_path = out / MODEL_FILE
    model.save(model_path)
    reloaded = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    probe_x = probe_inputs(probe_series, scaler)
    probe_y = predict_sequences(reloaded, scaler, probe_x)
    created = datetime.now(UTC)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": f"{name}-{arch.cell}{arch.units}x{arch.layers}-{created:%Y%m%dT%H%M%SZ}",
        "created": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "code_version": code_version(),
        "keras_version": keras.__version__,
        "model_file": MODEL_FILE,
        "channels": list(channels),
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
    quiet_tensorflow()
    import keras

    return keras.saving.load_model(artifact / MODEL_FILE, safe_mode=True, compile=False)
