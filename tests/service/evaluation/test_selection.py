"""The selection procedure: never scores a unit with settings chosen on it, and the
service's defaults are its recorded choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.config import ScoringSettings
from service.evaluation import selection
from service.evaluation.datasets import NabStream
from service.evaluation.nab_data import NabFile
from service.evaluation.nab_score import LabeledFile
from service.evaluation.record import RECORD, read_record, recorded_model
from service.evaluation.runs import PredictorSpec
from service.evaluation.simulated import SimOutcome
from tests.service.evaluation.test_commands import _write_nab


def _file(name: str) -> NabStream:
    n = 1000
    labeled = LabeledFile(name, n, ((600, 650),))
    f = NabFile(name, tuple("" for _ in range(n)), np.zeros(n), labeled,
                np.arange(n, dtype=np.int64))
    return NabStream(f, np.arange(n, dtype=np.int64))


def _hit(n: int = 1000) -> np.ndarray:
    col = np.zeros(n)
    col[600] = 1.0  # the window's first row: a perfect detection
    return col


def _miss(n: int = 1000) -> np.ndarray:
    col = np.zeros(n)
    col[300] = 1.0  # a false positive, and the window missed
    return col


def test_a_held_out_category_is_scored_with_settings_chosen_on_the_others() -> None:
    """Candidate 0 is right on category A only, candidate 1 on B only (and on more files):
    on everything 1 wins, but held out each category gets the other's choice."""
    files = [_file("A/1.csv"), _file("A/2.csv"), _file("B/1.csv"), _file("B/2.csv"),
             _file("B/3.csv")]
    model = next(iter(selection.NAB_MODELS))
    data = selection.Data(nab=files)
    data.nab_events = [
        {m: [_hit(), _hit(), _miss(), _miss(), _miss()] for m in selection.NAB_MODELS},
        {m: [_miss(), _miss(), _hit(), _hit(), _hit()] for m in selection.NAB_MODELS},
    ]
    data.nab_alarms = data.nab_events
    grid = [dict(selection.FIXED), dict(selection.FIXED)]
    sel = selection.Selector(data, grid)
    fs = selection.folds(data, 5)
    assert sel.choose(fs["all"]).candidate == 1
    chosen = {cat: (sel.choose(f), f) for cat, f in fs["nab"].items()}
    assert {cat: ch.candidate for cat, (ch, _) in chosen.items()} == {"A": 1, "B": 0}
    held = selection.nab_pooled(data, chosen)["standard"]
    # Held out, every file is scored with the wrong candidate: nothing is found. In-sample
    # the same candidates would have found all of B.
    assert held["normalised"] < 0
    assert sel.nab_standard(1, model, (0, 1, 2, 3, 4)) > held["normalised"]


def test_run_to_failure_targets_come_first() -> None:
    files = [_file("A/1.csv"), _file("B/1.csv")]
    data = selection.Data(nab=files)
    data.nab_events = [{m: [_hit(), _hit()] for m in selection.NAB_MODELS},
                       {m: [_miss(), _miss()] for m in selection.NAB_MODELS}]
    data.nab_alarms = data.nab_events
    data.sim_out = [[_sim(False)], [_sim(True)]]  # only the worse NAB candidate meets it
    sel = selection.Selector(data, [dict(selection.FIXED)] * 2)
    assert sel.choose(selection.folds(data, 5)["all"]).candidate == 1


def _sim(passed: bool) -> SimOutcome:
    return SimOutcome((), {}, passed, "" if passed else "missed")


def test_quick_procedure_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The procedure on a small corpus with two categories and the shipped IMS runs."""
    _write_nab(tmp_path / "nab", ("one", "two"))
    path = tmp_path / "report.json"
    args = ["evaluate", "select", "--grid", "quick", "--nab", str(tmp_path / "nab"),
            "--skip", "cmapss", "simulated", "--out", str(path)]
    assert main(args) == 0
    report = json.loads(path.read_text())
    assert report["grid_size"] == len(selection.GRIDS["quick"])
    held, ins = report["held_out"], report["in_sample"]
    assert set(held["nab"]["choices"]) == {"one", "two"}
    assert set(held["ims"]) == {"ims1", "ims2"}
    for name in ("ims1", "ims2"):
        assert held["ims"][name]["units"]
    assert set(report["defaults"]) == set(ScoringSettings.model_fields)
    assert ins["choice"]["settings"] == {k: report["defaults"][k] for k in selection.AXES
                                          if k in report["defaults"]} | {
        k: report["defaults"][k] for k in ("warning_score", "alarm_score")}
    text = capsys.readouterr().out
    assert "held out" in text and "in-sample" in text


def test_the_service_defaults_are_the_recorded_choice() -> None:
    """The committed record of the full procedure chose the defaults the service runs;
    rerun ``vibewatch evaluate select --record`` and update ScoringSettings together."""
    record = read_record()
    assert record, f"no record at {RECORD}"
    assert record["grid_size"] == len(selection.GRIDS["full"])
    assert ScoringSettings(**record["defaults"]) == ScoringSettings()
    for kind in ("nab", "ims", "cmapss"):
        spec = recorded_model(kind, PredictorSpec("none"))
        assert spec.predictor != "none", kind
        if spec.predictor == "lstm":
            assert (spec.model / "manifest.json").is_file()
