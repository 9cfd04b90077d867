"""Changelog restore time: how long a newly assigned instance takes to load its engines.

Writes ``engines`` full state records (window 256, LSTM(64), the default scoring) to a
compacted changelog topic with 6 partitions, then times ``service.kafka.restore.restore_partitions``
for all six partitions into an empty store, as an instance does after a restart.

    .venv/bin/python bench/restore.py --engines 10000 100000 [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.broker import running_broker
from service.config import DEFAULT_ARTIFACT, ScoringSettings, load_settings
from service.kafka.restore import restore_partitions
from service.model import load_streaming_model
from service.scoring import EngineScoring
from service.state import EngineStore

PARTITIONS = 6


def _store(model_state: int, score_state: int) -> EngineStore:
    return EngineStore(window=256, channels=1, model_state_size=model_state,
                       score_state_size=score_state)


def measure(bootstrap: str, engines: int) -> dict[str, float]:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    model = load_streaming_model(DEFAULT_ARTIFACT)
    scoring = EngineScoring(ScoringSettings(), 1)
    src = _store(model.state_size, scoring.state_size)
    ids = [f"engine-{i:06d}" for i in range(engines)]
    slots, _ = src.slots_for(ids, [i % PARTITIONS for i in range(engines)],
                             scoring.init_state(1)[0])
    rng = np.random.default_rng(0)
    src.model_state[slots] = rng.normal(size=(engines, model.state_size))
    src.ring[slots] = rng.uniform(0.04, 0.13, size=(engines, 256, 1))
    src.count[slots] = 10_000
    topic = f"bench-restore-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1,
                                  topic_configs={"cleanup.policy": "compact"})])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20,
                             compression_type="lz4", max_request_size=8 << 20)
    written = 0
    for engine_id, slot in zip(ids, slots, strict=True):
        value = src.encode_row(int(slot))
        written += len(value)
        producer.send(topic, key=engine_id.encode(), value=value,
                      partition=int(src.partition[slot]))
    producer.flush()
    producer.close()

    settings = load_settings(kafka={"bootstrap_servers": bootstrap, "changelog_topic": topic,
                                    "instance_id": "bench"})
    dst = _store(model.state_size, scoring.state_size)
    started = time.perf_counter()
    n = restore_partitions(settings.kafka, list(range(PARTITIONS)), dst,
                           scoring.init_state(1)[0])
    took = time.perf_counter() - started
    assert n == engines, (n, engines)
    sample = int(src.index[ids[engines // 2]])
    assert src.encode_row(sample) == dst.encode_row(dst.index[ids[engines // 2]])
    return {"engines": engines, "restore_s": round(took, 3),
            "engines_per_s": round(engines / took), "record_bytes": written // engines,
            "changelog_mb": round(written / 1e6, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    args = parser.parse_args()
    with running_broker(args.bootstrap) as bootstrap:
        rows = [measure(bootstrap, n) for n in args.engines]
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
