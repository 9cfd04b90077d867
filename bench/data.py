"""Pre-filled readings topics: deterministic simulator readings produced as fast as possible.

kafka-python produces about 12k messages/s from one thread on these machines, so a topic is
filled by ``workers`` processes, each with its own producer and a share of the engines
(engine ``i`` goes to worker ``i % workers``); every engine's readings stay in time order.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from tqdm import tqdm

from service.simulator import CHANNEL, Fleet

START_MS = 1_795_608_000_000  # 2026-11-25T12:00:00Z: fixed event time, reproducible data
INTERVAL_MS = 1000
PARTITIONS = 6  # the service's default readings_partitions


@dataclass(frozen=True)
class Dataset:
    """``ticks`` readings for each of ``engines`` engines, ``batch`` readings per message."""

    topic: str
    engines: int
    ticks: int
    batch: int = 1
    seed: int = 0

    @property
    def readings(self) -> int:
        return self.engines * self.ticks

    @property
    def messages(self) -> int:
        return self.engines * math.ceil(self.ticks / self.batch)

    @property
    def form(self) -> str:
        return "single" if self.batch == 1 else f"batch{self.batch}"


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    """Create ``name`` (unless it exists) and wait until its partitions have leaders."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=30_000)
        admin.wait_for_topics([name], timeout_ms=30_000)
    finally:
        admin.close()


def encoded(ds: Dataset, shard: int = 0, shards: int = 1) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` messages of the engines of ``shard``, tick by tick."""
    fleet = Fleet(ds.engines, seed=ds.seed)
    mine = range(shard, ds.engines, shards)
    keys = [fleet.ids[i].encode() for i in mine]
    pending: list[list[str]] = [[] for _ in mine]
    for t in range(ds.ticks):
        values = fleet.next_values()
        ts = START_MS + t * INTERVAL_MS
        last = t == ds.ticks - 1
        for j, i in enumerate(mine):
            v = round(float(values[i]), 7)
            if ds.batch == 1:
                yield keys[j], (
                    f'{{"engine_id":"{fleet.ids[i]}","ts":{ts},"values":{{"{CHANNEL}":{v}}}}}'
                ).encode()
                continue
            pending[j].append(f'{{"ts":{ts},"values":{{"{CHANNEL}":{v}}}}}')
            if len(pending[j]) == ds.batch or last:
                body = ",".join(pending[j])
                yield keys[j], f'{{"engine_id":"{fleet.ids[i]}","readings":[{body}]}}'.encode()
                pending[j] = []


def producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20, acks=1,
        compression_type="lz4", max_request_size=8 << 20,
    )


def _produce_shard(
    bootstrap: str, ds: Dataset, shard: int, shards: int, sent: Synchronized[int]
) -> None:
    prod = producer(bootstrap)
    n = 0
    for key, value in encoded(ds, shard, shards):
        prod.send(ds.topic, key=key, value=value)
        n += 1
        if n % 2000 == 0:
            with sent.get_lock():
                sent.value += 2000
    prod.flush()
    prod.close()
    with sent.get_lock():
        sent.value += n % 2000


def fill(bootstrap: str, ds: Dataset, *, workers: int = 2, progress: bool = True) -> float:
    """Create ``ds.topic`` and produce the whole dataset; return the seconds it took.

    Raises RuntimeError when the topic does not end up holding exactly ``ds.messages``.
    """
    create_topic(bootstrap, ds.topic)
    started = time.perf_counter()
    ctx = mp.get_context("spawn")
    sent: Synchronized[int] = ctx.Value("q", 0)
    procs = [
        ctx.Process(target=_produce_shard, args=(bootstrap, ds, k, workers, sent), daemon=True)
        for k in range(workers)
    ]
    for p in procs:
        p.start()
    with tqdm(total=ds.messages, desc=f"fill {ds.engines} engines {ds.form}", unit="msg",
              disable=not progress, leave=False) as bar:
        while any(p.is_alive() for p in procs):
            time.sleep(0.2)
            bar.update(sent.value - bar.n)
        bar.update(sent.value - bar.n)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"producer process failed (exit {p.exitcode})")
    took = time.perf_counter() - started
    have = sum(end_offsets(bootstrap, ds.topic).values())
    if have != ds.messages:
        raise RuntimeError(f"{ds.topic} holds {have} messages, expected {ds.messages}")
    return took


def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-offsets")
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends: dict[TopicPartition, int] = consumer.end_offsets(tps)
        return ends
    finally:
        consumer.close()
