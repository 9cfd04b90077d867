"""``vibewatch evaluate labeled``: point-wise and NAB-style scores on labelled CSV files.

Every ``*.csv`` under ``--data`` is one engine: a header row, a 0/1 label column
(``--label``, default ``label``), an optional time column (``--time``, default
``timestamp``: its times are the event times when they parse, else one reading per second)
and channel columns: ``--channels``, or every other column except known label columns
(SKAB's ``anomaly`` and ``changepoint``, ...): labels are never inputs. The channels used
are printed. Readings are streamed through the processor and scoring as in the service;
the labels are only read to score the outcome.

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

from service.evaluation.common import (
    ALARM,
    WARNING,
    add_scoring_arguments,
    existing,
    onsets,
    out,
    scoring_settings,
)
from service.evaluation.datasets import LABEL_COLUMNS, load_labeled
from service.evaluation.nab_data import DatasetError
from service.evaluation.nab_score import PROFILES, LabeledFile, score_corpus
from service.evaluation.runs import (
    PredictorSpec,
    Recording,
    add_predictor_arguments,
    predictor_spec,
)
from service.evaluation.runs import run as run_streams

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
#: Labelled CSVs have channels in different units: each is standardised online, then an
#: EWMA level is the prediction.
MODEL = PredictorSpec("ewma", level_rate=0.01, standardise=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="labelled CSVs, or directories of them")
    parser.add_argument("--label", default="label", help="0/1 label column (default label)")
    parser.add_argument("--time", default="timestamp",
                        help="time column, if present (default timestamp)")
    parser.add_argument("--channels", nargs="+",
                        help="channel columns (default: all others except label columns: "
                        f"{', '.join(sorted(LABEL_COLUMNS))})")
    parser.add_argument(
        "--level",
        choices=("alarm", "warning"),
        default="alarm",
        help="status that counts as a detection (default alarm)",
    )
    add_predictor_arguments(parser, MODEL)
    add_scoring_arguments(parser)


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
    series = [s for path in args.data
              for s in load_labeled(existing(path, "--data"), args.label, args.time,
                                    args.channels)]
    n_ch = {s.channels for s in series}
    if len(n_ch) != 1:
        raise DatasetError(args.data[0], f"files have different channels {sorted(n_ch)}")
    level = ALARM if args.level == "alarm" else WARNING
    spec = predictor_spec(args, MODEL)
    out(f"channels: {', '.join(series[0].channels)} (label {args.label!r} is not an input)")
    out(f"model: {spec.describe()}")
    traces = run_streams(
        spec, scoring_settings(args),
        [Recording(s.name, s.values, s.ts_ms) for s in series],
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
