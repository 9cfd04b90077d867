"""Anomaly scoring: per-engine prediction errors -> score -> status with hysteresis.

``EngineScoring`` is what the pipeline calls; the scorers in ``service.scoring.scorers``
follow River's contract (score before learn, higher = more anomalous, thresholds wrap
scorers) and are registered by name in ``service.scoring.registry``.
"""

from service.scoring.engine import STATUS_ORDER, EngineScoring, ScoreBatch

__all__ = ["STATUS_ORDER", "EngineScoring", "ScoreBatch"]
