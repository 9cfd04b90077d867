"""Next-value accuracy of a model beside the naive baselines, computed in one run.

Used by ``vibewatch evaluate forecast`` and at the end of training (the manifest's metrics).
The moving-average window is chosen on the validation part and then scored on the evaluated
part, like the model's own hyper-parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.data import Series
from models.forecast import choose_ma_window, errors, last_value, moving_average


@dataclass(frozen=True)
class Row:
    """One line of the evaluation table: one dataset part, one channel, one method."""

    dataset: str
    part: str
    channel: str
    method: str
    rmse: float
    mae: float
    count: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    dataset: str,
    part: str,
    series: Sequence[Series],
    predict: Callable[[Series], np.ndarray],
    ma_window: int,
    others: Mapping[str, Callable[[Series], np.ndarray]] | None = None,
) -> list[Row]:
    """Rows for the model (``predict``), last value and moving average over ``series``, and
    for every predictor in ``others`` (name -> predictor), e.g. the model before fine-tuning."""
    methods: list[tuple[str, Callable[[Series], np.ndarray]]] = [
        ("model", predict),
        *(others or {}).items(),
        ("last_value", lambda s: last_value(s.values)),
        (f"moving_average_{ma_window}", lambda s: moving_average(s.values, ma_window)),
    ]
    results = [(name, errors(series, fn)) for name, fn in methods]
    return [
        Row(dataset, part, ch, name, err.rmse[k], err.mae[k], err.count)
        for k, ch in enumerate(series[0].channels)
        for name, err in results
    ]


def evaluate_parts(
    dataset: str,
    val: Sequence[Series],
    parts: Mapping[str, Sequence[Series]],
    predict: Callable[[Series], np.ndarray],
    others: Mapping[str, Callable[[Series], np.ndarray]] | None = None,
) -> tuple[int, list[Row]]:
    """Choose the moving-average window on ``val``, then compare on every part in ``parts``."""
    window = choose_ma_window(val)
    rows: list[Row] = []
    for part, series in parts.items():
        if series:
            rows.extend(compare(dataset, part, series, predict, window, others))
    return window, rows


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width table: one line per dataset, part, channel and method."""
    wd = max([10, *(len(r.dataset) for r in rows)])
    wc = max([10, *(len(r.channel) for r in rows)])
    wm = max([20, *(len(r.method) for r in rows)])
    header = f"{'dataset':<{wd}} {'part':<5} {'channel':<{wc}} {'method':<{wm}} {'RMSE':>11} "
    header += f"{'MAE':>11} {'vs last':>8} {'n':>7}"
    lines = [header, "-" * len(header)]
    base: dict[tuple[str, str, str], float] = {
        (r.dataset, r.part, r.channel): r.rmse for r in rows if r.method == "last_value"
    }
    for r in rows:
        ref = base.get((r.dataset, r.part, r.channel))
        rel = f"{r.rmse / ref:8.3f}" if ref else f"{'':>8}"
        lines.append(
            f"{r.dataset:<{wd}} {r.part:<5} {r.channel:<{wc}} {r.method:<{wm}} {r.rmse:11.5g} "
            f"{r.mae:11.5g} {rel} {r.count:7d}"
        )
    return "\n".join(lines)


def summary(rows: Sequence[Row]) -> dict[str, dict[str, float]]:
    """Mean RMSE and MAE over channels per part and method, for the manifest."""
    out: dict[str, dict[str, float]] = {}
    for part in sorted({r.part for r in rows}):
        for method in sorted({r.method for r in rows if r.part == part}):
            sel = [r for r in rows if r.part == part and r.method == method]
            key = f"{part}/{method}"
            out[key] = {
                "rmse": float(np.mean([r.rmse for r in sel])),
                "mae": float(np.mean([r.mae for r in sel])),
            }
    return out
