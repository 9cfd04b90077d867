"""The StreamingModel API the pipeline integrates against."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from service.model import load_streaming_model
from tests.service.model.helpers import DEFAULT_ARTIFACT, REPO, healthy_readings


def test_default_artifact_describes_itself() -> None:
    model = load_streaming_model(DEFAULT_ARTIFACT)
    assert model.channels == ("vibration",)
    assert model.state_size == 2 * 64  # one LSTM(64): h and c
    assert model.version == model.manifest["version"] != ""
    assert model.architecture.cell == "lstm"
    assert model.probe_error() <= 1e-5
    state = model.zero_state(3)
    assert state.shape == (3, 128) and state.dtype == np.float32 and not state.any()


def test_step_shapes_types_and_purity() -> None:
    model = load_streaming_model(DEFAULT_ARTIFACT)
    x = np.array([[0.08], [0.12]])
    state = model.zero_state(2)
    pred, new = model.step(x, state)
    assert pred.shape == (2, 1) and pred.dtype == np.float64
    assert new.shape == (2, 128) and new.dtype == np.float32
    assert not state.any(), "the input state must not be modified"
    assert new.any()


def test_predicts_healthy_bearings_near_their_level() -> None:
    # The simulator publishes healthy-looking readings at 0.06-0.13 g: after a short warm-up
    # the one-step predictions must track each engine's own level, not the training mean.
    model = load_streaming_model(DEFAULT_ARTIFACT)
    xs = healthy_readings(np.random.default_rng(11), engines=40, steps=400)
    preds, _ = model.run(xs)
    err = xs[:, 51:, 0] - preds[:, 50:-1, 0]
    last = xs[:, 51:, 0] - xs[:, 50:-1, 0]
    assert np.abs(np.median(err, axis=1)).max() < 0.002
    assert np.sqrt(np.mean(err**2)) < np.sqrt(np.mean(last**2))


def test_scale_and_residual_are_in_scaled_units() -> None:
    model = load_streaming_model(DEFAULT_ARTIFACT)
    x = np.array([[0.05], [0.2]])
    np.testing.assert_allclose(model.unscale(model.scale(x)), x, rtol=1e-12)
    mean = model.manifest["scaler"]["mean"][0]
    scale = model.manifest["scaler"]["scale"][0]
    np.testing.assert_allclose(model.scale(x), (x - mean) / scale)
    resid = model.scaled_residual(np.array([[0.10]]), np.array([[0.08]]))
    np.testing.assert_allclose(resid, [[0.02 / scale]])


def test_wrong_shapes_are_caller_errors() -> None:
    model = load_streaming_model(DEFAULT_ARTIFACT)
    with pytest.raises(ValueError, match="x must be"):
        model.step(np.zeros((2, 3)), model.zero_state(2))
    with pytest.raises(ValueError, match="state must be"):
        model.step(np.zeros((2, 1)), model.zero_state(3))


def test_loading_never_imports_tensorflow_or_keras() -> None:
    code = (
        "import sys; from pathlib import Path; from service.model import load_streaming_model;"
        f"m = load_streaming_model(Path({str(DEFAULT_ARTIFACT)!r}));"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shipped_cmapss_artifact_loads() -> None:
    model = load_streaming_model(REPO / "models" / "artifacts" / "cmapss-fd001")
    assert len(model.channels) == 14 and model.channels[0] == "s2"
    assert model.units[:3] == ("°R", "°R", "°R") and model.units[-1] == "lbm/s"
    pred, state = model.step(np.full((2, 14), 100.0), model.zero_state(2))
    assert pred.shape == (2, 14) and state.shape == (2, model.state_size)
