"""The Kafka clients of one session: created together when it starts, closed together."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaConsumer

from service.kafka.batches import BatchPoller
from service.kafka.committer import Committer
from service.kafka.restore import Restorer
from service.kafka.topics import Topics


@dataclass
class Session:
    """What :class:`service.kafka.pipeline.Pipeline` builds per session (see its docs)."""

    consumer: KafkaConsumer  #: the group consumer of the readings topic
    poller: BatchPoller  #: batches from ``consumer``
    committer: Committer  #: the producer and the transactions
    restorer: Restorer  #: restores of assigned partitions (its own changelog consumer)
    topics: Topics  #: partition count and size limits
