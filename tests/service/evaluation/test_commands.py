"""The evaluation commands end to end on small synthetic data and the shipped IMS runs: what
a fresh clone can run with the data it has or is given by path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.evaluation.datasets import load_cmapss_run, load_labeled
from service.evaluation.labeled import onset_windows, point_scores
from service.evaluation.nab_data import load_nab

T0 = np.datetime64("2020-01-01T00:00:00")


def _write_nab(root: Path, categories: tuple[str, ...] = ("synth",)) -> None:
    rng = np.random.default_rng(0)
    windows: dict[str, list[list[str]]] = {}
    for c, category in enumerate(categories):
        for k, name in enumerate(["a.csv", "b.csv"]):
            n = 1500
            x = 10 + rng.normal(scale=0.5, size=n)
            onset = 900 + 100 * k + 37 * c
            x[onset:] += 8.0  # a level shift the detector should find
            times = [str(T0 + np.timedelta64(5 * i, "m")).replace("T", " ") for i in range(n)]
            path = root / "data" / category / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["timestamp", "value"])
                w.writerows(zip(times, x, strict=True))
            windows[f"{category}/{name}"] = [[times[onset - 40], times[onset + 40]]]
    (root / "labels").mkdir(exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_evaluate_nab_on_an_unseen_layout(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _write_nab(tmp_path / "nab", ("one", "two"))
    out = tmp_path / "out"
    args = ["evaluate", "nab", "--data", str(tmp_path / "nab"), "--out", str(out), "--held-out"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "reward_low_FN_rate" in text and "held out" in text and "in-sample" in text
    files = load_nab(tmp_path / "nab")
    for f in files:
        category, name = f.name.split("/")
        path = out / "vibewatch" / category / f"vibewatch_{name}"
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == f.labeled.n_rows
        assert [int(r["label"]) for r in rows] == f.labels.tolist()
        scores = np.array([float(r["anomaly_score"]) for r in rows])
        assert np.all(scores >= 0)
    summary = json.loads((out / "vibewatch_scores.json").read_text())
    # Every level shift is found inside its window at the best threshold ...
    assert summary["profiles"]["standard"]["tp"] == 4
    # ... and at a threshold chosen on the other category.
    assert set(summary["held_out"]["standard"]) == {"normalised", "one", "two"}
    assert summary["held_out"]["standard"]["normalised"] > 50


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


def _write_skab_like(root: Path) -> None:
    """Two sensors, SKAB's label columns (which would give the answer away), 1 s apart."""
    rng = np.random.default_rng(1)
    for k in range(2):
        n = 1500
        x = rng.normal(size=(n, 2)) * [1.0, 50.0] + [0.0, 1000.0]
        lab = np.zeros(n, dtype=int)
        x[1100:1150] += [8.0, 400.0]
        lab[1100:1150] = 1
        change = np.zeros(n, dtype=int)
        change[[1100, 1149]] = 1
        times = [str(T0 + np.timedelta64(i, "s")).replace("T", " ") for i in range(n)]
        with (root / f"e{k}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["datetime", "Accelerometer1RMS", "Pressure", "anomaly", "changepoint"])
            w.writerows([times[i], *x[i], lab[i], change[i]] for i in range(n))


def test_evaluate_labeled_never_feeds_labels_to_the_detector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_skab_like(tmp_path)
    series = load_labeled(tmp_path, "anomaly", "datetime", None)
    assert [s.channels for s in series] == [("Accelerometer1RMS", "Pressure")] * 2
    assert series[0].ts_ms[1] - series[0].ts_ms[0] == 1000  # the file's own times
    args = ["evaluate", "labeled", "--data", str(tmp_path), "--label", "anomaly",
            "--time", "datetime", "--commission-s", "0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "channels: Accelerometer1RMS, Pressure" in text
    all_row = next(line for line in text.splitlines() if line.startswith("ALL"))
    assert float(all_row.split()[2]) > 0.5  # recall: the faults are found from the sensors
    with pytest.raises(Exception, match="label columns"):
        load_labeled(tmp_path, "anomaly", "datetime", ["Pressure", "changepoint"])


def test_lead_time_on_the_shipped_ims_runs(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Runs from a fresh clone: the IMS tests ship in models/data/ims."""
    path = tmp_path / "leads.json"
    assert main(["evaluate", "lead-time", "--ims", "ims2", "--json", str(path)]) == 0
    (run,) = json.loads(path.read_text())
    units = {u["unit"]: u for u in run["units"]}
    assert set(units) == {"Bearing 1", "Bearing 2", "Bearing 3", "Bearing 4"}
    assert units["Bearing 1"]["fails"] and not units["Bearing 2"]["fails"]
    assert "ims2" in capsys.readouterr().out


def _write_run(path: Path) -> None:
    """Three pumps an hour apart for 20 days; pump-b's level climbs over its last 3 days."""
    rng = np.random.default_rng(2)
    n = 480
    level = np.ones((n, 3)) * [1.0, 2.0, 1.5]
    climb = np.clip(np.arange(n) - (n - 72), 0, None) / 72.0
    level[:, 1] *= 1 + 3 * climb**2
    values = level * (1 + rng.normal(scale=0.02, size=(n, 3)))
    times = [str(T0 + np.timedelta64(i, "h")).replace("T", " ") for i in range(n)]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "pump-a", "pump-b", "pump-c"])
        w.writerows([times[i], *values[i]] for i in range(n))


def test_lead_time_on_any_run_to_failure_csv(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _write_run(tmp_path / "pumps.csv")
    path = tmp_path / "leads.json"
    args = ["evaluate", "lead-time", "--data", str(tmp_path / "pumps.csv"), "--failing",
            "pump-b", "--predictor", "ewma", "--level-rate", "0.01", "--json", str(path)]
    assert main(args) == 0
    (run,) = json.loads(path.read_text())
    units = {u["unit"]: u for u in run["units"]}
    assert units["pump-b"]["fails"] and units["pump-b"]["lead"] is not None
    assert units["pump-a"]["first_alarm"] is None and units["pump-c"]["first_alarm"] is None
    with pytest.raises(SystemExit):
        main(["evaluate", "lead-time", "--data", str(tmp_path / "pumps.csv")])  # no --failing


def _write_cmapss(path: Path) -> None:
    """Six units whose sensors drift away over their last 60 cycles."""
    rng = np.random.default_rng(3)
    rows = []
    for unit in range(1, 7):
        life = 150 + 20 * unit
        for c in range(1, life + 1):
            drift = max(0, c - (life - 60)) / 60.0
            sensors = 100 + rng.normal(scale=1.0, size=21) + 8 * drift**2
            rows.append([unit, c, 0.0, 0.0, 100.0, *sensors])
    np.savetxt(path, np.array(rows), fmt="%.4f")


def test_cut_cmapss_makes_a_test_set_that_lead_time_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = tmp_path / "train_FD009.txt"
    _write_cmapss(train)
    assert main(["evaluate", "cut-cmapss", "--data", str(train), "--out", str(tmp_path),
                 "--seed", "3"]) == 0
    test, rul = tmp_path / "test_FD009.txt", tmp_path / "RUL_FD009.txt"
    full, cut = load_cmapss_run(train), load_cmapss_run(test, rul)
    for u, v in zip(full.units, cut.units, strict=True):
        # the cut unit ends earlier but fails at the same moment
        assert len(v.ts_ms) <= len(u.ts_ms) and v.end_ms == u.end_ms
    # the same seed cuts the same way
    assert main(["evaluate", "cut-cmapss", "--data", str(train), "--out",
                 str(tmp_path / "again"), "--seed", "3"]) == 0
    assert (tmp_path / "again" / "RUL_FD009.txt").read_text() == rul.read_text()
    path = tmp_path / "leads.json"
    assert main(["evaluate", "lead-time", "--cmapss", str(test), "--rul", str(rul),
                 "--json", str(path)]) == 0
    (run,) = json.loads(path.read_text())
    assert len(run["units"]) == 6
    assert "1 cycle = 1 h" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["evaluate", "nab", "--data", "/nowhere/nab", "--out", "/tmp/x"], "--data"),
        (["evaluate", "lead-time", "--cmapss", "/nowhere/train_FD001.txt"], "--cmapss"),
        (["evaluate", "lead-time", "--ims-dir", "/nowhere"], "--ims-dir"),
        (["evaluate", "select", "--nab", "/nowhere", "--skip", "cmapss"], "--nab"),
    ],
)
def test_a_missing_data_path_is_one_clear_error(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and "/nowhere" in err
