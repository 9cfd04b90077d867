"""Anomaly scoring: per-engine prediction errors -> score in [0, 1] -> status with hysteresis.

``EngineScoring`` is what the pipeline calls; the scorers in ``service.scoring.scorers``
follow River's contract (score before learn, higher = more anomalous, thresholds wrap scorers).
"""

from service.scoring.engine import STATUS_ORDER, EngineScoring, ScoreBatch

__all__ = ["STATUS_ORDER", "EngineScoring", "ScoreBatch"]
