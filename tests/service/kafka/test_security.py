"""Secured clusters: TLS and SASL settings reach every client, refusals name the setting.

The integration tests start the project's local broker with a SASL_SSL listener (certificates
made here with openssl, SCRAM users added at format time) and run ``vibewatch serve`` over it
end to end; a wrong password and an untrusted certificate stop the service at start-up with
a message naming the setting.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kafka import KafkaAdminClient, errors
from pydantic import SecretStr

from service.config import KafkaSecuritySettings, load_settings
from service.kafka import clients
from service.kafka.security import client_config, explain_client_error
from service.simulator import Fleet, messages
from tests.secure_kafka import SecureBroker, start_secure_broker
from tests.support import VIBEWATCH, ServiceProcess, read_all, topic_env, wait_for

ENGINES, TICKS = 6, 30


@pytest.fixture(scope="module")
def secure(local_kafka_module: ModuleType,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    broker = start_secure_broker(local_kafka_module, tmp_path_factory.mktemp("secure-kafka"))
    try:
        yield broker
    finally:
        broker.broker.stop()


def _kafka(secure: SecureBroker, **security: Any) -> Any:
    env = secure.env()
    sec = {
        "protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": env["VIBEWATCH_KAFKA__SECURITY__SASL_USERNAME"],
        "sasl_password": env["VIBEWATCH_KAFKA__SECURITY__SASL_PASSWORD"],
        "ssl_cafile": str(secure.certificates.ca), **security,
    }
    return load_settings(kafka={"bootstrap_servers": secure.sasl_bootstrap, "security": sec,
                                "instance_id": "test"}).kafka


# Unit ---------------------------------------------------------------------------------------


def test_client_config_carries_tls_and_sasl_only_when_the_protocol_uses_them() -> None:
    plain = client_config(KafkaSecuritySettings())
    assert plain == {"security_protocol": "PLAINTEXT"}
    sasl = client_config(KafkaSecuritySettings(
        protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="u",
        sasl_password=SecretStr("p"),
        ssl_check_hostname=False,
    ))
    assert sasl["security_protocol"] == "SASL_SSL"
    assert sasl["sasl_plain_password"] == "p" and sasl["sasl_mechanism"] == "SCRAM-SHA-256"
    assert sasl["ssl_check_hostname"] is False and sasl["ssl_cafile"] is None


def test_every_client_gets_the_security_settings() -> None:
    s = load_settings(kafka={"security": {
        "protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u",
        "sasl_password": "p"}}).kafka
    config = clients.connection(s, "readings")
    assert config["security_protocol"] == "SASL_PLAINTEXT"
    assert config["sasl_plain_username"] == "u" and config["sasl_plain_password"] == "p"


@pytest.mark.parametrize(("exc", "setting"), [
    (errors.TopicAuthorizationFailedError(), "kafka.readings_topic"),
    (errors.GroupAuthorizationFailedError(), "kafka.group_id"),
    (errors.TransactionalIdAuthorizationFailedError(), "kafka.group_id"),
    (errors.ClusterAuthorizationFailedError(), "kafka.create_topics"),
    (errors.SaslAuthenticationFailedError("bad"), "kafka.security.sasl_password"),
    (errors.UnsupportedSaslMechanismError("no"), "kafka.security.sasl_mechanism"),
])
def test_typed_refusals_name_their_setting(exc: Exception, setting: str) -> None:
    message = explain_client_error(exc, load_settings().kafka)
    assert message is not None and message.startswith(f"invalid setting {setting}:")


def test_a_retriable_error_is_not_explained() -> None:
    # nothing listens on port 1: unreachable is retriable, not a setting
    s = load_settings(kafka={"bootstrap_servers": "127.0.0.1:1"}).kafka
    assert explain_client_error(errors.KafkaTimeoutError("Unable to bootstrap"), s) is None
    assert explain_client_error(errors.NotLeaderForPartitionError(), s) is None


# Integration ----------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_the_probe_accepts_good_credentials(secure: SecureBroker, mechanism: str) -> None:
    s = _kafka(secure, sasl_mechanism=mechanism)
    assert explain_client_error(errors.KafkaTimeoutError("Unable to bootstrap"), s) is None


@pytest.mark.integration
@pytest.mark.parametrize(("security", "setting"), [
    ({"sasl_password": "wrong"}, "kafka.security.sasl_password"),
    ({"sasl_mechanism": "PLAIN", "sasl_password": "wrong"}, "kafka.security.sasl_password"),
    ({"sasl_username": "nobody"}, "kafka.security.sasl_password"),
    ({"ssl_cafile": "OTHER_CA"}, "kafka.security.ssl_cafile"),
    ({"protocol": "SSL", "sasl_mechanism": None, "sasl_username": None, "sasl_password": None},
     "kafka.security.protocol"),
])
def test_an_opaque_bootstrap_timeout_is_explained_by_the_setting_behind_it(
    secure: SecureBroker, security: dict[str, Any], setting: str
) -> None:
    if security.get("ssl_cafile") == "OTHER_CA":
        security["ssl_cafile"] = str(secure.certificates.other_ca)
    s = _kafka(secure, **security)
    # What kafka-python really raises for all of these (the cause only goes to its log):
    with pytest.raises(errors.KafkaTimeoutError) as info:
        KafkaAdminClient(**{**clients.connection(s, "probe-test"), "bootstrap_timeout_ms": 1500})
    message = explain_client_error(info.value, s)
    assert message is not None and message.startswith(f"invalid setting {setting}:"), message


@pytest.mark.integration
def test_plaintext_client_on_a_sasl_ssl_listener_names_the_protocol(
    secure: SecureBroker,
) -> None:
    s = load_settings(kafka={"bootstrap_servers": secure.sasl_bootstrap}).kafka
    message = explain_client_error(errors.KafkaTimeoutError("Unable to bootstrap"), s)
    assert message is not None and "kafka.security.protocol" in message


@pytest.mark.integration
def test_the_service_runs_end_to_end_over_sasl_ssl(secure: SecureBroker,
                                                     tmp_path: Path) -> None:
    prefix = f"secure-{uuid.uuid4().hex[:8]}"
    env = topic_env(secure.sasl_bootstrap, prefix, **secure.env())
    service = ServiceProcess(env, tmp_path / "serve.log").start()
    try:
        service.wait_ready()
        producer = clients.producer(_kafka(secure), "test-readings")
        try:
            for key, value in messages(Fleet(ENGINES, seed=3), TICKS,
                                       start_ms=1_795_608_000_000, interval_ms=1000):
                producer.send(f"{prefix}.readings", key=key.encode(), value=value)
            producer.flush(timeout=30)
        finally:
            producer.close()

        def done() -> bool:
            status, page = service.get("/engines?limit=100")
            return status == 200 and page["total"] == ENGINES and all(
                e["readings"] == TICKS for e in page["engines"])

        wait_for(done, 60, "every engine's readings over SASL_SSL")
    finally:
        assert service.stop() == 0, service.log_tail()
    # What the service committed over SASL_SSL, read back on the broker's PLAINTEXT listener.
    changelog = read_all(secure.broker.bootstrap, f"{prefix}.changelog")
    assert {r.key.decode() for r in changelog} == {f"engine-{i:04d}" for i in range(ENGINES)}
    assert "SASL_SSL" in service.log_path.read_text()


@pytest.mark.integration
@pytest.mark.parametrize(("change", "setting"), [
    ({"VIBEWATCH_KAFKA__SECURITY__SASL_PASSWORD": "wrong"}, "kafka.security.sasl_password"),
    ({"VIBEWATCH_KAFKA__SECURITY__SSL_CAFILE": "OTHER_CA"}, "kafka.security.ssl_cafile"),
])
def test_a_refused_service_stops_naming_the_setting(
    secure: SecureBroker, change: dict[str, str], setting: str
) -> None:
    prefix = f"refused-{uuid.uuid4().hex[:8]}"
    change = {k: str(secure.certificates.other_ca) if v == "OTHER_CA" else v
              for k, v in change.items()}
    env = {**topic_env(secure.sasl_bootstrap, prefix, **secure.env()), **change}
    proc = subprocess.run([VIBEWATCH, "serve", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"invalid setting {setting}:" in proc.stderr.splitlines()[-1], proc.stderr
    assert "wrong" not in proc.stderr  # secrets never reach the log
