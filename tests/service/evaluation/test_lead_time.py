"""``evaluate lead-time``: a whole machine as one engine with its alarms attributed to units
by their channels' contributions, the top contributors at a unit's first alarm, and
``--channels``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.errors import UsageError
from service.evaluation.datasets import RunToFailure, Unit
from service.evaluation.lead_time import attributed, keep_channels
from service.evaluation.stream import Trace

T0 = np.datetime64("2020-01-01T00:00:00")


def _run(n: int = 10) -> RunToFailure:
    ts = np.arange(n, dtype=np.int64) * 3_600_000
    units = tuple(Unit(f"Pump {u}", (f"Pump {u} C1", f"Pump {u} C2"), np.zeros((n, 2)), ts,
                       u == "b", int(ts[-1])) for u in ("a", "b"))
    return RunToFailure("rig", units)


def test_episodes_go_to_the_unit_whose_channels_drive_them() -> None:
    status = np.array([0, 1, 2, 3, 3, 1, 1, 2, 2, 1], dtype=np.int8)
    shares = np.full((10, 4), 0.25)
    shares[3] = [0.1, 0.1, 0.5, 0.3]  # the first episode's first alarm: pump b
    shares[7] = [0.6, 0.2, 0.1, 0.1]  # the second (warning only) at its start: pump a
    trace = Trace(np.zeros(10), status, np.zeros(10), np.zeros(10), np.zeros(10, bool),
                  contributions=shares)
    a, b = attributed(_run(), trace)
    assert b.status.tolist() == [0, 1, 2, 3, 3, 1, 1, 1, 1, 1]
    assert a.status.tolist() == [0, 1, 1, 1, 1, 1, 1, 2, 2, 1]
    assert b.contributions is shares


def test_keep_channels() -> None:
    kept = keep_channels(_run(), ["Pump b C2"])
    assert [u.name for u in kept.units] == ["Pump b"]
    assert kept.units[0].channels == ("Pump b C2",) and kept.units[0].values.shape == (10, 1)
    with pytest.raises(UsageError, match="Pump a C1"):
        keep_channels(_run(), ["s99"])


def _write_rig(path: Path) -> None:
    """Two pumps of two channels each, hourly for 20 days; pump b's second channel climbs
    over its last 3 days."""
    rng = np.random.default_rng(4)
    n = 480
    values = 1 + rng.normal(scale=0.02, size=(n, 4))
    climb = np.clip(np.arange(n) - (n - 72), 0, None) / 72.0
    values[:, 3] *= 1 + 3 * climb**2
    times = [str(T0 + np.timedelta64(i, "h")).replace("T", " ") for i in range(n)]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "Pump a C1", "Pump a C2", "Pump b C1", "Pump b C2"])
        w.writerows([times[i], *values[i]] for i in range(n))


def test_one_engine_for_the_whole_rig(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _write_rig(tmp_path / "rig.csv")
    path = tmp_path / "leads.json"
    args = ["evaluate", "lead-time", "--data", str(tmp_path / "rig.csv"), "--failing",
            "Pump b", "--predictor", "ewma", "--level-rate", "0.01", "--json", str(path)]
    assert main([*args, "--one-engine", "--channel-reduce", "max"]) == 0
    (run,) = json.loads(path.read_text())
    units = {u["unit"]: u for u in run["units"]}
    assert units["Pump b"]["lead"] is not None and units["Pump a"]["first_alarm"] is None
    top = units["Pump b"]["top_at_first"]
    assert top[0][0] == "Pump b C2" and top[0][1] > 0.5
    text = capsys.readouterr().out
    assert "top contributors at each unit's first alarm" in text
    assert "Pump b       Pump b C2" in text
    # one engine per unit (the default): each unit's own channels at its first alarm
    assert main(args) == 0
    (run,) = json.loads(path.read_text())
    assert run["units"][1]["top_at_first"][0][0] == "Pump b C2"
    # one channel: nothing to attribute
    assert main([*args, "--channels", "Pump b C2"]) == 0
    (run,) = json.loads(path.read_text())
    assert [u["unit"] for u in run["units"]] == ["Pump b"]
    assert run["units"][0]["top_at_first"] == []
