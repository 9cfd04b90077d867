"""Bad configuration fails at start-up with a message naming the setting."""

from __future__ import annotations

from typing import Any

import pytest

from service.config import ScoringSettings, load_settings
from service.errors import ConfigError
from service.evaluation.nab import NAB_DEFAULTS
from service.scoring.params import ScoringParams


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"kafka": {"commit_interval_ms": 0}}, "kafka.commit_interval_ms"),
        ({"kafka": {"auto_offset_reset": "never"}}, "kafka.auto_offset_reset"),
        ({"kafka": {"instance_id": "has space"}}, "kafka.instance_id"),
        ({"api": {"port": 70000}}, "api.port"),
        ({"state": {"window": 1}}, "state.window"),
        ({"scoring": {"scorer": "magic"}}, "scoring.scorer"),
        ({"scoring": {"clear_score": 0.5, "warning_score": 0.4}}, "scoring.clear_score"),
        ({"scoring": {"incident_score": 0.2}}, "scoring.incident_score"),
        ({"state": {"trim_interval_s": -1}}, "state.trim_interval_s"),
        ({"kafka": {"heartbeat_interval_ms": 5000, "session_timeout_ms": 6000}},
         "kafka.heartbeat_interval_ms"),
        ({"kafka": {"unknown_setting": 1}}, "kafka.unknown_setting"),
        ({"kafka": {"commit_interval_ms": 300, "catch_up_commit_interval_ms": 200}},
         "kafka.catch_up_commit_interval_ms"),
    ],
)
def test_bad_setting_is_named(overrides: dict[str, dict[str, object]], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    assert info.value.setting == setting
    assert setting in str(info.value)


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIBEWATCH_KAFKA__GROUP_ID", "from-env")
    monkeypatch.setenv("VIBEWATCH_API__TOKEN", "t0ken")
    s = load_settings()
    assert s.kafka.group_id == "from-env"
    assert s.api.token is not None and s.api.token.get_secret_value() == "t0ken"
    assert "t0ken" not in repr(s)


def test_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIBEWATCH_KAFKA__MAX_POLL_RECORDS", "lots")
    with pytest.raises(ConfigError, match=r"kafka\.max_poll_records"):
        load_settings()


def test_the_service_can_run_every_scoring_configuration_the_evaluations_use() -> None:
    """Every scoring knob is a service setting, with the same default, and the NAB
    configuration (scorer, incidents, ...) can be set on the service."""
    params, settings = ScoringParams(), ScoringSettings()
    for name, default in vars(params).items():
        assert getattr(settings, name) == default, name
    nab: dict[str, Any] = {k: v for k, v in NAB_DEFAULTS.items() if hasattr(params, k)}
    assert nab, "NAB_DEFAULTS names no scoring field"
    loaded = load_settings(scoring=nab).scoring
    assert ScoringParams.from_settings(loaded) == ScoringParams(**nab)
