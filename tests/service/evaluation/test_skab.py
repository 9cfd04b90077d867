"""``vibewatch evaluate select-skab``: fault types from file names, every fault type scored
with settings chosen on the others, and the command end to end on synthetic SKAB-like runs
(and on skab-dev when ../shared is beside the checkout)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.evaluation import skab
from service.evaluation.datasets import LabeledSeries
from service.evaluation.labeled import PointScores, Scored
from service.evaluation.nab_data import DatasetError

T0 = np.datetime64("2020-03-09T10:00:00")
SKAB_DEV = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "skab-dev"


def test_fault_types_come_from_the_file_names() -> None:
    assert skab.fault_type("valve1_12.csv") == "valve1"
    assert skab.fault_type("sub/valve2_3.csv") == "valve2"
    assert skab.fault_type("other_1.csv") == skab.fault_type("other_2.csv") == "leaks"
    assert skab.fault_type("other_5.csv") == "imbalance"
    assert skab.fault_type("other_10.csv") == "water"
    assert skab.fault_type("other_13.csv") == "cavitation"
    for name in ("other_3.csv", "pump.csv", "valve1.csv"):
        with pytest.raises(DatasetError, match="fault type"):
            skab.fault_type(name)


def _series(name: str, n: int = 10) -> LabeledSeries:
    labels = np.zeros(n, dtype=bool)
    labels[5:] = True
    return LabeledSeries(name, ("x",), np.zeros((n, 1)), np.arange(n, dtype=np.int64),
                         labels)


def _scored(s: LabeledSeries, right: bool) -> Scored:
    status = np.where(s.labels == right, 3, 1).astype(np.int8)  # all right or all wrong
    return Scored(s.name, 0, s.labels, status)


def test_every_fault_type_is_scored_with_settings_chosen_on_the_others() -> None:
    """Candidate 0 is right on valve1 only, candidate 1 on the two other types only. Each
    type counts once, so on everything 1 wins although valve1's three runs give 0 the
    better pooled F1; held out every type gets a candidate that is wrong on it."""
    runs = [_series(f"valve1_{k}.csv") for k in range(3)] + [
        _series("other_5.csv"), _series("other_13.csv")]
    cands = skab.GRIDS["quick"]
    files = [[_scored(s, s.name.startswith("valve1")) for s in runs],
             [_scored(s, not s.name.startswith("valve1")) for s in runs]]
    o = skab.Outcomes(runs, 0, list(cands), files)
    everything = range(len(runs))
    assert o.pooled(0, everything).f1 > o.pooled(1, everything).f1
    assert skab.choose(o, everything) == 1
    report = skab.select(o)
    folds = report["held_out"]["folds"]
    assert folds["valve1"]["candidate"] == 1
    # trained on valve1 and one other type, both candidates are right on one of the two:
    # equal F1 and FAR, the grid's order decides
    assert folds["imbalance"]["candidate"] == folds["cavitation"]["candidate"] == 0
    # every held-out run was scored with the wrong candidate: nothing right held out
    assert report["held_out"]["pooled"]["f1"] == 0.0
    assert report["in_sample"]["candidate"] == 1
    assert report["in_sample"]["pooled"]["missed_alarm_rate"] == pytest.approx(0.6)


def test_equal_f1_is_broken_by_the_lower_false_alarm_rate() -> None:
    """Candidate 0 flags every row (F1 2/3 with every normal row flagged), candidate 1 half
    the anomalous rows and nothing else (F1 2/3, no false alarm): 1 is chosen."""
    n = 20
    labels = np.zeros(n, dtype=bool)
    labels[10:] = True
    runs = [LabeledSeries(name, ("x",), np.zeros((n, 1)), np.arange(n, dtype=np.int64),
                          labels) for name in ("valve1_0.csv", "other_5.csv")]
    every = np.full(n, 3, dtype=np.int8)
    half = np.where(np.arange(n) >= 15, 3, 1).astype(np.int8)
    files = [[Scored(r.name, 0, labels, every) for r in runs],
             [Scored(r.name, 0, labels, half) for r in runs]]
    o = skab.Outcomes(runs, 0, list(skab.GRIDS["quick"]), files)
    assert o.pooled(0, [0]).f1 == pytest.approx(o.pooled(1, [0]).f1)
    assert skab.choose(o, [0, 1]) == 1


def test_targets_missed() -> None:
    ok = PointScores(0.8, 0.8, 0.80, 0.05, 0.2)
    assert skab.missed(ok) == 0
    assert skab.missed(PointScores(1.0, 0.5, 0.9, 0.2, 0.3)) == 2
    assert skab.missed(PointScores(*[float("nan")] * 5)) == 3


def _write_runs(root: Path) -> None:
    """SKAB-like runs of two sensors: the fault (rows 600-899) shifts the flow, and the
    first rows hold a labelled disturbance that the protocol must not count."""
    rng = np.random.default_rng(5)
    for name in ("valve1_0", "valve1_1", "other_5", "other_10"):
        n = 1100
        x = rng.normal(size=(n, 2)) * [0.01, 1.0] + [0.2, 32.0]
        lab = np.zeros(n, dtype=int)
        lab[50:80] = 1
        x[600:900, 1] -= 12.0
        lab[600:900] = 1
        times = [str(T0 + np.timedelta64(i, "s")).replace("T", " ") for i in range(n)]
        with (root / f"{name}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "Accelerometer1RMS", "Volume Flow RateRMS", "anomaly",
                        "changepoint"])
            w.writerows([times[i], *x[i], lab[i], 0] for i in range(n))
    (root / "anomaly-free_anomaly-free.csv").write_text("timestamp,x\n")  # not read


def test_select_skab_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_runs(tmp_path)
    path = tmp_path / "report.json"
    args = ["evaluate", "select-skab", "--data", str(tmp_path), "--grid", "quick",
            "--fit-readings", "400", "--json", str(path)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "held out (leave one fault type out, pooled)" in text
    assert "leaderboard Conv-AE (all 34 runs)" in text
    report = json.loads(path.read_text())
    assert report["protocol"]["fault_types"] == {"imbalance": 1, "valve1": 2, "water": 1}
    assert set(report["held_out"]["folds"]) == {"imbalance", "valve1", "water"}
    pooled = report["in_sample"]["pooled"]
    # the flow shift is found; the labelled rows 50-79 (commissioning) never count
    assert pooled["recall"] > 0.9 and pooled["false_alarm_rate"] < 0.1
    with pytest.raises(SystemExit, match="full grid"):
        main([*args, "--record"])


def test_select_skab_without_data_names_the_flag(tmp_path: Path) -> None:
    assert main(["evaluate", "select-skab", "--data", str(tmp_path / "nowhere")]) == 2


@pytest.mark.skipif(not SKAB_DEV.is_dir(), reason="SKAB (GPL-3.0) is not shipped: it is read "
                    "from ../shared/data/skab-dev, which is not beside this checkout")
def test_select_skab_on_skab_dev(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    assert main(["evaluate", "select-skab", "--data", str(SKAB_DEV), "--grid", "quick",
                 "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["protocol"]["runs"] == 22
    assert report["protocol"]["fault_types"] == {"cavitation": 1, "imbalance": 2, "leaks": 2,
                                                 "valve1": 16, "water": 1}
