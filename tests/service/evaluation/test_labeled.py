"""SKAB's protocol in ``vibewatch evaluate labeled`` on small synthetic CSVs (no SKAB data
needed): the first rows of each file commission its engine and are neither scored nor
counted; the rest is scored point-wise and NAB-style."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.config import ScoringSettings
from service.evaluation.datasets import load_labeled
from service.evaluation.labeled import MODEL, evaluate_files, fit_rows
from service.evaluation.nab_data import DatasetError

T0 = np.datetime64("2020-03-09T10:00:00")
N = 1200
FIT = 300


def _write(path: Path, seed: int, step_s: int = 1, gap_at: int | None = None) -> None:
    """Two sensors at 1 Hz (``step_s``), SKAB's label columns. A labelled disturbance in
    the commissioning rows (rows 100-149, which the protocol must not count) and a fault
    at rows 800-999 (a level shift of both sensors, which it must find)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 2)) * [0.01, 2.0] + [0.2, 120.0]
    lab = np.zeros(N, dtype=int)
    lab[100:150] = 1
    x[800:1000] += [0.08, 16.0]
    lab[800:1000] = 1
    secs = np.arange(N) * step_s
    if gap_at is not None:
        secs[gap_at:] += 2 * 86_400  # a silence the service takes as a restart
    times = [str(T0 + np.timedelta64(int(s), "s")).replace("T", " ") for s in secs]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "Accelerometer1RMS", "Volume Flow RateRMS", "anomaly",
                    "changepoint"])
        w.writerows([times[i], *x[i], lab[i], 0] for i in range(N))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    for k in range(3):
        _write(tmp_path / f"valve1_{k}.csv", k)
    return tmp_path


def test_fit_rows_by_readings_and_by_duration(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", 0, step_s=2)
    (s,) = load_labeled(tmp_path, "anomaly", "timestamp", None)
    assert fit_rows(s, None, None) == 0
    assert fit_rows(s, 400, None) == 400
    assert fit_rows(s, None, 400.0) == 200  # 2 s apart: 200 rows in the first 400 s
    with pytest.raises(DatasetError, match="leave none"):
        fit_rows(s, N, None)
    with pytest.raises(DatasetError, match="at least 2"):
        fit_rows(s, 1, None)


def test_the_commissioning_rows_are_neither_scored_nor_counted(runs: Path) -> None:
    series = load_labeled(runs, "anomaly", "timestamp", None)
    files = evaluate_files(series, MODEL, ScoringSettings(), readings=FIT)
    for f in files:
        assert f.fit == FIT and len(f.labels) == N - FIT and len(f.status) == N - FIT
        assert f.labels.sum() == 200  # the disturbance at rows 100-149 is not counted
        assert np.all(f.status > 0)  # commissioning ended exactly at row FIT
        assert f.flags(3)[800 - FIT : 1000 - FIT].mean() > 0.8  # the fault is found
    # without the protocol every row counts, the commissioning rows included
    whole = evaluate_files(series, MODEL, ScoringSettings(), readings=None)
    assert all(len(f.labels) == N for f in whole)
    assert np.all(whole[0].status[:FIT] == 0)  # the default commissioning: 600 s


def test_evaluate_labeled_with_fit_readings_and_fit_duration(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the deviation from the commissioning baseline (level rate 0), an alarm cleared 30 s
    # after its fault (the default holds it for an hour)
    base = ["evaluate", "labeled", "--data", str(runs), "--label", "anomaly", "--clear-s",
            "30", "--level-rate", "0"]
    by_rows, by_time = tmp_path / "rows.json", tmp_path / "time.json"
    assert main([*base, "--fit-readings", str(FIT), "--json", str(by_rows)]) == 0
    text = capsys.readouterr().out
    assert f"the first {FIT} rows of each file commission" in text
    assert f"freeze_after={FIT}" in text  # the standardisation is fitted on them too
    assert f"3 files, {3 * (N - FIT)} rows scored" in text
    assert "NAB-style" in text
    assert main([*base, "--fit-duration", str(FIT), "--json", str(by_time)]) == 0
    rows, timed = json.loads(by_rows.read_text()), json.loads(by_time.read_text())
    assert rows["fit_rows"] == {f"valve1_{k}.csv": FIT for k in range(3)}
    assert rows["pooled"] == timed["pooled"]  # at 1 Hz, 300 s are the first 300 rows
    pooled = rows["pooled"]
    assert pooled["f1"] > 0.7 and pooled["missed_alarm_rate"] < 0.3
    assert pooled["false_alarm_rate"] < 0.1
    # both at once is a usage error
    with pytest.raises(SystemExit):
        main([*base, "--fit-readings", "3", "--fit-duration", "3"])


def test_a_restart_inside_the_scored_rows_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "gap.csv", 0, gap_at=600)
    series = load_labeled(tmp_path, "anomaly", "timestamp", None)
    with pytest.raises(DatasetError, match="not exactly the first"):
        evaluate_files(series, MODEL, ScoringSettings(), readings=FIT)
