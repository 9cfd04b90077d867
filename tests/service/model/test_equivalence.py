"""The NumPy streaming kernel against the Keras model run over whole sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.model import load_streaming_model
from tests.service.model.helpers import (
    ARTIFACTS,
    DEFAULT_ARTIFACT,
    IMS_DATA,
    BuildArtifact,
    healthy_readings,
)

TOLERANCE = 1e-5  # scaled units


def keras_predict(artifact: Path, xs: np.ndarray) -> np.ndarray:
    """The artifact's Keras model (safe mode) over full sequences ``xs`` (n, T, C) raw."""
    from models.artifact import load_keras, read_manifest
    from models.forecast import Scaler

    manifest = read_manifest(artifact)
    scaler = Scaler(tuple(manifest["scaler"]["mean"]), tuple(manifest["scaler"]["scale"]))
    model = load_keras(artifact)
    z = scaler.transform(xs).astype(np.float32)
    out: np.ndarray = scaler.inverse(np.asarray(model.predict(z, verbose=0), np.float64))
    return out


def stream(artifact: Path, xs: np.ndarray) -> np.ndarray:
    """The kernel fed one reading per step for all engines at once."""
    model = load_streaming_model(artifact)
    preds, _ = model.run(xs)
    return preds


def max_scaled_diff(artifact: Path, a: np.ndarray, b: np.ndarray) -> float:
    model = load_streaming_model(artifact)
    return float(np.max(np.abs(model.scale(a) - model.scale(b))))


def test_default_artifact_streams_like_keras_at_scale() -> None:
    # 100 engines x 10,000 readings, healthy-looking with spikes: the service's workload.
    xs = healthy_readings(np.random.default_rng(7), engines=100, steps=10_000)
    streamed = stream(DEFAULT_ARTIFACT, xs)
    expected = keras_predict(DEFAULT_ARTIFACT, xs)
    assert streamed.shape == expected.shape == xs.shape
    assert max_scaled_diff(DEFAULT_ARTIFACT, streamed, expected) <= TOLERANCE


def test_default_artifact_streams_the_shipped_held_out_data_like_keras() -> None:
    from models.data import load_ims

    ds = load_ims(DEFAULT_ARTIFACT.parent.parent / "data" / "ims")
    for s in ds.series:
        xs = s.values[None]
        streamed = stream(DEFAULT_ARTIFACT, xs)
        expected = keras_predict(DEFAULT_ARTIFACT, xs)
        assert max_scaled_diff(DEFAULT_ARTIFACT, streamed, expected) <= TOLERANCE, s.engine_id


@pytest.mark.parametrize(
    ("cell", "units", "layers", "channels"),
    [
        ("lstm", 16, 1, 1),
        ("lstm", 12, 3, 4),
        ("gru", 16, 1, 1),
        ("gru", 8, 2, 3),
        ("lstm", 16, 1, 8),
        ("gru", 12, 2, 8),
        ("lstm", 16, 2, 14),
        ("gru", 16, 1, 14),
    ],
)
def test_built_architectures_stream_like_keras(
    build_artifact: BuildArtifact, cell: str, units: int, layers: int, channels: int
) -> None:
    artifact = build_artifact(cell=cell, units=units, layers=layers, channels=channels)
    model = load_streaming_model(artifact)
    per_layer = 2 * units if cell == "lstm" else units
    assert model.state_size == layers * per_layer
    assert model.units == ("g",) * channels
    rng = np.random.default_rng(1)
    xs = rng.normal(1.0, 1.0, size=(20, 500, channels)) * np.arange(1, channels + 1)
    streamed = stream(artifact, xs)
    expected = keras_predict(artifact, xs)
    assert max_scaled_diff(artifact, streamed, expected) <= TOLERANCE


CONV_CASES = [
    # cell, units, layers, channels, kernel, activation
    ("lstm", 16, 1, 1, 3, "relu"),
    ("gru", 12, 1, 1, 1, "linear"),
    ("lstm", 12, 2, 8, 5, "relu"),
    ("gru", 16, 1, 8, 4, "tanh"),
    ("lstm", 16, 1, 14, 3, "linear"),
    ("gru", 8, 2, 14, 6, "relu"),
]


@pytest.mark.parametrize(("cell", "units", "layers", "channels", "kernel", "act"), CONV_CASES)
def test_convolutional_front_end_streams_like_keras(
    build_artifact: BuildArtifact,
    cell: str,
    units: int,
    layers: int,
    channels: int,
    kernel: int,
    act: str,
) -> None:
    artifact = build_artifact(
        cell=cell, units=units, layers=layers, channels=channels, conv_kernel=kernel,
        conv_filters=6, conv_activation=act,
    )  # fmt: skip
    model = load_streaming_model(artifact)
    per_layer = 2 * units if cell == "lstm" else units
    # The k - 1 previous readings ride in the state vector, after the recurrent state.
    assert model.state_size == layers * per_layer + (kernel - 1) * channels
    assert model.probe_error() <= TOLERANCE
    rng = np.random.default_rng(2)
    xs = rng.normal(1.0, 1.0, size=(20, 400, channels)) * np.arange(1, channels + 1)
    streamed = stream(artifact, xs)
    expected = keras_predict(artifact, xs)
    assert max_scaled_diff(artifact, streamed, expected) <= TOLERANCE
    # The buffer holds the last k - 1 scaled readings, oldest first.
    _, state = model.run(xs[:3])
    if kernel > 1:
        tail = state[:, layers * per_layer :].reshape(3, kernel - 1, channels)
        np.testing.assert_allclose(tail, model.scale(xs[:3, -(kernel - 1) :]), atol=1e-6)


def test_convolutional_state_carries_across_calls_and_engines_stay_independent(
    build_artifact: BuildArtifact,
) -> None:
    artifact = build_artifact(cell="lstm", units=8, channels=3, conv_kernel=4)
    model = load_streaming_model(artifact)
    rng = np.random.default_rng(9)
    xs = rng.normal(1.0, 0.7, size=(11, 90, 3)) * np.arange(1, 4)
    whole, end_whole = model.run(xs)
    first, mid = model.run(xs[:, :37])
    second, end_split = model.run(xs[:, 37:], mid)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), whole)
    np.testing.assert_array_equal(end_split, end_whole)
    for k in (0, 5, 10):
        alone, end_alone = model.run(xs[k : k + 1])
        np.testing.assert_array_equal(alone[0], whole[k])
        np.testing.assert_array_equal(end_alone[0], end_whole[k])


def test_state_carries_across_calls_exactly() -> None:
    # Splitting a sequence across calls (as messages arrive) changes nothing.
    model = load_streaming_model(DEFAULT_ARTIFACT)
    xs = healthy_readings(np.random.default_rng(3), engines=5, steps=300)
    whole, end_whole = model.run(xs)
    first, mid = model.run(xs[:, :120])
    second, end_split = model.run(xs[:, 120:], mid)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), whole)
    np.testing.assert_array_equal(end_split, end_whole)


def test_engines_in_a_batch_do_not_interact() -> None:
    model = load_streaming_model(DEFAULT_ARTIFACT)
    xs = healthy_readings(np.random.default_rng(4), engines=6, steps=50)
    batched, _ = model.run(xs)
    for k in range(6):
        alone, _ = model.run(xs[k : k + 1])
        np.testing.assert_allclose(alone[0], batched[k], rtol=0, atol=1e-7)


SHIPPED_MULTICHANNEL = ("ims1-8ch", "skab-pump", "cmapss-fd001", "cmapss-fd001-tuned")


@pytest.mark.parametrize("name", SHIPPED_MULTICHANNEL)
def test_shipped_multichannel_artifacts_stream_like_keras(name: str) -> None:
    # Readings wandering over +-3 scaled units around each channel's training level, with
    # noise: every channel moves on its own.
    artifact = ARTIFACTS / name
    model = load_streaming_model(artifact)
    rng = np.random.default_rng(21)
    n_ch = len(model.channels)
    z = np.clip(np.cumsum(rng.normal(0, 0.1, size=(16, 1500, n_ch)), axis=1), -3, 3)
    xs = model.unscale(z + rng.normal(0, 0.3, size=z.shape))
    streamed = stream(artifact, xs)
    expected = keras_predict(artifact, xs)
    assert max_scaled_diff(artifact, streamed, expected) <= TOLERANCE


def test_ims_8_channel_artifact_streams_the_shipped_test_1_like_keras() -> None:
    from models.data import load_ims_multi

    artifact = ARTIFACTS / "ims1-8ch"
    (series,) = load_ims_multi(IMS_DATA / "ims_test1_snapshot_meanabs.csv").series
    assert series.channels == load_streaming_model(artifact).channels
    xs = series.values[None]
    assert max_scaled_diff(artifact, stream(artifact, xs), keras_predict(artifact, xs)) <= TOLERANCE
