"""The vibewatch job on Bytewax: Kafka source, ``stateful_flat_map`` per engine, Kafka sink.

Written from the Bytewax guide ("Recovery", "Kafka", the ``stateful_flat_map`` operator):
the state of a key is a Python object the mapper returns; with recovery on, every key's
state that changed in an epoch is pickled into SQLite recovery partitions at the end of the
epoch (the snapshot interval, ``-s``), together with the Kafka source's offsets, and a
restart resumes from the last snapshot. Bytewax does not use consumer groups or Kafka
transactions: state and input positions are exactly-once, outputs at-least-once (the sink
writes as items arrive, and a resume replays what followed the last snapshot).

Design choices the framework made: the mapper sees one value and one key's state, so every
reading is a batch of one; state lives in the worker's memory between snapshots and is
recovered from local SQLite files, not from Kafka, so a new machine starts empty unless the
recovery directory is copied over; one worker (one process, one thread), as the other peers.

Run by the scenario with ``.venv-peers/bytewax/bin/python -m bench.peers.bytewax_app``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import orjson
from bytewax import operators as op
from bytewax._bytewax import cli_main
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir

from bench.peers.job import BadMessageError, EngineState, PeerJob, Progress
from bench.peers.options import PeerOptions, parse

DEFAULT_SNAPSHOT_S = 10.0  # bytewax's default epoch length
Out = tuple[str, bytes, bytes]  # (topic, key, value)


def build(opts: PeerOptions, job: PeerJob, progress: Progress) -> Dataflow:
    """The dataflow: readings -> per-engine state -> status changes (and probes)."""
    flow = Dataflow("vibewatch-peer")
    source = KafkaSource([opts.bootstrap], [opts.topic], tail=opts.tail)
    messages = op.input("readings", flow, source)
    # The mapper is not given the key, and the events name the engine: carry it along.
    keyed = op.map("key", messages, _keyed)

    def step(state: EngineState | None,
             item: tuple[str, int, bytes]) -> tuple[EngineState | None, Iterable[Out]]:
        engine_id, partition, value = item
        try:
            batch = job.readings(orjson.loads(value))
        except (BadMessageError, orjson.JSONDecodeError):
            progress.bad += 1
            return state, []
        new, events = job.apply(engine_id, state, batch)
        progress.add(len(batch))
        out: list[Out] = [(opts.out_topic, k, v) for k, v in events]
        if opts.probe_topic:
            # The sink picks partitions itself: the source partition travels in the value.
            out.append((opts.probe_topic, b"", f"{partition} {new.last_ts}".encode()))
        return new, out

    results = op.stateful_flat_map("score", keyed, step)
    records = op.map("record", results, _sink_message)
    op.output("anomalies", records, KafkaSink([opts.bootstrap], topic=None))
    return flow


def _keyed(m: Any) -> tuple[str, tuple[str, int, bytes]]:
    engine_id = m.key.decode()
    return engine_id, (engine_id, m.partition, m.value)


def _sink_message(item: tuple[str, Out]) -> KafkaSinkMessage[bytes, bytes]:
    engine_id, (topic, key, value) = item
    return KafkaSinkMessage(key or engine_id.encode(), value, topic=topic)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv, "bytewax_app")
    progress = Progress(opts.expect)
    job = PeerJob(opts.artifact)
    db_dir = opts.state_dir
    if not any(db_dir.glob("part-*.sqlite3")):
        db_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(db_dir, 1)
    flow = build(opts, job, progress)
    progress.mark("BOOT")
    snapshot = timedelta(seconds=opts.commit_interval_s or DEFAULT_SNAPSHOT_S)
    kwargs: dict[str, Any] = {"epoch_interval": snapshot,
                              "recovery_config": RecoveryConfig(db_dir)}
    cli_main(flow, workers_per_process=1, **kwargs)  # until the topic's end (or SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
