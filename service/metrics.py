"""Every Prometheus metric of the service, defined against an injected registry.

Names use base units and the standard suffixes. Per-engine series are bounded: the
``vibewatch_engine_anomaly_score`` gauge keeps at most ``max_engine_series`` engines (the
ones seen first); engines past the cap are still scored, counted and served by the API,
just not exported as their own series.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Outcomes of a reading, the label values of ``vibewatch_readings_total``.
OUTCOMES = ("processed", "invalid", "duplicate", "late")


class Metrics:
    """The service's metrics. Create one per process (or per test) with its own registry."""

    def __init__(self, registry: CollectorRegistry, max_engine_series: int = 1000) -> None:
        self.registry = registry
        self.max_engine_series = max_engine_series
        self._engine_series: set[str] = set()
        self._lock = threading.Lock()

        self.readings = Counter(
            "vibewatch_readings_total",
            "Readings seen, by outcome (processed, invalid, duplicate, late).",
            ["outcome"],
            registry=registry,
        )
        self.messages = Counter(
            "vibewatch_messages_total", "Kafka messages consumed from the readings topic.",
            registry=registry,
        )
        self.dead_letters = Counter(
            "vibewatch_dead_letters_total",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "vibewatch_batch_duration_seconds",
            "Time to decode, step, score and publish one poll batch.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "vibewatch_batch_readings",
            "Readings per processed poll batch.",
            buckets=(1, 10, 100, 1_000, 10_000, 100_000),
            registry=registry,
        )
        self.end_to_end_seconds = Histogram(
            "vibewatch_end_to_end_latency_seconds",
            "Reading event time to result visible (state updated, outputs committed).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "vibewatch_consumer_lag_messages",
            "Messages behind the end of each owned readings partition.",
            ["partition"],
            registry=registry,
        )
        self.engines_tracked = Gauge(
            "vibewatch_engines_tracked", "Engines with state in this instance.", registry=registry
        )
        self.fleet_view_engines = Gauge(
            "vibewatch_fleet_view_engines",
            "Engines of other instances held by this instance's fleet view.",
            registry=registry,
        )
        self.engines_by_status = Gauge(
            "vibewatch_engines_by_status",
            "Engines tracked by this instance, by status.",
            ["status"],
            registry=registry,
        )
        self.anomaly_events = Counter(
            "vibewatch_anomaly_events_total",
            "Anomaly events (status changes) emitted, by new status.",
            ["status"],
            registry=registry,
        )
        self.engine_score = Gauge(
            "vibewatch_engine_anomaly_score",
            "Latest anomaly score in [0, 1] per engine; at most max_engine_series engines "
            "(api.max_engine_series) get a series.",
            ["engine_id"],
            registry=registry,
        )
        self.engine_threshold = Gauge(
            "vibewatch_engine_anomaly_threshold",
            "Error level (units of vibewatch_engine_prediction_error) at which the engine's "
            "score reaches scoring.alarm_score; same series cap as the score.",
            ["engine_id"],
            registry=registry,
        )
        self.engine_status = Gauge(
            "vibewatch_engine_status",
            "Status code per engine: 0 warmup, 1 normal, 2 warning, 3 alarm; same series cap.",
            ["engine_id"],
            registry=registry,
        )
        self.engine_last_seen = Gauge(
            "vibewatch_engine_last_seen_timestamp_seconds",
            "Wall-clock time the engine's latest reading was processed; same series cap.",
            ["engine_id"],
            registry=registry,
        )
        self.engine_reading = Gauge(
            "vibewatch_engine_reading",
            "Latest reading per engine and channel; same series cap.",
            ["engine_id", "channel"],
            registry=registry,
        )
        self.engine_prediction = Gauge(
            "vibewatch_engine_prediction",
            "Prediction of the next reading per engine and channel; same series cap.",
            ["engine_id", "channel"],
            registry=registry,
        )
        self.engine_error = Gauge(
            "vibewatch_engine_prediction_error",
            "Smoothed prediction error (scaled units) per engine; same series cap.",
            ["engine_id"],
            registry=registry,
        )
        self.scoring_level = Gauge(
            "vibewatch_scoring_level",
            "Configured score levels: warning and alarm raise a status, clear lowers it.",
            ["level"],
            registry=registry,
        )
        self.model_info = Info(
            "vibewatch_model", "The model artifact in use.", registry=registry
        )
        self.commit_seconds = Histogram(
            "vibewatch_commit_duration_seconds",
            "Time to commit offsets and outputs.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.restore_seconds = Histogram(
            "vibewatch_restore_duration_seconds",
            "Time to restore the state of newly assigned partitions.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.up = Gauge(
            "vibewatch_ready", "1 when the service is ready to process readings.", registry=registry
        )
        self.last_processed = Gauge(
            "vibewatch_last_processed_timestamp_seconds",
            "Wall-clock time of the last processed batch (Unix seconds).",
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.readings.labels(outcome)

    def set_engine(self, engine: EngineSample) -> None:
        """Export one engine's latest values, unless the series cap is reached for new engines."""
        e = engine.engine_id
        if e not in self._engine_series:
            with self._lock:
                if len(self._engine_series) >= self.max_engine_series:
                    return
                self._engine_series.add(e)
        self.engine_score.labels(e).set(engine.score)
        self.engine_threshold.labels(e).set(engine.threshold)
        self.engine_status.labels(e).set(engine.status_code)
        self.engine_last_seen.labels(e).set(engine.last_seen_s)
        self.engine_error.labels(e).set(engine.error)
        for channel, value in engine.values.items():
            self.engine_reading.labels(e, channel).set(value)
        for channel, value in engine.predicted.items():
            self.engine_prediction.labels(e, channel).set(value)

    def forget_engines(self, engine_ids: list[str]) -> None:
        """Remove the series of engines this instance no longer owns (a rebalance)."""
        per_engine = (self.engine_score, self.engine_threshold, self.engine_status,
                      self.engine_last_seen, self.engine_error)
        per_channel = (self.engine_reading, self.engine_prediction)
        with self._lock:
            for e in engine_ids:
                if e not in self._engine_series:
                    continue
                self._engine_series.discard(e)
                for g in per_engine:
                    g.remove(e)
                for g in per_channel:
                    for labels in [k for k in g._metrics if k[0] == e]:
                        g.remove(*labels)


@dataclass(frozen=True, slots=True)
class EngineSample:
    """One engine's values for the per-engine gauges."""

    engine_id: str
    score: float
    threshold: float
    status_code: int
    last_seen_s: float
    error: float
    values: dict[str, float]
    predicted: dict[str, float]
