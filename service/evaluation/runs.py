"""The model side of an evaluation: which predictor turns a data set's readings into
residuals, and running recorded streams through it and the scoring.

The predictor is the evaluation's *model* and may differ per data set (the bundled IMS LSTM
for vibration, a seasonal model for NAB's server metrics, ...); the scoring is the
service's, from ``ScoringSettings``. Because the predictor never depends on the scoring,
:func:`record` steps it once and :func:`score` replays the residuals under any scoring
settings (what the selection procedure does for every candidate).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.config import DEFAULT_ARTIFACT, ScoringSettings
from service.evaluation.predictors import (
    PREDICTORS,
    make_predictor,
    standardise_online,
    with_changes,
)
from service.evaluation.stream import Residuals, Trace, replay, stream
from service.scoring import EngineScoring

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Recording:
    """A stream to evaluate: one engine's readings ``(T, C)`` and event times."""

    name: str
    values: FloatArray
    ts_ms: IntArray
    period: int = 1  #: readings per day (the seasonal predictor's period)


@dataclass(frozen=True)
class PredictorSpec:
    """A predictor and its settings (a command's ``--predictor`` options)."""

    predictor: str = "ewma"
    model: Path = DEFAULT_ARTIFACT
    level_rate: float = 0.01
    season_rate: float = 1.0
    range_tolerance: float = 0.0
    robust: float = 0.0
    #: standardise every channel online first (channels in different units, or data unlike
    #: what an LSTM was trained on)
    standardise: bool = False
    #: with ``standardise``: freeze the statistics after this many readings (a per-engine
    #: healthy baseline), 0 = never
    freeze_after: int = 0
    #: > 0: every channel is also seen as its change, its departure from an EWMA of its
    #: recent readings at this rate (``predictors.with_changes``; twice the channels)
    change_rate: float = 0.0

    def describe(self) -> str:
        """One line naming the predictor and its settings."""
        keep = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.predictor != "lstm":
            keep.pop("model")
        if self.predictor != "seasonal":
            for k in ("season_rate", "range_tolerance", "robust"):
                keep.pop(k)
        if self.predictor not in ("ewma", "seasonal"):
            keep.pop("level_rate")
        return ", ".join(f"{k}={v}" for k, v in keep.items())


def add_predictor_arguments(
    parser: argparse.ArgumentParser, defaults: PredictorSpec, note: str = ""
) -> None:
    """``--predictor`` and its settings. Unset options keep the data set's own model
    (``defaults``, or what :func:`predictor_spec` is given); ``note`` says more in the help."""
    g = parser.add_argument_group(
        "predictor (the model whose errors are scored)", note or None
    )
    d = defaults
    g.add_argument("--predictor", choices=PREDICTORS, default=None,
                   help=f"online predictor (default {d.predictor})")
    g.add_argument("--model", type=Path, default=None,
                   help="model artifact for --predictor lstm (default: the bundled IMS LSTM)")
    g.add_argument("--level-rate", type=float, default=None,
                   help="EWMA rate per reading of the ewma/seasonal level "
                   f"(default {d.level_rate})")
    g.add_argument("--season-rate", type=float, default=None,
                   help="seasonal: EWMA rate of the daily profile per phase; 1.0 = the reading "
                   f"one day earlier (default {d.season_rate})")
    g.add_argument("--range-tolerance", type=float, default=None,
                   help="seasonal: > 0 adds the range view, readings beyond the highest/lowest "
                   f"so far widened by this fraction of the range (default {d.range_tolerance})")
    g.add_argument("--robust", type=float, default=None,
                   help="seasonal: > 0 caps each update of the level and profile at this many "
                   f"typical deviations, so one spike does not drag them (default {d.robust})")
    g.add_argument("--standardise", action=argparse.BooleanOptionalAction, default=None,
                   help=f"standardise each channel online first (default {d.standardise})")
    g.add_argument("--freeze-after", type=int, default=None,
                   help="with --standardise: freeze the statistics after this many readings "
                   f"(a per-engine healthy baseline; 0 = never; default {d.freeze_after})")


def predictor_spec(args: argparse.Namespace, base: PredictorSpec) -> PredictorSpec:
    """``base`` with the predictor options given on the command line."""
    given = {
        f.name: getattr(args, f.name)
        for f in fields(PredictorSpec)
        if getattr(args, f.name, None) is not None
    }
    return replace(base, **given)


def _prepare(spec: PredictorSpec, recs: Sequence[Recording]) -> list[FloatArray]:
    series = [r.values for r in recs]
    if spec.standardise:
        freeze = spec.freeze_after or None
        series = [standardise_online(s, freeze_after=freeze) for s in series]
    if spec.change_rate > 0:
        series = [with_changes(s, spec.change_rate) for s in series]
    return series


def _groups(spec: PredictorSpec, recs: Sequence[Recording]) -> list[list[int]]:
    """Engines that share one predictor instance (the seasonal one has a period each)."""
    if spec.predictor != "seasonal":
        return [list(range(len(recs)))]
    periods = sorted({r.period for r in recs})
    return [[i for i, r in enumerate(recs) if r.period == p] for p in periods]


@dataclass(frozen=True)
class Recorded:
    """What a predictor produced for some streams, to score under any settings."""

    residuals: tuple[Residuals, ...]
    #: the model's channels are views of one signal, scored apart (the seasonal model)
    views: bool
    #: the model's warm-up in seconds (commissioning lasts at least that long)
    warmup_s: float = 0.0


def is_views(spec: PredictorSpec) -> bool:
    """Whether ``spec``'s channels are alternative views of one signal (scored apart)."""
    return spec.predictor == "seasonal"


#: How long a seasonal model needs before it predicts: one daily period.
SEASON_S = 86_400.0


def warmup_s(spec: PredictorSpec) -> float:
    """How long ``spec``'s model needs before its predictions mean anything: one period for
    the seasonal model (its daily profile and range are empty before), 0 for the others."""
    return SEASON_S if spec.predictor == "seasonal" else 0.0


def _run(
    spec: PredictorSpec, settings: ScoringSettings, recs: Sequence[Recording]
) -> tuple[list[Trace], list[Residuals]]:
    if not recs:
        return [], []
    series = _prepare(spec, recs)
    n_ch = series[0].shape[1]
    traces: list[Trace | None] = [None] * len(recs)
    residuals: list[Residuals | None] = [None] * len(recs)
    for group in _groups(spec, recs):
        channels = tuple(f"c{k}" for k in range(n_ch))
        model = make_predictor(
            spec.predictor, channels, spec.model, spec.level_rate, recs[group[0]].period,
            spec.season_rate, spec.range_tolerance, spec.robust,
        )
        views = len(model.channels)
        data = [series[i] for i in group]
        if spec.predictor == "seasonal":
            if n_ch != 1:
                raise SystemExit("the seasonal predictor takes single-channel data")
            data = [np.repeat(s, views, axis=1) for s in data]
        elif views != n_ch:
            raise SystemExit(
                f"the model has {views} channels, the data {n_ch}: use another --predictor"
            )
        if spec.predictor == "lstm" and spec.standardise:
            from service.model import StreamingModel

            assert isinstance(model, StreamingModel)
            data = [np.asarray(model.unscale(s), dtype=np.float64) for s in data]
        scoring = EngineScoring(settings, views, views=is_views(spec),
                                model_warmup_s=warmup_s(spec))
        got, rec = stream(model, scoring, data, [recs[i].name for i in group],
                          [recs[i].ts_ms for i in group])
        if views > 1 and not is_views(spec):
            # Which channels drive the error: the processor keeps no shares, the same
            # scoring replayed on the same residuals gives them (and the same statuses).
            again = replay(EngineScoring(settings, views, model_warmup_s=warmup_s(spec)), rec)
            got = [replace(t, contributions=a.contributions)
                   for t, a in zip(got, again, strict=True)]
        for i, t, r in zip(group, got, rec, strict=True):
            traces[i], residuals[i] = t, r
    return [t for t in traces if t is not None], [r for r in residuals if r is not None]


def run(spec: PredictorSpec, settings: ScoringSettings, recs: Sequence[Recording]) -> list[Trace]:
    """Stream ``recs`` through the predictor and the service's processor and scoring."""
    return _run(spec, settings, recs)[0]


def record(spec: PredictorSpec, recs: Sequence[Recording]) -> Recorded:
    """The predictor's residuals for ``recs`` (stepped once, for :func:`score`)."""
    return Recorded(tuple(_run(spec, ScoringSettings(), recs)[1]), is_views(spec),
                    warmup_s(spec))


def score(settings: ScoringSettings, recorded: Recorded) -> list[Trace]:
    """Traces of recorded residuals under ``settings`` (what :func:`run` would give)."""
    if not recorded.residuals:
        return []
    n_ch = recorded.residuals[0].values.shape[1]
    scoring = EngineScoring(settings, n_ch, views=recorded.views,
                            model_warmup_s=recorded.warmup_s)
    return replay(scoring, recorded.residuals)

