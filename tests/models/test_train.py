"""``vibewatch train`` and ``vibewatch evaluate forecast`` end to end on a small dataset."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import evaluate, train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight engines, two channels: a slow level, a damped oscillation and noise."""
    root = tmp_path_factory.mktemp("fleet")
    rng = np.random.default_rng(5)
    for k in range(8):
        t = np.arange(240)
        level = rng.uniform(0.5, 1.5)
        a = level + 0.3 * np.sin(t / 7 + k) + rng.normal(0, 0.05, t.size)
        b = 10 + 0.01 * t + rng.normal(0, 0.2, t.size)
        lines = ["time,rms,temp"] + [
            f"{i},{x:.5f},{y:.4f}" for i, x, y in zip(t, a, b, strict=True)
        ]
        (root / f"engine-{k}.csv").write_text("\n".join(lines) + "\n")
    return root


def parse(module: Any, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def train_args(data: Path, out: Path, *extra: str) -> argparse.Namespace:
    return parse(
        train,
        [
            "--data", f"csv:{data}", "--out", str(out), "--val", "engine-1",
            "--test", "engine-2,engine-3", "--units", "8", "--sequence-length", "32",
            "--epochs", "4", "--batch-size", "16", "--augment", "1", "--verbose", "0",
            *extra,
        ],
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    for name in ("a", "b"):
        assert train.run(train_args(fleet, root / name, "--seed", "3")) == 0
    return root / "a", root / "b"


def test_artifact_contents(trained: tuple[Path, Path]) -> None:
    artifact, _ = trained
    names = {p.name for p in artifact.iterdir()}
    assert {"model.keras", "manifest.json", "model_card.md"} <= names
    for png in ("loss.png", "prediction.png", "errors.png"):
        assert (artifact / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["channels"] == ["rms", "temp"]
    assert manifest["data"]["split"]["test"] == ["engine-2", "engine-3"]
    assert len(manifest["data"]["sha256"]) == 64
    assert manifest["training"]["epochs_run"] == len(manifest["training"]["history"]["loss"])
    assert {"val/model", "test/last_value"} <= set(manifest["metrics"]["summary"])
    assert sum(p.stat().st_size for p in artifact.iterdir()) < 2_000_000
    assert (
        "![prediction against actual](prediction.png)" in (artifact / "model_card.md").read_text()
    )


def test_same_data_and_seed_give_the_same_metrics(trained: tuple[Path, Path]) -> None:
    a, b = (json.loads((p / "manifest.json").read_text()) for p in trained)
    for ra, rb in zip(a["metrics"]["rows"], b["metrics"]["rows"], strict=True):
        assert ra["method"] == rb["method"] and ra["channel"] == rb["channel"]
        assert abs(ra["rmse"] - rb["rmse"]) <= 1e-6 and abs(ra["mae"] - rb["mae"]) <= 1e-6
    np.testing.assert_allclose(
        a["training"]["history"]["val_loss"], b["training"]["history"]["val_loss"], atol=1e-6
    )


def test_trained_artifact_loads_in_the_service_runtime(trained: tuple[Path, Path]) -> None:
    from service.model import load_streaming_model

    model = load_streaming_model(trained[0])
    assert model.channels == ("rms", "temp") and model.state_size == 16
    assert model.probe_error() <= 1e-5


def test_evaluate_reports_held_out_engines(
    trained: tuple[Path, Path], fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(evaluate, ["--model", str(trained[0]), "--data", f"csv:{fleet}", "--json"])
    assert evaluate.run(args) == 0
    report = json.loads(capsys.readouterr().out)
    (ds,) = report["datasets"]
    assert ds["held_out"] == "training split (engine)"
    assert ds["engines"] == {"test": ["engine-2", "engine-3"]}
    methods = {r["method"] for r in ds["rows"]}
    assert methods == {"model", "last_value", f"moving_average_{ds['moving_average_window']}"}
    assert {r["channel"] for r in ds["rows"]} == {"rms", "temp"}

    assert evaluate.run(parse(evaluate, ["--model", str(trained[0]), "--data", str(fleet)])) == 0
    table = capsys.readouterr().out
    assert "last_value" in table and "RMSE" in table


def test_evaluate_on_unseen_data_holds_out_engines(
    trained: tuple[Path, Path], fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for k in range(4):  # different bytes, so not the training data
        text = (fleet / f"engine-{k}.csv").read_text().replace("time,", "t,")
        (tmp_path / f"other-{k}.csv").write_text(text)
    args = parse(evaluate, ["--model", str(trained[0]), "--data", str(tmp_path), "--json"])
    assert evaluate.run(args) == 0
    (ds,) = json.loads(capsys.readouterr().out)["datasets"]
    assert ds["held_out"] == "unseen data (engines)"
    assert len(ds["engines"]["test"]) == 3


def test_evaluate_few_unseen_engines_split_in_time_with_channel_map(
    trained: tuple[Path, Path], fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for k in range(2):
        text = (fleet / f"engine-{k}.csv").read_text().replace("rms,temp", "a,b")
        (tmp_path / f"other-{k}.csv").write_text(text)
    argv = ["--model", str(trained[0]), "--data", f"csv:{tmp_path}", "--json"]
    assert evaluate.run(parse(evaluate, argv)) == 2  # channels a, b are not the model's
    capsys.readouterr()
    argv += ["--channel-map", "a=rms", "--channel-map", "b=temp"]
    assert evaluate.run(parse(evaluate, argv)) == 0
    (ds,) = json.loads(capsys.readouterr().out)["datasets"]
    assert ds["held_out"] == "unseen data (time)"
    assert ds["engines"] == {"test": ["other-0", "other-1"]}
    assert all(r["count"] > 100 for r in ds["rows"])


def test_cli_modules_do_not_import_tensorflow() -> None:
    code = (
        "import sys, models.train, models.evaluate;"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_fine_tune_from_an_artifact(
    trained: tuple[Path, Path], fleet: Path, tmp_path: Path
) -> None:
    parent = json.loads((trained[0] / "manifest.json").read_text())
    out = tmp_path / "tuned"
    args = parse(
        train,
        [
            "--data", f"csv:{fleet}", "--out", str(out), "--init-from", str(trained[0]),
            "--val", "engine-4", "--test", "engine-5", "--sequence-length", "32",
            "--epochs", "2", "--batch-size", "16", "--augment", "0", "--verbose", "0",
            "--units", "8",  # the artifact's own value: not a difference
        ],
    )  # fmt: skip
    assert train.run(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["architecture"] == parent["architecture"]
    assert manifest["scaler"] == parent["scaler"]
    assert manifest["training"]["init_from"]["version"] == parent["version"]
    assert manifest["training"]["learning_rate"] == train.FINE_TUNE_LEARNING_RATE
    methods = {r["method"] for r in manifest["metrics"]["rows"]}
    assert "before_fine_tuning" in methods
    assert "fine-tuned from" in (out / "model_card.md").read_text()
    from service.model import load_streaming_model

    assert load_streaming_model(out).probe_error() <= 1e-5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--units", "16"], "--units 16 (artifact: 8)"),
        (["--cell", "gru", "--conv-kernel", "3"], "--cell gru (artifact: lstm); --conv-kernel 3"),
        (["--channels", "temp,rms"], "the artifact models channels ['rms', 'temp']"),
        (["--channels", "rms"], "the data gives ['rms']"),
    ],
)
def test_fine_tune_refuses_a_different_architecture_or_channels(
    trained: tuple[Path, Path],
    fleet: Path,
    tmp_path: Path,
    extra: list[str],
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    argv = ["--data", f"csv:{fleet}", "--out", str(tmp_path / "x"), "--init-from",
            str(trained[0]), "--val", "engine-4", *extra]  # fmt: skip
    assert train.run(parse(train, argv)) == 2
    assert message in caplog.text
    assert not (tmp_path / "x").exists()


def test_fine_tune_names_missing_channels(
    trained: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for k in range(3):
        lines = ["time,rms"] + [f"{i},{np.sin(i / 5):.4f}" for i in range(100)]
        (data / f"e{k}.csv").write_text("\n".join(lines) + "\n")
    argv = ["--data", f"csv:{data}", "--out", str(tmp_path / "x"), "--init-from",
            str(trained[0]), "--val", "e1"]  # fmt: skip
    assert train.run(parse(train, argv)) == 2
    assert "no channel(s) ['temp']" in caplog.text


def test_training_keeps_tensorflow_quiet(fleet: Path, tmp_path: Path) -> None:
    argv = [
        "train", "--data", f"csv:{fleet}", "--out", str(tmp_path / "q"), "--val", "engine-1",
        "--test", "engine-2", "--units", "4", "--sequence-length", "32", "--epochs", "1",
        "--augment", "0", "--verbose", "0",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", *argv],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for noise in ("cuInit", "absl::InitializeLog", "oneDNN", "cuda", "NodeDef"):
        assert noise not in result.stderr, result.stderr
    assert "artifact" in result.stderr  # our own log lines still get through
