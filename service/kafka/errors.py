"""The three classes of failure and where each is handled.

* **One message's fault** (:class:`~service.errors.InvalidMessageError` or any exception
  raised while decoding or processing that message, ``RecursionError`` included): the
  message goes to the dead-letter topic with its reason and the stream moves on. Handled in
  :mod:`service.kafka.pipeline`; never ends the session.
* **Retriable** (the broker is away, a request timed out, a rebalance did not finish): the
  session ends, readiness turns false and a new session starts after a jittered backoff,
  for as long as it takes.
* **Fatal** (fenced by another instance with the same id, not authorised, misconfigured):
  retrying the same way cannot help. The session ends like a retriable one, but after
  ``kafka.max_fatal_restarts`` fatal failures in a row (no commit succeeded in between) the
  process stops with a message saying what to change and exits non-zero, for the
  supervisor to handle. Unexpected exceptions (bugs) count as fatal too, so a crash loop
  is never silent and endless.
"""

from __future__ import annotations

import enum
import ssl

import kafka.errors as ke

from service.errors import BrokerUnavailableError, ConfigError


class FailureClass(enum.Enum):
    RETRIABLE = "retriable"
    FATAL = "fatal"


#: Fatal Kafka errors and what the operator should change.
_FATAL: tuple[tuple[type[BaseException], str], ...] = (
    (ke.ProducerFencedError,
     "another instance uses the same transactional id: give every instance its own "
     "kafka.instance_id"),
    (ke.FencedInstanceIdError,
     "another instance uses the same static group member id: give every instance its own "
     "kafka.instance_id"),
    (ke.TransactionalIdAuthorizationFailedError,
     "not authorised to use the transactional id: grant the service's principal WRITE and "
     "DESCRIBE on it, or set kafka.exactly_once=false"),
    (ke.GroupAuthorizationFailedError,
     "not authorised for the consumer group kafka.group_id: grant READ on it"),
    (ke.TopicAuthorizationFailedError,
     "not authorised for a topic: grant the service's principal READ on the readings and "
     "changelog topics and WRITE on the changelog, anomalies and dead-letter topics"),
    (ke.AuthorizationError, "not authorised: check the principal's ACLs"),
    (ke.SaslAuthenticationFailedError,
     "SASL authentication failed: check the client's SASL username and password"),
    (ke.UnsupportedSaslMechanismError,
     "the broker does not offer the configured SASL mechanism"),
    (ke.KafkaConfigurationError, "the Kafka client configuration is invalid"),
    (ConfigError, "a setting is invalid"),
    (ssl.SSLError, "TLS failed: check the CA, certificate and key settings"),
)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: kafka-python reports a fenced producer's later sends as a
    plain KafkaError carrying the original error in its arguments."""
    out: list[BaseException] = []
    todo = [exc]
    while todo and len(out) < 10:
        e = todo.pop(0)
        if e in out:
            continue
        out.append(e)
        todo += [a for a in e.args if isinstance(a, BaseException)]
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return out


def classify(exc: BaseException) -> FailureClass:
    """Whether a failure that ended a session is worth retrying as it is.

    Kafka's retriable errors, timeouts, connection problems and our own
    :class:`BrokerUnavailableError` are retriable; the errors of :data:`_FATAL` and anything
    unexpected (a bug) are fatal.
    """
    if any(isinstance(e, kind) for e in _causes(exc) for kind, _ in _FATAL):
        return FailureClass.FATAL
    if isinstance(exc, BrokerUnavailableError | TimeoutError | ConnectionError):
        return FailureClass.RETRIABLE
    if isinstance(exc, ke.KafkaError):
        return FailureClass.RETRIABLE if exc.retriable or _transient(exc) else FailureClass.FATAL
    return FailureClass.FATAL


def _transient(exc: ke.KafkaError) -> bool:
    """Kafka errors that are not flagged retriable but clear up with a new session: a
    transaction the broker aborted (timed out, or an epoch bumped after a broker restart),
    a commit that failed because the group rebalanced, a record that could not be sent."""
    return isinstance(exc, ke.InvalidProducerEpochError | ke.InvalidTxnStateError
                      | ke.CommitFailedError | ke.IllegalStateError
                      | ke.KafkaConnectionError)


def explain(exc: BaseException) -> str:
    """One line for the log: what failed and, for fatal errors, what to change."""
    for kind, advice in _FATAL:
        for e in _causes(exc):
            if isinstance(e, kind):
                return f"{advice} ({type(e).__name__}: {e})"
    return f"{type(exc).__name__}: {exc}"
