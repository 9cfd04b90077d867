"""Artifacts the runtime must refuse, each with an error naming the file at fault."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import pytest

from service.errors import ArtifactError
from service.model import load_streaming_model
from tests.service.model.helpers import DEFAULT_ARTIFACT, BuildArtifact


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A writable copy of the shipped default artifact."""
    out = tmp_path / "artifact"
    shutil.copytree(DEFAULT_ARTIFACT, out)
    return out


def edit_manifest(artifact: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = artifact / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def replace_member(archive: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(archive) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[name] = data
    with zipfile.ZipFile(archive, "w") as z:
        for n, content in members.items():
            z.writestr(n, content)


def rejected(artifact: Path) -> ArtifactError:
    with pytest.raises(ArtifactError) as info:
        load_streaming_model(artifact)
    return info.value


def test_the_unmodified_copy_loads(artifact: Path) -> None:
    # The baseline for every case below: only the modification makes them fail.
    assert load_streaming_model(artifact).channels == ("vibration",)


def test_missing_directory(tmp_path: Path) -> None:
    err = rejected(tmp_path / "nowhere")
    assert err.path == str(tmp_path / "nowhere")
    assert "does not exist" in str(err)


def test_missing_manifest(artifact: Path) -> None:
    (artifact / "manifest.json").unlink()
    err = rejected(artifact)
    assert err.path == str(artifact / "manifest.json")
    assert "missing" in str(err)


def test_truncated_manifest(artifact: Path) -> None:
    path = artifact / "manifest.json"
    path.write_bytes(path.read_bytes()[:1000])
    err = rejected(artifact)
    assert err.path == str(path)
    assert "not readable JSON" in str(err)


def test_missing_model_file(artifact: Path) -> None:
    (artifact / "model.keras").unlink()
    err = rejected(artifact)
    assert err.path == str(artifact / "model.keras")
    assert "missing" in str(err)


def test_truncated_model_file(artifact: Path) -> None:
    path = artifact / "model.keras"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    err = rejected(artifact)
    assert err.path == str(path)
    assert "corrupt or truncated" in str(err)


def test_model_file_with_flipped_bytes(artifact: Path) -> None:
    path = artifact / "model.keras"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    err = rejected(artifact)
    assert err.path == str(path)
    assert "corrupt" in str(err)


def test_model_file_that_is_not_an_archive(artifact: Path) -> None:
    (artifact / "model.keras").write_bytes(b"\x89HDF\r\n" + b"\0" * 2000)
    err = rejected(artifact)
    assert err.path == str(artifact / "model.keras")


def test_corrupt_weights_inside_a_valid_archive(artifact: Path) -> None:
    replace_member(artifact / "model.keras", "model.weights.h5", b"not hdf5 at all" * 100)
    err = rejected(artifact)
    assert err.path == str(artifact / "model.keras")
    assert "model.weights.h5" in str(err)


def test_unsupported_layer_option(artifact: Path) -> None:
    path = artifact / "model.keras"
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
    config["config"]["layers"][1]["config"]["go_backwards"] = True
    replace_member(path, "config.json", json.dumps(config).encode())
    err = rejected(artifact)
    assert err.path == str(path)
    assert "go_backwards" in str(err)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("version"), "'version'"),
        (lambda m: m.update(version=""), "'version'"),
        (lambda m: m.update(format="vibewatch.model/99"), "'format'"),
        (lambda m: m["architecture"].update(cell="transformer"), "unknown cell type"),
        (lambda m: m["scaler"].update(scale=[0.0]), "'scaler.scale'"),
        (lambda m: m["scaler"].update(mean=[0.1, 0.2]), "'scaler.mean'"),
        (lambda m: m.update(channels=["vibration", "vibration"]), "unique"),
        (lambda m: m.update(channels=[]), "'channels'"),
        (lambda m: m.pop("probe"), "'probe'"),
        (lambda m: m["probe"].update(outputs=[[[0.1]]]), "differ in shape"),
        (lambda m: m.update(units=["g", "g"]), "'units'"),
        (lambda m: m["architecture"].update(conv={"kernel_size": 0}), "conv.kernel_size"),
        (lambda m: m["architecture"].update(conv=3), "'architecture.conv'"),
        (
            lambda m: m["architecture"].update(
                conv={"kernel_size": 3, "filters": 4, "activation": "gelu"}
            ),
            "unknown activation",
        ),
    ],
)
def test_inconsistent_manifest(
    artifact: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit_manifest(artifact, change)
    err = rejected(artifact)
    assert err.path == str(artifact / "manifest.json")
    assert message in str(err)


def test_manifest_channel_count_differs_from_the_model(artifact: Path) -> None:
    def two_channels(m: dict[str, Any]) -> None:
        m["channels"] = ["vibration", "temperature"]
        m["units"] = ["g", "degC"]
        m["scaler"] = {"kind": "standard", "mean": [0.1, 20.0], "scale": [0.02, 1.0]}
        m["probe"]["inputs"] = [[[0.1, 20.0]] * 4]
        m["probe"]["outputs"] = [[[0.1, 20.0]] * 4]

    edit_manifest(artifact, two_channels)
    err = rejected(artifact)
    assert err.path == str(artifact / "manifest.json")
    assert "'channels' says 2 but the model has 1" in str(err)


def test_manifest_architecture_differs_from_the_model(artifact: Path) -> None:
    edit_manifest(artifact, lambda m: m["architecture"].update(units=32))
    err = rejected(artifact)
    assert err.path == str(artifact / "manifest.json")
    assert "lstm(32)" in str(err) and "lstm(64)" in str(err)


def test_probe_outputs_that_do_not_reproduce(artifact: Path) -> None:
    def nudge(m: dict[str, Any]) -> None:
        m["probe"]["outputs"][0][10][0] += 1e-3  # ~0.06 scaled units

    edit_manifest(artifact, nudge)
    err = rejected(artifact)
    assert err.path == str(artifact / "model.keras")
    assert "does not reproduce the probe" in str(err)


def test_weights_that_do_not_match_the_probe(artifact: Path) -> None:
    # Same architecture, slightly different weights: only the probe can tell.
    path = artifact / "model.keras"
    with zipfile.ZipFile(path) as z:
        buffer = io.BytesIO(z.read("model.weights.h5"))
    with h5py.File(buffer, "r+") as h5:
        h5["layers/dense/vars/1"][...] += 0.01
    replace_member(path, "model.weights.h5", buffer.getvalue())
    err = rejected(artifact)
    assert err.path == str(path)
    assert "does not reproduce the probe" in str(err)


def test_manifest_declares_a_convolution_the_model_lacks(artifact: Path) -> None:
    edit_manifest(
        artifact,
        lambda m: m["architecture"].update(
            conv={"kernel_size": 3, "filters": 4, "activation": "relu"}
        ),
    )
    err = rejected(artifact)
    assert err.path == str(artifact / "manifest.json")
    assert "'architecture.conv' says Conv1D(kernel 3, 4 filters, relu)" in str(err)
    assert "the model has none" in str(err)


@pytest.fixture
def conv_artifact(build_artifact: BuildArtifact, tmp_path: Path) -> Path:
    """A writable copy of a small artifact with a convolutional front-end."""
    out = tmp_path / "conv"
    shutil.copytree(build_artifact(units=8, channels=2, conv_kernel=3), out)
    return out


def test_the_unmodified_conv_copy_loads(conv_artifact: Path) -> None:
    model = load_streaming_model(conv_artifact)
    assert model.architecture.conv_kernel == 3 and model.state_size == 16 + 2 * 2


@pytest.mark.parametrize(
    ("key", "value"),
    [("padding", "same"), ("dilation_rate", [2]), ("strides", [2]), ("activation", "gelu")],
)
def test_unsupported_convolution_option(conv_artifact: Path, key: str, value: object) -> None:
    path = conv_artifact / "model.keras"
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
    (conv,) = [c for c in config["config"]["layers"] if c["class_name"] == "Conv1D"]
    conv["config"][key] = value
    replace_member(path, "config.json", json.dumps(config).encode())
    err = rejected(conv_artifact)
    assert err.path == str(path)
    assert key in str(err) and "not supported" in str(err)


def test_manifest_convolution_differs_from_the_model(conv_artifact: Path) -> None:
    edit_manifest(conv_artifact, lambda m: m["architecture"]["conv"].update(kernel_size=5))
    err = rejected(conv_artifact)
    assert err.path == str(conv_artifact / "manifest.json")
    assert "kernel 5" in str(err) and "kernel 3" in str(err)
