"""Scoring parameters: the committed ``ScoringSettings`` plus the fields this package adds.

``ScoringParams.from_settings`` accepts the service's ``ScoringSettings`` (whatever subset of
the fields it has) so the pipeline and the evaluations build the scoring the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

ScorerName = Literal["likelihood", "gaussian", "telemanom", "likelihood-spikes"]
SCORERS: tuple[ScorerName, ...] = ("likelihood", "gaussian", "telemanom", "likelihood-spikes")


@dataclass(frozen=True)
class ScoringParams:
    """Every knob of the scoring, with the defaults proposed for the service.

    Scores are log-scaled tail probabilities (see ``stats.tail_to_score``): 0.25 is a
    1-in-316 event, 0.3 a 1-in-1,000 event, 0.5 a 1-in-100,000 event, of the engine's own
    smoothed error under its long-run distribution.
    """

    #: which scorer turns the error stream into scores (see ``service.scoring.scorers``)
    scorer: ScorerName = "likelihood"
    #: readings per engine before any status other than warmup (and before scores count)
    warmup_readings: int = 30
    #: EWMA rate of the long-run error distribution (1/rate ~ readings remembered)
    error_decay: float = 0.001
    #: EWMA rate of the short-term error average (HTM's short window; 1.0 = no smoothing)
    smoothing: float = 0.5
    #: score at or above which, for hold_readings readings, the status becomes warning
    warning_score: float = 0.25
    #: score at or above which, for hold_readings readings, the status becomes alarm
    alarm_score: float = 0.3
    #: score below which, for hold_readings readings, warning/alarm clear to normal
    clear_score: float = 0.1
    #: consecutive readings needed to raise or clear a status
    hold_readings: int = 3
    #: consecutive readings below clear_score to return to normal (0 = hold_readings)
    clear_readings: int = 0
    #: a reading that raises the status with a score >= incident_score opens an incident:
    #: the engine is held in alarm for incident_readings readings (0: no incidents), so a
    #: long or bursty disturbance is one event
    incident_readings: int = 0
    incident_score: float = 1.0
    #: "rms": score the RMS of the channels' residuals; "max": score every channel on its
    #: own (scorer state per channel) and take the most anomalous
    channel_reduce: Literal["rms", "max"] = "rms"
    #: likelihood-spikes: decades of tail probability of one raw error that score 1.0
    spike_floor: float = 60.0
    #: likelihood-spikes: EWMA rate of the raw-error distribution
    spike_decay: float = 0.003
    #: ring length of the telemanom scorer (floats per engine)
    telemanom_window: int = 100
    #: False: while a reading scores at or above warning_score, the scorer's long-run
    #: baseline is not updated, so a developing fault is not learned as the new normal
    learn_from_anomalies: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.clear_score < self.warning_score <= self.alarm_score < 1:
            raise ValueError("need 0 < clear_score < warning_score <= alarm_score < 1")
        if not (0 < self.error_decay < 1 and 0 < self.smoothing <= 1):
            raise ValueError("need 0 < error_decay < 1 and 0 < smoothing <= 1")
        if self.clear_readings < 0 or self.incident_readings < 0:
            raise ValueError("need clear_readings >= 0 and incident_readings >= 0")
        if not self.alarm_score <= self.incident_score <= 1:
            raise ValueError("need alarm_score <= incident_score <= 1")
        if self.hold_readings < 1 or self.warmup_readings < 0 or self.telemanom_window < 2:
            raise ValueError("need hold_readings >= 1, warmup_readings >= 0, telemanom_window >= 2")
        if not (self.spike_floor > 0 and 0 < self.spike_decay < 1):
            raise ValueError("need spike_floor > 0 and 0 < spike_decay < 1")
        if self.channel_reduce not in ("rms", "max"):
            raise ValueError("channel_reduce must be rms or max")
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> ScoringParams:
        """Every field ``settings`` has (``ScoringSettings`` or any object), then overrides."""
        if isinstance(settings, ScoringParams):
            return replace(settings, **overrides)
        values = {
            f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)
        }
        values.update(overrides)
        return cls(**values)
