"""What the evaluation commands share: scoring/predictor options, output, detections."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.config import DEFAULT_ARTIFACT, ScoringSettings
from service.evaluation.predictors import PREDICTORS, make_predictor, standardise_online
from service.evaluation.stream import Trace, stream
from service.scoring import EngineScoring
from service.scoring.params import SCORERS, ScoringParams

FloatArray = npt.NDArray[np.float64]
ALARM = 3
WARNING = 2


def out(line: str = "") -> None:
    """One line of command output on stdout."""
    sys.stdout.write(line + "\n")


def add_common_arguments(
    parser: argparse.ArgumentParser,
    predictor: str = "ewma",
    level_rate: float = 0.01,
    scoring_defaults: Mapping[str, object] | None = None,
    season_rate: float = 1.0,
    range_tolerance: float = 0.0,
) -> None:
    """Predictor and scoring options; defaults are the service's ``ScoringSettings``
    overridden by ``scoring_defaults`` (each command documents its own)."""
    base = ScoringParams.from_settings(ScoringSettings(), **(scoring_defaults or {}))
    g = parser.add_argument_group("predictor")
    g.add_argument(
        "--predictor",
        choices=PREDICTORS,
        default=predictor,
        help=f"online predictor whose errors are scored (default {predictor})",
    )
    g.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_ARTIFACT,
        help="model artifact for --predictor lstm (default: the bundled one)",
    )
    g.add_argument(
        "--level-rate",
        type=float,
        default=level_rate,
        help=f"EWMA rate of the ewma predictor (default {level_rate})",
    )
    g.add_argument(
        "--season-rate",
        type=float,
        default=season_rate,
        help="seasonal predictor: EWMA rate of the daily profile per phase; 1.0 = the reading "
        f"one day earlier (default {season_rate})",
    )
    g.add_argument(
        "--range-tolerance",
        type=float,
        default=range_tolerance,
        help="seasonal predictor: > 0 adds the range view, readings beyond the highest/lowest "
        f"so far widened by this fraction of the range (0 = off; default {range_tolerance})",
    )
    s = parser.add_argument_group("scoring (defaults: the service's settings)")
    s.add_argument("--scorer", choices=SCORERS, default=base.scorer)
    s.add_argument("--warmup-readings", type=int, default=base.warmup_readings)
    s.add_argument("--error-decay", type=float, default=base.error_decay)
    s.add_argument("--smoothing", type=float, default=base.smoothing)
    s.add_argument("--warning-score", type=float, default=base.warning_score)
    s.add_argument("--alarm-score", type=float, default=base.alarm_score)
    s.add_argument("--clear-score", type=float, default=base.clear_score)
    s.add_argument("--hold-readings", type=int, default=base.hold_readings)
    s.add_argument(
        "--clear-readings",
        type=int,
        default=base.clear_readings,
        help="readings below clear to return to normal (0 = --hold-readings)",
    )
    s.add_argument(
        "--incident-readings",
        type=int,
        default=base.incident_readings,
        help="a raise scoring >= --incident-score holds the alarm this many readings (0 = off)",
    )
    s.add_argument("--incident-score", type=float, default=base.incident_score)
    s.add_argument("--spike-floor", type=float, default=base.spike_floor)
    s.add_argument("--spike-decay", type=float, default=base.spike_decay)
    s.add_argument("--channel-reduce", choices=("rms", "max"), default=base.channel_reduce)
    s.add_argument("--telemanom-window", type=int, default=base.telemanom_window)


def scoring_params(args: argparse.Namespace) -> ScoringParams:
    """The scoring parameters chosen on the command line (every option named as a field)."""
    return ScoringParams.from_settings(args)


def run_series(
    args: argparse.Namespace,
    series: list[FloatArray],
    ids: list[str],
    standardise: bool = False,
    freeze_after: int | None = None,
    periods: list[int] | None = None,
) -> list[Trace]:
    """Stream each ``(T, C)`` series as one engine through the chosen predictor and scoring.

    ``standardise``: every series is first standardised online (causally, per channel), as
    needed when channels have different units or, for the LSTM, when the data is unlike
    the IMS vibration levels it was trained on (the standardised values are then mapped
    into the model's units). ``periods`` (readings per day of each series) is needed by the
    ``seasonal`` predictor, which runs single-channel series as two views scored apart;
    engines with the same period run together.
    """
    n_ch = series[0].shape[1]
    if standardise:
        series = [standardise_online(s, freeze_after=freeze_after) for s in series]
    params = scoring_params(args)
    if args.predictor == "seasonal":
        if n_ch != 1:
            raise SystemExit("the seasonal predictor takes single-channel data")
        periods = periods or [1] * len(series)
        traces: list[Trace | None] = [None] * len(series)
        for period in sorted(set(periods)):
            group = [i for i, p in enumerate(periods) if p == period]
            model = make_predictor(
                "seasonal",
                ("c0",),
                rate=args.level_rate,
                period=period,
                season_rate=args.season_rate,
                range_tolerance=args.range_tolerance,
            )
            views = len(model.channels)
            scoring = EngineScoring(replace(params, channel_reduce="max"), n_channels=views)
            got = stream(
                model,
                scoring,
                [np.repeat(series[i], views, axis=1) for i in group],
                [ids[i] for i in group],
            )
            for i, t in zip(group, got, strict=True):
                traces[i] = t
        return [t for t in traces if t is not None]
    channels = tuple(f"c{k}" for k in range(n_ch))
    model = make_predictor(args.predictor, channels, args.model, args.level_rate)
    if args.predictor == "lstm":
        if len(model.channels) != n_ch:
            raise SystemExit(
                f"model has {len(model.channels)} channels, the data has {n_ch}: "
                "use another --predictor"
            )
        if standardise:
            from service.model import StreamingModel

            assert isinstance(model, StreamingModel)
            series = [model.unscale(s) for s in series]
    return stream(model, EngineScoring(params, n_channels=n_ch), series, ids)


def onsets(trace: Trace, level: int = ALARM) -> npt.NDArray[np.bool_]:
    """Rows where the status rose to ``level`` or above from below it."""
    prev = np.concatenate([[0], trace.status[:-1]])
    out: npt.NDArray[np.bool_] = (trace.status >= level) & (prev < level)
    return out
