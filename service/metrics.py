"""Every Prometheus metric of the service, defined against an injected registry.

Names use base units and the standard suffixes. Per-engine series are bounded: the
per-engine gauges (:class:`EngineCollector`, read from the store at scrape time) cover at
most ``max_engine_series`` engines (the ones tracked longest); engines past the cap are
still scored, counted and served by the API, just not exported as their own series.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service import __version__
from service.domain import Status

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Outcomes of a reading, the label values of ``vibewatch_readings_total``.
OUTCOMES = ("processed", "invalid", "duplicate", "late")


class Metrics:
    """The service's metrics. Create one per process (or per test) with its own registry."""

    def __init__(self, registry: CollectorRegistry, max_engine_series: int = 1000) -> None:
        self.registry = registry
        self.max_engine_series = max_engine_series
        # prometheus-client's default collectors, on this registry rather than the global
        # one: process_* (resident memory, CPU seconds, open files), python_gc_* and
        # python_info.
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.build_info = Info(
            "vibewatch_build", "The running vibewatch: version and Python.", registry=registry
        )
        self.build_info.info({"version": __version__, "python": platform.python_version()})

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
        self.engines_stale = Gauge(
            "vibewatch_engines_stale",
            "Engines owned by this instance with no reading processed for api.stale_after_s.",
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
        #: per-engine gauges, read from the store at scrape time (see EngineCollector)
        self.engines = EngineCollector(max_engine_series)
        registry.register(self.engines)
        self.scoring_level = Gauge(
            "vibewatch_scoring_level",
            "Configured score levels: warning and alarm raise a status, clear lowers it.",
            ["level"],
            registry=registry,
        )
        self.model_info = Info(
            "vibewatch_model", "The model artifact in use, per engine class.", ["class"],
            registry=registry,
        )
        self.model_reload_failures = Counter(
            "vibewatch_model_reload_failures_total",
            "Model reloads this instance could not apply (it keeps the class's model).",
            ["class"],
            registry=registry,
        )
        self.engines_recommissioned = Counter(
            "vibewatch_engines_recommissioned_total",
            "Engines restored from changelog rows of a model of another layout, started "
            "afresh (commissioning again).",
            ["class"],
            registry=registry,
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
        self.processing_failures = Counter(
            "vibewatch_processing_failures_total",
            "Batches whose processing raised: state rolled back to the last commit and the "
            "batch processed again message by message (the failing messages are dead letters).",
            registry=registry,
        )
        self.engines_evicted = Counter(
            "vibewatch_engines_evicted_total",
            "Engines evicted after state.idle_evict_s without a reading (state tombstoned).",
            registry=registry,
        )
        self.sessions_failed = Counter(
            "vibewatch_kafka_sessions_failed_total",
            "Kafka sessions that ended in a failure, by class (retriable, fatal).",
            ["failure"],
            registry=registry,
        )
        self.checkpoint_seconds = Histogram(
            "vibewatch_checkpoint_duration_seconds",
            "Time processing was held to write a local checkpoint (after a blocking commit).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.readings.labels(outcome)
        for failure in ("retriable", "fatal"):
            self.sessions_failed.labels(failure)
        # Every status from 0: a series born at its first event hides that event from
        # increase() and rate() (the fleet view's events panel stayed empty after the fleet's
        # first commissioning and first alarm).
        for status in Status:
            self.anomaly_events.labels(status.value)


#: Per-engine gauges: (name, help, per channel).
ENGINE_GAUGES: tuple[tuple[str, str, bool], ...] = (
    ("vibewatch_engine_anomaly_score",
     "Latest anomaly score per engine (no ceiling; the levels are vibewatch_scoring_level); "
     "at most max_engine_series engines (api.max_engine_series) get a series.", False),
    ("vibewatch_engine_anomaly_threshold",
     "Error level (units of vibewatch_engine_prediction_error) at which the engine's "
     "score reaches scoring.alarm_score; same series cap as the score.", False),
    ("vibewatch_engine_status",
     "Status code per engine: 0 warmup, 1 normal, 2 warning, 3 alarm; same series cap.", False),
    ("vibewatch_engine_last_seen_timestamp_seconds",
     "Wall-clock time the engine's latest reading was processed; same series cap.", False),
    ("vibewatch_engine_prediction_error",
     "Smoothed prediction error (scaled units) per engine; same series cap.", False),
    ("vibewatch_engine_reading", "Latest reading per engine and channel; same series cap.",
     True),
    ("vibewatch_engine_prediction",
     "Prediction of the next reading per engine and channel; same series cap.", True),
    ("vibewatch_engine_channel_contribution",
     "Share (0-1) of the engine's latest error each channel drives (channels below 0.01 "
     "left out); same series cap. Alerts name the top channels from it.", True),
)


class EngineSource(Protocol):
    """What the per-engine gauges read: the pipeline's store and the model's channels."""

    def engine_samples(self, limit: int) -> list[EngineSample]: ...


class EngineCollector(Collector):
    """The per-engine gauges, computed when Prometheus scrapes rather than on every commit.

    Updating seven labelled gauges for every changed engine on every commit cost the
    pipeline thread ~13 % of its time at 10,000 readings/s; reading the store once per
    scrape costs nothing between scrapes. At most ``max_engine_series`` engines get series:
    the ones this instance has tracked longest (the store's insertion order), so the set is
    stable from scrape to scrape; engines that leave the instance (a rebalance) simply stop
    appearing. Until :meth:`attach` the families are empty.
    """

    def __init__(self, max_engine_series: int) -> None:
        self.max_engine_series = max_engine_series
        self._source: EngineSource | None = None

    def attach(self, source: EngineSource) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        if self._source is not None and self.max_engine_series > 0:
            for e in self._source.engine_samples(self.max_engine_series):
                singles = (e.score, e.threshold, float(e.status_code), e.last_seen_s, e.error)
                for family, value in zip(families, singles, strict=False):
                    family.add_metric([e.engine_id], value)
                for channel, value in e.values.items():
                    families[5].add_metric([e.engine_id, channel], value)
                for channel, value in e.predicted.items():
                    families[6].add_metric([e.engine_id, channel], value)
                for channel, value in e.contributions.items():
                    families[7].add_metric([e.engine_id, channel], value)
        return iter(families)

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(name, doc, labels=["engine_id", "channel"] if per_channel
                              else ["engine_id"])
            for name, doc, per_channel in ENGINE_GAUGES
        ]


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
    #: channel -> share of the latest error (empty when not scored or not explained)
    contributions: dict[str, float] = field(default_factory=dict)
