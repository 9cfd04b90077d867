"""The pipeline leaves a rebalance that never finishes (kafka-python 3.0) and rejoins."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from service.config import load_settings
from service.errors import BrokerUnavailableError
from service.kafka.pipeline import Pipeline


def _pipeline(session_timeout_ms: int) -> SimpleNamespace:
    settings = load_settings(kafka={"session_timeout_ms": session_timeout_ms,
                                    "heartbeat_interval_ms": 1000}).kafka
    return SimpleNamespace(settings=settings, _unstable_since=None)


def _consumer(stable: bool) -> SimpleNamespace:
    return SimpleNamespace(_coordinator=SimpleNamespace(stable=lambda: stable))


def test_a_rebalance_unfinished_past_the_limit_ends_the_session() -> None:
    p = _pipeline(6000)  # limit 2 x 6 s
    Pipeline._check_group(p, _consumer(False), 100.0)  # type: ignore[arg-type]
    Pipeline._check_group(p, _consumer(False), 111.0)  # type: ignore[arg-type]
    with pytest.raises(BrokerUnavailableError, match="rebalance not finished in 12 s"):
        Pipeline._check_group(p, _consumer(False), 112.5)  # type: ignore[arg-type]


def test_a_stable_group_resets_the_clock() -> None:
    p = _pipeline(6000)
    Pipeline._check_group(p, _consumer(False), 100.0)  # type: ignore[arg-type]
    Pipeline._check_group(p, _consumer(True), 110.0)  # type: ignore[arg-type]
    Pipeline._check_group(p, _consumer(False), 111.0)  # type: ignore[arg-type]
    Pipeline._check_group(p, _consumer(False), 122.0)  # type: ignore[arg-type]
    with pytest.raises(BrokerUnavailableError):
        Pipeline._check_group(p, _consumer(False), 123.5)  # type: ignore[arg-type]
