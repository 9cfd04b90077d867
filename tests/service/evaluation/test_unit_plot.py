"""``evaluate lead-time --plot``: the picture of one unit over its run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.evaluation.unit_plot import STATUS_COLOURS
from tests.service.evaluation.test_commands import _write_run

PUMPS = ["--failing", "pump-b", "--predictor", "ewma", "--level-rate", "0.01"]


def _alarm_red_share(png: Path) -> float:
    """The share of the picture's pixels in the alarm colour."""
    from matplotlib.colors import to_rgb
    from matplotlib.image import imread

    rgb = imread(png)[..., :3]
    red = np.array(to_rgb(STATUS_COLOURS[3]))
    return float(np.mean(np.all(np.abs(rgb - red) < 0.02, axis=-1)))


def test_plot_writes_a_png_of_the_first_failing_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_run(tmp_path / "pumps.csv")
    data = ["evaluate", "lead-time", "--data", str(tmp_path / "pumps.csv"), *PUMPS]
    failing, healthy = tmp_path / "b.png", tmp_path / "a.png"
    assert main([*data, "--plot", str(failing)]) == 0
    assert f"picture of pumps pump-b: {failing}" in capsys.readouterr().out
    assert failing.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([*data, "--plot", str(healthy), "--plot-unit", "pump-a"]) == 0
    # pump-b's alarm fills the end of its status strip in red; pump-a never alarms, so
    # only the alarm level's dashed line is drawn in that colour
    assert _alarm_red_share(failing) > 0.004
    assert _alarm_red_share(healthy) < 0.5 * _alarm_red_share(failing)


def test_plot_of_a_unit_that_is_not_there_names_the_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_run(tmp_path / "pumps.csv")
    assert main(["evaluate", "lead-time", "--data", str(tmp_path / "pumps.csv"), *PUMPS,
                 "--plot", str(tmp_path / "x.png"), "--plot-unit", "pump-z"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pump-z" in err and "pump-a, pump-b, pump-c" in err
    assert not (tmp_path / "x.png").exists()


def test_plot_without_matplotlib_says_which_extra_in_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the serving install: no matplotlib (None in sys.modules makes its import fail)
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "service.evaluation.unit_plot", raising=False)
    assert main(["evaluate", "lead-time", "--ims", "ims2", "--plot",
                 str(tmp_path / "x.png")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing streamed before the failure
    (line,) = captured.err.strip().splitlines()
    assert "vibewatch evaluate lead-time" in line and "pip install 'vibewatch[train]'" in line
