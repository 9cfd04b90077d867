"""Failures are classified: fatal ones name what to change, retriable ones are retried."""

from __future__ import annotations

import kafka.errors as ke
import pytest

from service.errors import BrokerUnavailableError, ConfigError
from service.kafka.errors import FailureClass, classify, explain


@pytest.mark.parametrize("exc", [
    BrokerUnavailableError("broker check failed"),
    ke.KafkaTimeoutError("Unable to bootstrap"),
    ke.KafkaConnectionError("refused"),
    ke.UnstableOffsetCommitError(),
    ke.InvalidProducerEpochError(),  # the broker aborted a timed-out transaction
    TimeoutError("restore timed out"),
])
def test_broker_trouble_is_retriable(exc: BaseException) -> None:
    assert classify(exc) is FailureClass.RETRIABLE


@pytest.mark.parametrize(("exc", "names"), [
    (ke.ProducerFencedError(), "kafka.instance_id"),
    (ke.FencedInstanceIdError(), "kafka.instance_id"),
    (ke.TopicAuthorizationFailedError(), "READ on the readings"),
    (ke.SaslAuthenticationFailedError(), "SASL username and password"),
    (ConfigError("kafka.bootstrap_servers", "bad"), "a setting is invalid"),
    (ZeroDivisionError("a bug"), "ZeroDivisionError"),
])
def test_fatal_failures_say_what_to_change(exc: BaseException, names: str) -> None:
    assert classify(exc) is FailureClass.FATAL
    assert names in explain(exc)


def test_a_wrapped_fence_is_still_a_fence() -> None:
    # what kafka-python raises for sends after the producer was fenced
    wrapped = ke.KafkaError("Cannot perform send because at least one previous transactional "
                            "or idempotent request has failed with errors.",
                            ke.ProducerFencedError())
    assert classify(wrapped) is FailureClass.FATAL
    assert "kafka.instance_id" in explain(wrapped)
