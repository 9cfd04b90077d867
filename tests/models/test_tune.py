"""``vibewatch tune`` end to end: a tiny search on a small fleet, the chosen model shipped."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from models import tune


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven engines, three channels: oscillations, a drift and noise."""
    root = tmp_path_factory.mktemp("tune-fleet")
    rng = np.random.default_rng(11)
    for k in range(7):
        t = np.arange(160)
        a = rng.uniform(0.5, 1.5) + 0.3 * np.sin(t / 6 + k) + rng.normal(0, 0.05, t.size)
        b = 5 + 0.02 * t + rng.normal(0, 0.1, t.size)
        c = np.cos(t / 9) + rng.normal(0, 0.05, t.size)
        lines = ["time,a,b,c"] + [
            f"{i},{x:.5f},{y:.4f},{z:.4f}" for i, x, y, z in zip(t, a, b, c, strict=True)
        ]
        (root / f"unit-{k}.csv").write_text("\n".join(lines) + "\n")
    return root


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    tune.add_arguments(parser)
    return parser.parse_args(argv)


def test_tiny_search_writes_the_chosen_model(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tuned"
    args = parse(
        [
            "--data", f"csv:{fleet}", "--out", str(out), "--val", "unit-1,unit-2",
            "--test", "unit-3", "--trials", "2", "--epochs", "2", "--units-choices", "4,6",
            "--layers-choices", "1", "--conv-kernels", "0,3", "--sequence-lengths", "24,32",
            "--conv-filters", "3", "--augment", "0", "--seed", "1",
        ]
    )  # fmt: skip
    assert tune.run(args) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    search = manifest["tuning"]
    assert search["library"] == "optuna" and len(search["trials"]) == 2
    values = {t["number"]: t["value"] for t in search["trials"]}
    assert all(v is not None and v > 0 for v in values.values())
    assert values[search["chosen"]] == min(values.values())
    chosen = next(t for t in search["trials"] if t["number"] == search["chosen"])
    params = chosen["params"]
    arch = manifest["architecture"]
    assert (arch["cell"], arch["units"], arch["layers"]) == (
        params["cell"], params["units"], params["layers"],
    )  # fmt: skip
    assert (arch["conv"] or {}).get("kernel_size", 0) == params["conv_kernel"]
    assert manifest["sequence_length"] == params["sequence_length"]
    assert manifest["channels"] == ["a", "b", "c"]
    # Chosen on validation engines, reported on the test engine the search never saw.
    assert manifest["data"]["split"]["test"] == ["unit-3"]
    assert {r["part"] for r in manifest["metrics"]["rows"]} == {"val", "test"}
    assert "test" in printed and "last_value" in printed
    card = (out / "model_card.md").read_text()
    assert "## Hyper-parameter search" in card and "**(chosen)**" in card

    from service.model import load_streaming_model

    model = load_streaming_model(out)
    assert model.probe_error() <= 1e-5
    # The chosen trial's validation score is the shipped model's: same weights.
    from models.artifact import load_keras
    from models.fitting import validation_score
    from models.forecast import Scaler
    from models.splits import split_dataset
    from models.train import load_data

    ds = load_data(args)
    split = split_dataset(ds, "engine", val=["unit-1", "unit-2"], test=["unit-3"])
    scaler = Scaler(tuple(manifest["scaler"]["mean"]), tuple(manifest["scaler"]["scale"]))
    score = validation_score(load_keras(out), scaler, split.val)
    assert score == pytest.approx(values[search["chosen"]], rel=1e-5)


def test_bad_search_options_are_refused(fleet: Path, tmp_path: Path) -> None:
    base = ["--data", f"csv:{fleet}", "--out", str(tmp_path / "x"), "--val", "unit-1"]
    assert tune.run(parse([*base, "--cells", "lstm,transformer"])) == 2
    assert tune.run(parse([*base, "--conv-kernels", "-1"])) == 2
    with pytest.raises(SystemExit):
        parse([*base, "--units-choices", "a,b"])
    assert not (tmp_path / "x").exists()
