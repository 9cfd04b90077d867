"""``vibewatch evaluate labeled``: point-wise and NAB-style scores on labelled CSV files.

Every ``*.csv`` under ``--data`` is one engine: a header row, a 0/1 label column
(``--label``, default ``label``), an optional time column (``--time``, default
``timestamp`` if present; it is not used for scoring) and channel columns (all other
columns, or ``--channels``). Readings are streamed through the processor and scoring as in
the service; the labels are only read to score the outcome.

* Point-wise: a row is flagged when the status is at or above ``--level`` (alarm by
  default). Precision, recall, F1, false-alarm rate (flagged share of label-0 rows) and
  missed-alarm rate (unflagged share of label-1 rows).
* NAB-style: a window starts at each labelled onset (a 0 -> 1 step), ``0.1 * rows /
  onsets`` rows wide as in NAB; detections are the rows where the status rises to the
  level; scored with the three NAB profiles at that fixed threshold (nothing optimised).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.evaluation.common import ALARM, WARNING, add_common_arguments, onsets, out, run_series
from service.evaluation.nab_data import DatasetError, read_columns
from service.evaluation.nab_score import PROFILES, LabeledFile, score_corpus

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="directory of labelled CSVs")
    parser.add_argument("--label", default="label", help="0/1 label column (default label)")
    parser.add_argument("--time", default="timestamp", help="time column to ignore if present")
    parser.add_argument("--channels", nargs="+", help="channel columns (default: all others)")
    parser.add_argument(
        "--level",
        choices=("alarm", "warning"),
        default="alarm",
        help="status that counts as a detection (default alarm)",
    )
    add_common_arguments(parser)


@dataclass(frozen=True)
class LabeledSeries:
    name: str
    values: FloatArray  #: (T, C)
    labels: BoolArray  #: (T,)


def load_labeled(
    data: Path, label: str, time: str, channels: list[str] | None
) -> list[LabeledSeries]:
    """Every CSV under ``data`` (sorted); raises DatasetError on a missing or bad column."""
    paths = sorted(data.rglob("*.csv"))
    if not paths:
        raise DatasetError(data, "no CSV files")
    result = []
    for path in paths:
        cols = read_columns(path)
        if label not in cols:
            raise DatasetError(path, f"no label column {label!r}")
        names = channels or [c for c in cols if c not in (label, time) and c]
        missing = [c for c in names if c not in cols]
        if missing or not names:
            raise DatasetError(path, f"missing channel columns {missing or 'all'}")
        try:
            values = np.array([[float(v) for v in cols[c]] for c in names]).T
            labels = np.array([float(v) for v in cols[label]]) > 0.5
        except ValueError as exc:
            raise DatasetError(path, f"non-numeric value: {exc}") from exc
        if not np.all(np.isfinite(values)):
            raise DatasetError(path, "non-finite channel value")
        result.append(LabeledSeries(str(path.relative_to(data)), values, labels))
    return result


def onset_windows(labels: BoolArray) -> tuple[tuple[int, int], ...]:
    """NAB-width windows starting at each 0 -> 1 step of ``labels``."""
    prev = np.concatenate([[False], labels[:-1]])
    starts = np.flatnonzero(labels & ~prev)
    if starts.size == 0:
        return ()
    width = max(1, math.floor(0.1 * labels.size / starts.size))
    last = labels.size - 1
    return tuple((int(s), min(int(s) + width - 1, last)) for s in starts)


@dataclass(frozen=True)
class PointScores:
    precision: float
    recall: float
    f1: float
    false_alarm_rate: float
    missed_alarm_rate: float


def point_scores(flags: BoolArray, labels: BoolArray) -> PointScores:
    """Point-wise metrics of ``flags`` against ``labels`` (NaN where undefined)."""
    tp = float(np.sum(flags & labels))
    fp = float(np.sum(flags & ~labels))
    fn = float(np.sum(~flags & labels))
    tn = float(np.sum(~flags & ~labels))
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    far = fp / (fp + tn) if fp + tn else math.nan
    mar = fn / (fn + tp) if fn + tp else math.nan
    return PointScores(precision, recall, f1, far, mar)


def run(args: argparse.Namespace) -> int:
    series = load_labeled(args.data, args.label, args.time, args.channels)
    n_ch = {s.values.shape[1] for s in series}
    if len(n_ch) != 1:
        raise DatasetError(args.data, f"files have different channel counts {sorted(n_ch)}")
    level = ALARM if args.level == "alarm" else WARNING
    traces = run_series(
        args,
        [s.values for s in series],
        [s.name for s in series],
        standardise=n_ch.pop() > 1 or args.predictor == "lstm",
    )
    flags = [t.status >= level for t in traces]
    labels = [s.labels for s in series]
    total = point_scores(np.concatenate(flags), np.concatenate(labels))
    out(f"{len(series)} files, {sum(len(x) for x in labels)} rows, level {args.level}")
    out(f"{'file':<40} {'prec':>6} {'recall':>6} {'F1':>6} {'FAR':>7} {'MAR':>6}")
    rows = [(s.name, point_scores(f, s.labels)) for s, f in zip(series, flags, strict=True)]
    for name, p in [*rows, ("ALL", total)]:
        out(
            f"{name:<40} {p.precision:>6.3f} {p.recall:>6.3f} {p.f1:>6.3f} "
            f"{p.false_alarm_rate:>7.4f} {p.missed_alarm_rate:>6.3f}"
        )
    files = [LabeledFile(s.name, len(s.labels), onset_windows(s.labels)) for s in series]
    detections = [onsets(t, level).astype(np.float64) for t in traces]
    if sum(len(f.windows) for f in files):
        out("NAB-style (windows from each labelled onset, detections = status onsets):")
        for name, profile in PROFILES.items():
            r = score_corpus(files, detections, profile, threshold=1.0)
            out(f"  {name:<20} {r.normalised:8.2f}")
    return 0
