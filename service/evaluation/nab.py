"""``vibewatch evaluate nab``: stream a NAB-layout directory through the service's scoring.

Every file is one engine, with its own timestamps as event times. Readings go through the
NAB model (by default the one the selection procedure chose, ``selection.json``) and the
same processor and ``EngineScoring`` as in the service, with the service's scoring
settings unless options say otherwise (score, then learn; no look-ahead; the labels are
only read to write the ``label`` column and to score the results afterwards). Writes
NAB-format results and prints the normalised scores of the three profiles.

``anomaly_score`` per row (``--output``):

* ``onset`` (default): the score on rows where the engine's status rises to warning or
  escalates to alarm, 0 elsewhere: the anomaly events the service would emit. NAB then
  sweeps the threshold over these event scores, as it does for every detector.
* ``score``: the raw anomaly score of every row.
* ``alarm``: 1.0 on rows where the status rises to alarm, 0 elsewhere: the service's alarms
  as they are, with no threshold chosen by NAB (reported at threshold 1.0).

Thresholds: by default the best on the whole corpus (in-sample, as NAB reports);
``--held-out`` also scores each category at the threshold best on the other categories,
the out-of-sample figure. ``--results DIR --detector NAME`` scores existing NAB results
(e.g. the reference detectors) instead of running anything.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.evaluation.common import (
    ALARM,
    add_scoring_arguments,
    event_scores,
    existing,
    onsets,
    out,
    scoring_settings,
)
from service.evaluation.datasets import NabStream, daily_period, load_nab_corpus
from service.evaluation.nab_data import read_result_column, result_path
from service.evaluation.nab_data import write_result as write_nab_result
from service.evaluation.nab_score import (
    PROFILES,
    CorpusResult,
    Profile,
    load_profiles,
    normalised,
    optimise_threshold,
    score_corpus,
    score_file,
)
from service.evaluation.record import recorded_model
from service.evaluation.runs import (
    PredictorSpec,
    Recording,
    add_predictor_arguments,
    predictor_spec,
)
from service.evaluation.runs import (
    run as run_streams,
)

#: The NAB model when nothing is recorded: a level, a daily profile and the range seen so
#: far, as views of the signal scored apart.
FALLBACK_MODEL = PredictorSpec(
    "seasonal", level_rate=0.01, season_rate=0.2, range_tolerance=0.1, robust=3.0
)


def model() -> PredictorSpec:
    """The NAB model: the selection procedure's choice (``selection.json``)."""
    return recorded_model("nab", FALLBACK_MODEL)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="NAB-layout directory")
    parser.add_argument("--out", type=Path, help="where to write NAB results")
    parser.add_argument("--detector", default="vibewatch", help="detector name in the results")
    parser.add_argument(
        "--output", choices=("onset", "score", "alarm"), default="onset",
        help="what goes in anomaly_score (default onset)",
    )
    parser.add_argument(
        "--results", type=Path,
        help="score existing NAB results under this directory (with --detector) instead",
    )
    parser.add_argument(
        "--held-out", action="store_true",
        help="also score each category at the threshold best on the other categories",
    )
    parser.add_argument(
        "--threshold", type=float,
        help="score at this threshold instead of NAB's optimal one (e.g. a published one)",
    )
    add_predictor_arguments(parser, model(), "Default: the NAB model the selection chose.")
    add_scoring_arguments(parser)


def detections(spec: PredictorSpec, args: argparse.Namespace,
               files: Sequence[NabStream]) -> list[np.ndarray]:
    """Per-file anomaly_score columns from streaming the files through the scoring."""
    recs = [Recording(f.name, f.file.values[:, None], f.ts_ms,
                      daily_period(f.ts_ms, f.file.labeled.n_rows)) for f in files]
    traces = run_streams(spec, scoring_settings(args), recs)
    if args.output == "score":
        return [t.score.copy() for t in traces]
    if args.output == "alarm":
        return [onsets(t, ALARM).astype(np.float64) for t in traces]
    return [event_scores(t) for t in traces]


def read_profiles(path: Path) -> dict[str, Profile]:
    """The corpus's ``config/profiles.json``, or NAB v1.1's profiles if it has none."""
    return load_profiles(path) if path.is_file() else PROFILES


def held_out(files: Sequence[NabStream], cols: Sequence[np.ndarray],
             profiles: dict[str, Profile]) -> dict[str, dict[str, float]]:
    """Each category scored at the threshold best on the other categories, pooled."""
    cats = sorted({f.category for f in files})
    n_windows = sum(len(f.file.labeled.windows) for f in files)
    result: dict[str, dict[str, float]] = {}
    for name, profile in profiles.items():
        total = 0.0
        per = {}
        for cat in cats:
            train = [i for i, f in enumerate(files) if f.category != cat]
            th, _ = optimise_threshold([files[i].file.labeled for i in train],
                                       [cols[i] for i in train], profile)
            got = sum(score_file(f.file.labeled, cols[i], profile, th).score
                      for i, f in enumerate(files) if f.category == cat)
            per[cat] = got
            total += got
        result[name] = {"normalised": normalised(total, n_windows, profile), **per}
    return result


def run(args: argparse.Namespace) -> int:
    files = load_nab_corpus(existing(args.data, "--data"))
    spec = predictor_spec(args, model())
    if args.results is not None:
        cols = [read_result_column(result_path(args.results, args.detector, f.name),
                                   "anomaly_score") for f in files]
    else:
        if args.out is None:
            raise SystemExit("--out is required unless --results is given")
        out(f"model: {spec.describe()}; scoring: {scoring_settings(args).model_dump()}")
        cols = detections(spec, args, files)
        for f, c in zip(files, cols, strict=True):
            write_nab_result(args.out, args.detector, f.file, c)
    fixed = 1.0 if args.output == "alarm" and args.results is None else args.threshold
    profiles = read_profiles(args.data / "config" / "profiles.json")
    labeled = [f.file.labeled for f in files]
    results: dict[str, CorpusResult] = {
        name: score_corpus(labeled, cols, p, fixed) for name, p in profiles.items()
    }
    n_windows = sum(len(x.windows) for x in labeled)
    label = "threshold given" if fixed is not None else "threshold best on all files: in-sample"
    out(f"{args.detector}: {len(files)} files, {n_windows} windows ({label})")
    out(f"{'profile':<20} {'normalised':>10} {'threshold':>10} {'TP':>4} {'FP':>5} {'FN':>4}")
    summary = {}
    for name, r in results.items():
        tp = sum(fs.tp for fs in r.files)
        fp = sum(fs.fp for fs in r.files)
        fn = sum(fs.fn for fs in r.files)
        out(f"{name:<20} {r.normalised:>10.2f} {r.threshold:>10.4f} {tp:>4} {fp:>5} {fn:>4}")
        summary[name] = {"normalised": r.normalised, "threshold": r.threshold, "raw": r.total,
                         "tp": tp, "fp": fp, "fn": fn,
                         "files": {fs.name: fs.score for fs in r.files}}
    report: dict[str, object] = {"args": _jsonable(args), "profiles": summary}
    if args.held_out and fixed is None:
        ho = held_out(files, cols, profiles)
        report["held_out"] = ho
        out("held out (each category at the threshold best on the other categories):")
        for name, row in ho.items():
            out(f"{name:<20} {row['normalised']:>10.2f}")
    if args.out is not None and args.results is None:
        path = args.out / f"{args.detector}_scores.json"
        path.write_text(json.dumps(report, indent=1))
        out(f"results in {args.out / args.detector}, summary in {path}")
    return 0


def _jsonable(args: argparse.Namespace) -> dict[str, object]:
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if not k.startswith("_")
    }
