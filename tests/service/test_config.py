"""Bad configuration fails at start-up with a message naming the setting."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from service.config import ScoringSettings, load_settings
from service.errors import ConfigError
from tests.secure_kafka import make_certificates


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
        ({"scoring": {"commission_readings": 1}}, "scoring.commission_readings"),
        ({"scoring": {"baseline_s": 0}}, "scoring.baseline_s"),
        ({"scoring": {"alarm_score": 0.2}}, "scoring.clear_score"),
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


def test_scoring_settings_check_themselves_wherever_they_are_built() -> None:
    """One settings definition: the rules hold for the evaluations' settings too."""
    with pytest.raises(ValueError, match="clear_score"):
        ScoringSettings(clear_score=0.3, warning_score=0.25)
    with pytest.raises(ValueError, match="unknown scorer"):
        ScoringSettings(scorer="nope")


def test_every_scoring_setting_is_an_evaluation_option(capsys: pytest.CaptureFixture[str]) -> None:
    from service.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "lead-time", "--help"])
    text = capsys.readouterr().out
    for name, field in ScoringSettings.model_fields.items():
        assert "--" + name.replace("_", "-") in text, name
        assert field.description, name


# Security, replication and identity (issue 15) ------------------------------------------------


def _security(**values: object) -> dict[str, object]:
    return {"kafka": {"security": values}}


SASL = {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u",
        "sasl_password": "p"}


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        (_security(protocol="TLS"), "kafka.security.protocol"),
        (_security(protocol="SASL_SSL"), "kafka.security.sasl_mechanism"),
        (_security(**{**SASL, "sasl_username": None}), "kafka.security.sasl_username"),
        (_security(**{**SASL, "sasl_password": None}), "kafka.security.sasl_password"),
        (_security(**{**SASL, "sasl_mechanism": "GSSAPI"}), "kafka.security.sasl_mechanism"),
        (_security(sasl_username="u"), "kafka.security.protocol"),
        (_security(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                   sasl_password="p", ssl_cafile="/etc/hostname"), "kafka.security.protocol"),
        (_security(protocol="SSL", ssl_cafile="/nonexistent/ca.pem"), "kafka.security.ssl_cafile"),
        (_security(protocol="SSL", ssl_cafile="/etc/hostname"), "kafka.security.ssl_cafile"),
        (_security(protocol="SSL", ssl_keyfile="/etc/hostname"), "kafka.security.ssl_certfile"),
        (_security(protocol="SSL", ssl_certfile="/etc/hostname"), "kafka.security.ssl_certfile"),
        ({"kafka": {"replication_factor": 2, "min_insync_replicas": 3}},
         "kafka.min_insync_replicas"),
        ({"kafka": {"replication_factor": 0}}, "kafka.replication_factor"),
    ],
)
def test_bad_security_or_replication_setting_is_named(
    overrides: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    assert info.value.setting == setting


def test_certificates_that_load_pass(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    s = load_settings(**_security(
        protocol="SSL", ssl_cafile=str(certs.ca), ssl_certfile=str(certs.client_cert),
        ssl_keyfile=str(certs.client_key),
    ))
    assert s.kafka.security.ssl_certfile == certs.client_cert
    with pytest.raises(ConfigError) as info:  # the broker's key does not fit the client's cert
        load_settings(**_security(protocol="SSL", ssl_certfile=str(certs.client_cert),
                                  ssl_keyfile=str(tmp_path / "broker.key")))
    assert info.value.setting == "kafka.security.ssl_keyfile"


def test_sasl_password_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIBEWATCH_KAFKA__SECURITY__PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("VIBEWATCH_KAFKA__SECURITY__SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("VIBEWATCH_KAFKA__SECURITY__SASL_USERNAME", "svc")
    monkeypatch.setenv("VIBEWATCH_KAFKA__SECURITY__SASL_PASSWORD", "s3cret")
    s = load_settings()
    assert s.kafka.security.sasl_password is not None
    assert s.kafka.security.sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())


def test_replication_defaults_suit_a_three_broker_cluster() -> None:
    s = load_settings().kafka
    assert (s.replication_factor, s.min_insync_replicas) == (3, 2)


def test_instance_id_defaults_to_host_and_port_and_an_explicit_one_wins() -> None:
    host = socket.gethostname()
    assert load_settings(api={"port": 8001}).kafka.instance_id == f"{host}-8001"
    # two instances on one host need two ports, hence two ids; a restart keeps its id
    assert load_settings(api={"port": 8002}).kafka.instance_id == f"{host}-8002"
    assert load_settings(api={"port": 8001}).kafka.instance_id == f"{host}-8001"
    assert load_settings(api={"port": 0}).kafka.instance_id == f"{host}-pid{os.getpid()}"
    explicit = load_settings(kafka={"instance_id": "vibewatch-2"}, api={"port": 8001})
    assert explicit.kafka.instance_id == "vibewatch-2"


@pytest.mark.parametrize(
    ("classes", "setting"),
    [
        ([{"name": "pump", "artifact_dir": "/no/such/dir"}], "model.classes.0.artifact_dir"),
        ([{"name": "pump", "artifact_dir": ".", "id_pattern": "pump-("}],
         "model.classes.0.id_pattern"),
        ([{"name": "Pump!", "artifact_dir": "."}], "model.classes.0.name"),
        ([{"name": "pump", "artifact_dir": "."}, {"name": "pump", "artifact_dir": "."}],
         "model.classes.1.name"),
        ([{"name": "default", "artifact_dir": "."}], "model.classes.0.name"),
        ([{"name": "pump"}], "model.classes.0.artifact_dir"),
    ],
)
def test_bad_class_settings_are_named(classes: list[dict[str, str]], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(model={"classes": classes})
    assert info.value.setting == setting


def test_classes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIBEWATCH_MODEL__CLASSES",
                       f'[{{"name": "pump", "artifact_dir": "{tmp_path}", '
                       '"id_pattern": "pump-.*"}]')
    s = load_settings()
    assert [(c.name, c.artifact_dir, c.id_pattern) for c in s.model.classes] == [
        ("pump", tmp_path, "pump-.*")]
    assert s.model.default_class == "default"


def test_an_unusable_class_artifact_is_named_at_start_up(tmp_path: Path) -> None:
    from service.runtime import Runtime

    settings = load_settings(model={"classes": [{"name": "pump", "artifact_dir": tmp_path}]})
    with pytest.raises(ConfigError) as info:
        Runtime(settings)
    assert info.value.setting == "model.classes.0.artifact_dir"
    assert "manifest" in str(info.value)
