"""Bad configuration fails at start-up with a message naming the setting."""

from __future__ import annotations

import pytest

from service.config import load_settings
from service.errors import ConfigError


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
        ({"kafka": {"heartbeat_interval_ms": 5000, "session_timeout_ms": 6000}},
         "kafka.heartbeat_interval_ms"),
        ({"kafka": {"unknown_setting": 1}}, "kafka.unknown_setting"),
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
