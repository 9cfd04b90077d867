"""``vibewatch evaluate nab``: stream a NAB-layout directory through the service's scoring.

Every file is one engine. Readings go through the same processor, predictor interface and
``EngineScoring`` as in the service (score, then learn; no look-ahead; the labels are only
read to write the ``label`` column and to score the results afterwards). Writes NAB-format
results and prints the normalised scores of the three profiles.

``anomaly_score`` per row (``--output``):

* ``onset`` (default): the score on rows where the engine's status rises to warning or
  alarm, 0 elsewhere: the anomaly events the service would emit. NAB then sweeps the
  threshold over these event scores, as it does for every detector.
* ``score``: the raw anomaly score of every row.
* ``alarm``: 1.0 on rows where the status rises to alarm, 0 elsewhere: the service's alarms
  as they are, with no threshold chosen by NAB (reported at threshold 1.0).

``--results DIR --detector NAME`` scores existing NAB results (e.g. the reference
detectors) instead of running anything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from service.evaluation.common import WARNING, add_common_arguments, onsets, out, run_series
from service.evaluation.nab_data import NabFile, load_nab, read_result_column, result_path
from service.evaluation.nab_data import write_result as write_nab_result
from service.evaluation.nab_score import (
    PROFILES,
    CorpusResult,
    Profile,
    load_profiles,
    optimise_threshold,
    score_corpus,
)

#: Defaults for NAB, chosen by a small grid search on nab-dev itself (docs/scoring.md): the
#: seasonal predictor (level and one-day-ago views, scored apart), a very long error memory,
#: heavy smoothing, low levels and no hold, so that a sustained departure raises one event
#: early.
NAB_DEFAULTS: dict[str, object] = {
    "scorer": "likelihood-spikes",
    "error_decay": 0.0003,
    "smoothing": 0.05,
    "warning_score": 0.2,
    "alarm_score": 0.3,
    "clear_score": 0.15,
    "hold_readings": 1,
    "clear_readings": 10,
    "spike_floor": 60.0,
    "spike_decay": 0.003,
    "incident_readings": 400,
    "incident_score": 0.4,
}
#: EWMA rate of the seasonal predictor's daily profile on NAB
NAB_SEASON_RATE = 0.2
#: the seasonal predictor's range view on NAB: readings beyond the highest/lowest so far
#: widened by 10 % of the range
NAB_RANGE_TOLERANCE = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="NAB-layout directory")
    parser.add_argument("--out", type=Path, help="where to write NAB results")
    parser.add_argument("--detector", default="vibewatch", help="detector name in the results")
    parser.add_argument(
        "--output",
        choices=("onset", "score", "alarm"),
        default="onset",
        help="what goes in anomaly_score (default onset)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="score existing NAB results under this directory (with --detector) instead",
    )
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="also score each half of the files (alternate files by name) at the threshold "
        "chosen on the other half",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="score at this threshold instead of NAB's optimal one (e.g. a published one)",
    )
    add_common_arguments(
        parser,
        "seasonal",
        0.01,
        NAB_DEFAULTS,
        season_rate=NAB_SEASON_RATE,
        range_tolerance=NAB_RANGE_TOLERANCE,
    )


def detections(args: argparse.Namespace, files: list[NabFile]) -> list[np.ndarray]:
    """Per-file anomaly_score columns from streaming the files through the scoring."""
    series = [f.values[:, None] for f in files]
    traces = run_series(
        args,
        series,
        [f.name for f in files],
        standardise=args.predictor == "lstm",
        periods=[daily_period(f) for f in files],
    )
    cols = []
    for t in traces:
        if args.output == "score":
            cols.append(t.score.copy())
        elif args.output == "alarm":
            cols.append(onsets(t).astype(np.float64))
        else:
            cols.append(
                np.where(onsets(t, WARNING) | (t.changed & (t.status > WARNING)), t.score, 0.0)
            )
    return cols


def daily_period(f: NabFile) -> int:
    """Readings per day of a file, from its median time step (1 if it cannot be told)."""
    stamps = np.array(
        [np.datetime64(s.strip().replace(" ", "T")) for s in f.timestamps[:100]],
        dtype="datetime64[s]",
    ).astype(np.int64)
    steps = np.diff(stamps)
    step = float(np.median(steps[steps > 0])) if np.any(steps > 0) else 0.0
    if step <= 0:
        return 1
    return int(min(max(round(86_400 / step), 1), max(f.labeled.n_rows // 3, 1)))


def score_results(
    files: list[NabFile], cols: list[np.ndarray], profiles_path: Path, fixed: float | None
) -> dict[str, CorpusResult]:
    """NAB results per profile (optimal threshold, or ``fixed``)."""
    labeled = [f.labeled for f in files]
    profiles = read_profiles(profiles_path)
    return {name: score_corpus(labeled, cols, p, fixed) for name, p in profiles.items()}


def read_profiles(path: Path) -> dict[str, Profile]:
    """The corpus's ``config/profiles.json``, or NAB v1.1's profiles if it has none."""
    return load_profiles(path) if path.is_file() else PROFILES


def run(args: argparse.Namespace) -> int:
    files = load_nab(args.data)
    if args.results is not None:
        cols = [
            read_result_column(result_path(args.results, args.detector, f.name), "anomaly_score")
            for f in files
        ]
    else:
        if args.out is None:
            raise SystemExit("--out is required unless --results is given")
        cols = detections(args, files)
        for f, c in zip(files, cols, strict=True):
            write_nab_result(args.out, args.detector, f, c)
    fixed = 1.0 if args.output == "alarm" and args.results is None else args.threshold
    results = score_results(files, cols, args.data / "config" / "profiles.json", fixed)
    n_windows = sum(len(f.labeled.windows) for f in files)
    out(f"{args.detector}: {len(files)} files, {n_windows} windows")
    out(f"{'profile':<20} {'normalised':>10} {'threshold':>10} {'TP':>4} {'FP':>5} {'FN':>4}")
    summary = {}
    for name, r in results.items():
        tp = sum(fs.tp for fs in r.files)
        fp = sum(fs.fp for fs in r.files)
        fn = sum(fs.fn for fs in r.files)
        out(f"{name:<20} {r.normalised:>10.2f} {r.threshold:>10.4f} {tp:>4} {fp:>5} {fn:>4}")
        summary[name] = {
            "normalised": r.normalised,
            "threshold": r.threshold,
            "raw": r.total,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "files": {fs.name: fs.score for fs in r.files},
        }
    report: dict[str, object] = {"args": _jsonable(args), "profiles": summary}
    if args.holdout:
        report["holdout"] = holdout(files, cols, args.data / "config" / "profiles.json")
    if args.out is not None and args.results is None:
        path = args.out / f"{args.detector}_scores.json"
        path.write_text(json.dumps(report, indent=1))
        out(f"results in {args.out / args.detector}, summary in {path}")
    return 0


def holdout(
    files: list[NabFile], cols: list[np.ndarray], profiles_path: Path
) -> dict[str, dict[str, float]]:
    """Each half of the files (alternate files, sorted by name) scored at the threshold that
    is optimal on the other half: how much the threshold choice is fitted to the corpus."""
    halves = {"A": list(range(0, len(files), 2)), "B": list(range(1, len(files), 2))}
    rows: dict[str, dict[str, float]] = {}
    out("held out: each half of the files at the threshold optimal on the other half")
    out(f"{'profile':<20} {'A':>10} {'B':>10} {'mean':>10}")
    for name, profile in read_profiles(profiles_path).items():
        got = {}
        for half, other in (("A", "B"), ("B", "A")):
            fit = halves[other]
            threshold, _ = optimise_threshold(
                [files[i].labeled for i in fit], [cols[i] for i in fit], profile
            )
            test = halves[half]
            got[half] = score_corpus(
                [files[i].labeled for i in test], [cols[i] for i in test], profile, threshold
            ).normalised
        got["mean"] = (got["A"] + got["B"]) / 2
        rows[name] = got
        out(f"{name:<20} {got['A']:>10.2f} {got['B']:>10.2f} {got['mean']:>10.2f}")
    return rows


def _jsonable(args: argparse.Namespace) -> dict[str, object]:
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if not k.startswith("_")
    }
