"""Metrics: per-engine series cap and cleanup after a rebalance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from service.metrics import EngineSample, Metrics


def _sample(e: str) -> EngineSample:
    return EngineSample(e, 0.5, 0.9, 1, 1.0, 0.1, {"vibration": 1.0}, {"vibration": 1.1})


def test_per_engine_series_are_capped() -> None:
    m = Metrics(CollectorRegistry(), max_engine_series=2)
    for e in ("a", "b", "c"):
        m.set_engine(_sample(e))
    text = generate_latest(m.registry).decode()
    assert 'engine_id="a"' in text and 'engine_id="b"' in text
    assert 'engine_id="c"' not in text


def test_forgotten_engines_lose_their_series_and_free_the_cap() -> None:
    m = Metrics(CollectorRegistry(), max_engine_series=2)
    m.set_engine(_sample("a"))
    m.set_engine(_sample("b"))
    m.forget_engines(["a", "zzz"])
    m.set_engine(_sample("c"))
    text = generate_latest(m.registry).decode()
    assert 'engine_id="a"' not in text and 'engine_id="c"' in text
