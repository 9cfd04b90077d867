"""The evaluation commands end to end on small synthetic data (and IMS when present)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.config import DEFAULT_ARTIFACT
from service.evaluation.labeled import onset_windows, point_scores
from service.evaluation.nab_data import load_nab

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _write_nab(root: Path) -> None:
    rng = np.random.default_rng(0)
    windows: dict[str, list[list[str]]] = {}
    t0 = np.datetime64("2020-01-01T00:00:00")
    for k, name in enumerate(["a.csv", "b.csv"]):
        n = 1500
        x = 10 + rng.normal(scale=0.5, size=n)
        onset = 900 + 100 * k
        x[onset:] += 8.0  # a level shift the detector should find
        times = [str(t0 + np.timedelta64(5 * i, "m")).replace("T", " ") for i in range(n)]
        path = root / "data" / "synth" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value"])
            w.writerows(zip(times, x, strict=True))
        windows[f"synth/{name}"] = [[times[onset - 40], times[onset + 40]]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_evaluate_nab_on_unseen_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_nab(tmp_path / "nab")
    out = tmp_path / "out"
    args = ["evaluate", "nab", "--data", str(tmp_path / "nab"), "--out", str(out), "--holdout"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "standard" in text and "reward_low_FN_rate" in text and "held out" in text
    files = load_nab(tmp_path / "nab")
    for f in files:
        path = out / "vibewatch" / "synth" / f"vibewatch_{f.name.split('/')[1]}"
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == f.labeled.n_rows
        assert [int(r["label"]) for r in rows] == f.labels.tolist()
        scores = np.array([float(r["anomaly_score"]) for r in rows])
        assert np.all((scores >= 0) & (scores <= 1))
    summary = json.loads((out / "vibewatch_scores.json").read_text())
    # Both level shifts are found inside their windows at the optimal threshold.
    assert summary["profiles"]["standard"]["tp"] == 2
    assert set(summary["holdout"]["standard"]) == {"A", "B", "mean"}


def test_point_scores_and_onset_windows() -> None:
    labels = np.zeros(100, dtype=bool)
    labels[10:20] = True
    labels[60:65] = True
    flags = np.zeros(100, dtype=bool)
    flags[15:25] = True
    p = point_scores(flags, labels)
    assert p.precision == pytest.approx(0.5) and p.recall == pytest.approx(5 / 15)
    assert p.f1 == pytest.approx(2 * 5 / (2 * 5 + 5 + 10))
    assert p.false_alarm_rate == pytest.approx(5 / 85)
    assert p.missed_alarm_rate == pytest.approx(10 / 15)
    assert onset_windows(labels) == ((10, 14), (60, 64))


def test_evaluate_labeled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    for k in range(2):
        n = 1200
        x = rng.normal(size=(n, 2)) * [1.0, 50.0] + [0.0, 1000.0]
        lab = np.zeros(n, dtype=int)
        x[800:850] += [8.0, 400.0]
        lab[800:850] = 1
        with (tmp_path / f"e{k}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "a", "b", "label"])
            w.writerows([i, *x[i], lab[i]] for i in range(n))
    assert main(["evaluate", "labeled", "--data", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    all_row = next(line for line in text.splitlines() if line.startswith("ALL"))
    precision = float(all_row.split()[1])
    assert precision > 0.9
    assert "standard" in text


@pytest.mark.skipif(not (DATA / "ims").is_dir(), reason="no IMS data")
def test_lead_time_ims2_target(tmp_path: Path) -> None:
    path = tmp_path / "leads.json"
    assert main(["evaluate", "lead-time", "--dataset", "ims2", "--json", str(path)]) == 0
    leads = {e["engine"]: e for e in json.loads(path.read_text())}
    b1 = leads["Bearing 1"]
    # Target of issue 4: first alarm >= 72 h before the end, no false alarm before it.
    assert b1["lead"] is not None and b1["lead"] >= 72.0
    assert b1["false_alarms"] == 0


@pytest.mark.skipif(
    not (DATA / "ims").is_dir() or not (DEFAULT_ARTIFACT / "manifest.json").is_file(),
    reason="no IMS data or no bundled model",
)
def test_lead_time_ims2_target_with_the_service_lstm(tmp_path: Path) -> None:
    # The service's own configuration: the bundled IMS LSTM and the default scoring.
    path = tmp_path / "leads.json"
    args = ["evaluate", "lead-time", "--dataset", "ims2", "--predictor", "lstm"]
    assert main([*args, "--json", str(path)]) == 0
    b1 = next(e for e in json.loads(path.read_text()) if e["engine"] == "Bearing 1")
    assert b1["lead"] is not None and b1["lead"] >= 72.0
    assert b1["false_alarms"] == 0
