"""The scorers the service can run, by name: the one place a scorer is added.

``ScoringSettings.scorer`` is checked against :data:`SCORERS`, ``EngineScoring`` builds the
scorer it names, the evaluation commands offer these names, and the scorer contract suite
runs every entry. Adding a scorer is one entry here (and its class in
``service.scoring.scorers``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.scoring.scorers import (
    AnomalyLikelihood,
    GaussianTail,
    LikelihoodWithSpikes,
    NonparametricThreshold,
    Scorer,
)

if TYPE_CHECKING:
    from service.config import ScoringSettings


@dataclass(frozen=True)
class ScorerSpec:
    """One registered scorer: how to build it from the settings, and what it does."""

    name: str
    summary: str
    build: Callable[[ScoringSettings], Scorer]


def _likelihood(s: ScoringSettings) -> Scorer:
    return AnomalyLikelihood(
        short=s.smoothing, span_s=s.baseline_s, episode_readings=s.episode_readings
    )


def _likelihood_spikes(s: ScoringSettings) -> Scorer:
    return LikelihoodWithSpikes(
        short=s.smoothing,
        span_s=s.baseline_s,
        spike_floor=s.spike_floor,
        spike_span_s=s.spike_s,
        episode_readings=s.episode_readings,
    )


def _gaussian(s: ScoringSettings) -> Scorer:
    return GaussianTail(span_s=s.baseline_s, episode_readings=s.episode_readings)


def _telemanom(s: ScoringSettings) -> Scorer:
    return NonparametricThreshold(
        window=s.telemanom_window, smoothing=s.smoothing, level=s.alarm_score
    )


SCORERS: dict[str, ScorerSpec] = {
    spec.name: spec
    for spec in (
        ScorerSpec(
            "likelihood",
            "HTM-style anomaly likelihood: the smoothed error against its long-run distribution",
            _likelihood,
        ),
        ScorerSpec(
            "likelihood-spikes",
            "the likelihood, plus every raw error against the raw errors' distribution",
            _likelihood_spikes,
        ),
        ScorerSpec(
            "gaussian",
            "the raw error against an EWMA Gaussian of past errors (no smoothing)",
            _gaussian,
        ),
        ScorerSpec(
            "telemanom",
            "telemanom's nonparametric threshold over a ring of smoothed errors "
            "(O(window) per reading: small fleets and evaluations only)",
            _telemanom,
        ),
    )
}


def build_scorer(settings: ScoringSettings) -> Scorer:
    """The scorer ``settings.scorer`` names. Raises ValueError for an unknown name."""
    spec = SCORERS.get(settings.scorer)
    if spec is None:
        raise ValueError(f"unknown scorer {settings.scorer!r}; choose from {sorted(SCORERS)}")
    return spec.build(settings)
