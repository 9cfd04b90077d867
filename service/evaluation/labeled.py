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

SKAB's protocol (``--fit-readings N`` or ``--fit-duration SECONDS``): the first rows of each
file (N, or those less than SECONDS after its first reading) are its commissioning data.
The engine's scoring commissions on exactly them (``commission_readings`` = N,
``commission_s`` = 0; a standardising predictor freezes its statistics after them too), and
they are neither scored nor counted: every metric above is computed on the rows after them
only (NAB-style: the rows after them are the file). A file whose commissioning does not end
exactly there (a gap in its times restarted the engine) is an error, not a silent mismatch.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.config import ScoringSettings
from service.evaluation.common import (
    ALARM,
    WARNING,
    add_scoring_arguments,
    existing,
    out,
    scoring_settings,
)
from service.evaluation.datasets import LABEL_COLUMNS, LabeledSeries, load_labeled
from service.evaluation.nab_data import DatasetError
from service.evaluation.nab_score import PROFILES, LabeledFile, score_corpus
from service.evaluation.runs import (
    PredictorSpec,
    Recording,
    add_predictor_arguments,
    predictor_spec,
)
from service.evaluation.runs import run as run_streams
from service.evaluation.stream import Trace

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
    fit = parser.add_mutually_exclusive_group()
    fit.add_argument("--fit-readings", type=int, default=None, metavar="N",
                     help="SKAB's protocol: the first N rows of each file commission its "
                     "engine and are not scored (SKAB: 400; default: every row is scored)")
    fit.add_argument("--fit-duration", type=float, default=None, metavar="SECONDS",
                     help="the same with the rows less than SECONDS after each file's first "
                     "reading (default: every row is scored)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the per-file and pooled scores here")
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


def fit_rows(series: LabeledSeries, readings: int | None, duration_s: float | None) -> int:
    """How many of ``series``' first rows are its commissioning data under SKAB's protocol
    (0 without one): ``readings``, or the rows less than ``duration_s`` after its first
    reading. Raises DatasetError when that leaves nothing to score or is under two rows
    (commissioning needs two readings: the first one has no prediction to score)."""
    if readings is None and duration_s is None:
        return 0
    if readings is not None:
        n = readings
    else:
        assert duration_s is not None
        n = int(np.count_nonzero(series.ts_ms - series.ts_ms[0] < duration_s * 1000.0))
    path = Path(series.name)
    if n < 2:
        raise DatasetError(path, f"{n} commissioning rows: the protocol needs at least 2")
    if n >= len(series.labels):
        raise DatasetError(path, f"{n} commissioning rows leave none of its "
                           f"{len(series.labels)} rows to score")
    return n


def protocol(
    spec: PredictorSpec, settings: ScoringSettings, fit: int
) -> tuple[PredictorSpec, ScoringSettings]:
    """The model and scoring that commission on exactly the first ``fit`` rows (0: as
    given): the scoring's commissioning is those readings and no time span, and a
    standardising predictor freezes its statistics after them (unless told otherwise)."""
    if not fit:
        return spec, settings
    if spec.standardise and not spec.freeze_after:
        spec = replace(spec, freeze_after=fit)
    values = settings.model_dump() | {"commission_readings": fit, "commission_s": 0.0}
    return spec, ScoringSettings(**values)


def check_commissioning(name: str, trace: Trace, fit: int) -> None:
    """Raise DatasetError unless ``trace``'s engine commissioned on exactly its first
    ``fit`` rows (status warmup there and only there)."""
    warm = np.flatnonzero(trace.status == 0)
    if fit and not np.array_equal(warm, np.arange(fit)):
        raise DatasetError(Path(name), f"the engine commissioned on rows {warm[:3]}..."
                           f"{warm[-3:]}, not exactly the first {fit} (a gap in the times?)")


@dataclass(frozen=True)
class Scored:
    """One file under the protocol: its labels and statuses from ``fit`` on."""

    name: str
    fit: int
    labels: BoolArray
    status: npt.NDArray[np.int8]

    def flags(self, level: int) -> BoolArray:
        out_: BoolArray = self.status >= level
        return out_


def scored(series: LabeledSeries, trace: Trace, fit: int) -> Scored:
    """The rows of ``series`` that count (after its ``fit`` commissioning rows)."""
    check_commissioning(series.name, trace, fit)
    return Scored(series.name, fit, series.labels[fit:], trace.status[fit:])


def evaluate_files(
    series: Sequence[LabeledSeries],
    spec: PredictorSpec,
    settings: ScoringSettings,
    readings: int | None = None,
    duration_s: float | None = None,
) -> list[Scored]:
    """Stream ``series`` (one engine each) under the protocol; files with the same number
    of commissioning rows run together (SKAB at 1 Hz: all of them)."""
    fits = [fit_rows(s, readings, duration_s) for s in series]
    result: list[Scored | None] = [None] * len(series)
    for fit in sorted(set(fits)):
        idx = [i for i, f in enumerate(fits) if f == fit]
        sp, st = protocol(spec, settings, fit)
        traces = run_streams(sp, st, [Recording(series[i].name, series[i].values,
                                                series[i].ts_ms) for i in idx])
        for i, t in zip(idx, traces, strict=True):
            result[i] = scored(series[i], t, fit)
    return [r for r in result if r is not None]


def nab_style(files: Sequence[Scored], level: int) -> dict[str, float]:
    """NAB-style normalised scores of ``files`` (windows from each labelled onset,
    detections the status rises to ``level``); {} when no file has an onset."""
    labeled = [LabeledFile(f.name, len(f.labels), onset_windows(f.labels)) for f in files]
    if not sum(len(f.windows) for f in labeled):
        return {}
    detections = []
    for f in files:
        prev = np.concatenate([[0], f.status[:-1]])
        detections.append(((f.status >= level) & (prev < level)).astype(np.float64))
    return {name: score_corpus(labeled, detections, profile, threshold=1.0).normalised
            for name, profile in PROFILES.items()}


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
    settings = scoring_settings(args)
    fits = sorted({fit_rows(s, args.fit_readings, args.fit_duration) for s in series})
    out(f"model: {protocol(spec, settings, fits[0])[0].describe()}")
    if fits != [0]:
        out(f"SKAB protocol: the first {'/'.join(map(str, fits))} rows of each file "
            "commission its engine and are not scored")
    files = evaluate_files(series, spec, settings, args.fit_readings, args.fit_duration)
    flags = [f.flags(level) for f in files]
    labels = [f.labels for f in files]
    total = point_scores(np.concatenate(flags), np.concatenate(labels))
    out(f"{len(series)} files, {sum(len(x) for x in labels)} rows scored, level {args.level}")
    out(f"{'file':<40} {'prec':>6} {'recall':>6} {'F1':>6} {'FAR':>7} {'MAR':>6}")
    rows = [(f.name, point_scores(g, f.labels)) for f, g in zip(files, flags, strict=True)]
    for name, p in [*rows, ("ALL", total)]:
        out(
            f"{name:<40} {p.precision:>6.3f} {p.recall:>6.3f} {p.f1:>6.3f} "
            f"{p.false_alarm_rate:>7.4f} {p.missed_alarm_rate:>6.3f}"
        )
    nab = nab_style(files, level)
    if nab:
        out("NAB-style (windows from each labelled onset, detections = status onsets):")
        for name, value in nab.items():
            out(f"  {name:<20} {value:8.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "model": spec.describe(), "level": args.level,
            "fit_rows": {f.name: f.fit for f in files},
            "pooled": asdict(total), "nab_style": nab,
            "files": {name: asdict(p) for name, p in rows},
        }, indent=1) + "\n")
        out(f"scores in {args.json}")
    return 0
