"""Publishing readings from the command-line tools (``simulate``, ``replay``).

The tools take the same settings as the service (``VIBEWATCH_KAFKA__*``: brokers, readings
topic, compression, and whatever security settings ``service.kafka.clients`` applies),
with ``--bootstrap`` and ``--topic`` as overrides, and build their producer through
:func:`service.kafka.clients.producer`.
"""

from __future__ import annotations

import argparse
import logging
from types import TracebackType

from kafka.errors import KafkaError

from service.config import KafkaSettings, Settings
from service.errors import BrokerUnavailableError
from service.kafka import clients


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: "
                        "kafka.bootstrap_servers, VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS, "
                        "127.0.0.1:9092)")
    parser.add_argument("--topic", help="readings topic (default: kafka.readings_topic, "
                        "VIBEWATCH_KAFKA__READINGS_TOPIC, vibewatch.readings)")


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    """The settings' Kafka section with ``--bootstrap`` and ``--topic`` applied."""
    settings: Settings = args._settings
    update = {k: v for k, v in (("bootstrap_servers", args.bootstrap),
                                ("readings_topic", args.topic)) if v}
    return settings.kafka.model_copy(update=update)


class Publisher:
    """A producer for one tool run; a broker problem becomes ``BrokerUnavailableError``
    naming the brokers and the setting, instead of a traceback."""

    def __init__(self, s: KafkaSettings, role: str) -> None:
        self.settings = s
        self.sent = 0
        # kafka-python logs every failed connection attempt; a tool says once what failed.
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            logging.getLogger("kafka").setLevel(logging.CRITICAL)
        try:
            self._producer = clients.producer(
                s, role, linger_ms=10, batch_size=512 * 1024,
                compression_type=None if s.compression == "none" else s.compression,
                max_block_ms=s.timeout_ms,  # bootstrap_timeout_ms: clients.connection
            )
        except KafkaError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> BrokerUnavailableError:
        return BrokerUnavailableError(
            f"cannot reach Kafka at {self.settings.bootstrap_servers} "
            f"(kafka.bootstrap_servers; VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS or --bootstrap): "
            f"{exc}"
        )

    def send(self, key: str, value: bytes) -> None:
        try:
            self._producer.send(self.settings.readings_topic, key=key.encode(), value=value)
        except KafkaError as exc:
            raise self._unreachable(exc) from None
        self.sent += 1

    def flush(self) -> None:
        """Deliver what was sent (it is then in the topic, ahead of anything sent later by
        any producer); raises if it cannot be delivered."""
        try:
            self._producer.flush(timeout=self.settings.timeout_ms / 1000)
        except KafkaError as exc:
            raise self._unreachable(exc) from None

    def close(self) -> None:
        """Deliver what was sent, then close; raises if it cannot be delivered."""
        try:
            self.flush()
        finally:
            self._producer.close(timeout=5)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
