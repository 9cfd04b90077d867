"""Metrics: per-engine gauges read from the store at scrape time, capped, gone on revoke."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from service.config import ScoringSettings
from service.domain import Reading
from service.metrics import ENGINE_GAUGES, Metrics
from service.processor import BatchProcessor
from service.scoring import STATUS_ORDER, EngineScoring
from service.state import EngineStore
from service.testing import FakeStepModel
from service.views import StoreEngines, engine_view

T0 = 1_795_608_000_000


def _fed(max_series: int, engines: list[str]) -> tuple[Metrics, BatchProcessor]:
    model = FakeStepModel()
    scoring = EngineScoring(ScoringSettings(commission_readings=2, commission_s=0), 1)
    store = EngineStore(window=8, channels=1, model_state_size=model.state_size,
                        score_state_size=scoring.state_size)
    processor = BatchProcessor(model, scoring, store, STATUS_ORDER, clock=lambda: 1.0)
    readings = [Reading(e, T0 + 1000 * k, {"vibration": 1.0 + 0.1 * i + 0.01 * k})
                for k in range(5) for i, e in enumerate(engines)]
    processor.process(readings, [i % 3 for i in range(len(readings))])
    metrics = Metrics(CollectorRegistry(), max_engine_series=max_series)
    metrics.engines.attach(StoreEngines(
        store, lambda: model.channels,
        lambda actual, scored, state: scoring.explain(model.scaled_residual(actual, scored),
                                                      state),
    ))
    return metrics, processor


def _value(text: str, name: str, engine: str, channel: str | None = None) -> float | None:
    labels = (f'channel="{channel}",' if channel else "") + f'engine_id="{engine}"'
    m = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_gauges_show_the_stores_current_values() -> None:
    metrics, processor = _fed(10, ["a", "b"])
    text = generate_latest(metrics.registry).decode()
    for engine in ("a", "b"):
        view = engine_view(processor.store, engine, ("vibration",), STATUS_ORDER, "v")
        assert view is not None
        assert _value(text, "vibewatch_engine_anomaly_score", engine) == pytest.approx(view.score)
        assert _value(text, "vibewatch_engine_status", engine) == STATUS_ORDER.index(view.status)
        assert _value(text, "vibewatch_engine_reading", engine, "vibration") == pytest.approx(
            view.values["vibration"])
        assert _value(text, "vibewatch_engine_prediction", engine, "vibration") == (
            pytest.approx(view.predicted["vibration"]))
        assert _value(text, "vibewatch_engine_last_seen_timestamp_seconds", engine) == 1.0
        assert _value(text, "vibewatch_engine_channel_contribution", engine, "vibration") == 1.0
    # The next reading shows at the next scrape, with no call in between.
    processor.process([Reading("a", T0 + 10_000, {"vibration": 7.0})], [0])
    text = generate_latest(metrics.registry).decode()
    assert _value(text, "vibewatch_engine_reading", "a", "vibration") == 7.0


def test_per_engine_series_are_capped_to_the_engines_tracked_longest() -> None:
    metrics, _ = _fed(2, ["a", "b", "c"])
    text = generate_latest(metrics.registry).decode()
    for name, _doc, _per_channel in ENGINE_GAUGES:
        series = re.findall(rf'^{name}{{.*engine_id="(\w)"', text, re.M)
        assert sorted(series) == ["a", "b"], name


def test_dropped_engines_lose_their_series_and_free_the_cap() -> None:
    metrics, processor = _fed(2, ["a", "b", "c"])
    processor.store.drop_partitions({processor.store.partition[processor.store.index["a"]]})
    text = generate_latest(metrics.registry).decode()
    assert 'engine_id="a"' not in text
    assert len(set(re.findall(r'engine_id="(\w)"', text))) == 2


def test_families_exist_before_a_store_is_attached() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    names = {m.name for m in registry.collect()}
    for name, _doc, _per_channel in ENGINE_GAUGES:
        assert name in names
    assert "engine_id=" not in generate_latest(registry).decode()


def test_anomaly_events_have_a_series_per_status_from_the_start() -> None:
    """increase() cannot count a series' first sample: every status's series exists at 0
    before its first event, so the first alarm shows in the events panel."""
    text = generate_latest(Metrics(CollectorRegistry()).registry).decode()
    for status in STATUS_ORDER:
        assert f'vibewatch_anomaly_events_total{{status="{status.value}"}} 0.0' in text
