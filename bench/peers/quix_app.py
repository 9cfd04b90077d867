"""The vibewatch job on Quix Streams: a StreamingDataFrame with one stateful ``apply``.

Written from the Quix Streams docs ("Stateful Applications", "Processing Guarantees"):
the state of a message's key is a ``State`` handed to a ``stateful=True`` callback, kept in
RocksDB per partition and backed by a compacted changelog topic that the Application creates
and replays on assignment; ``processing_guarantee="exactly-once"`` commits the outputs, the
changelog and the consumed offsets in one Kafka transaction per checkpoint
(``commit_interval``, 5 s by default).

Design choices the framework made: the callback sees one message and one key's state, so
each reading is a batch of one for the kernel and the scoring; values are JSON-decoded by the
topic's deserializer; state values go through ``set_bytes`` (the default JSON serialisation
cannot hold NumPy arrays).

Run by the scenario with ``.venv-peers/quix/bin/python -m bench.peers.quix_app``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from quixstreams import Application, State

from bench.peers.job import BadMessageError, PeerJob, Progress
from bench.peers.options import parse

STATE_KEY = "engine"


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv, "quix_app")
    progress = Progress(opts.expect)
    job = PeerJob(opts.artifact)
    progress.mark("BOOT")
    app = Application(
        broker_address=opts.bootstrap,
        consumer_group=opts.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=opts.commit_interval_s if opts.commit_interval_s else 5.0,
        state_dir=str(opts.state_dir),
        loglevel="WARNING",
    )
    readings = app.topic(opts.topic, key_deserializer="str", value_deserializer="json")
    anomalies = app.topic(opts.out_topic, key_serializer="str", value_serializer="bytes")

    def step(value: Any, key: str, timestamp: int, headers: Any, state: State) -> list[bytes]:
        try:
            batch = job.readings(value)
        except BadMessageError:
            progress.bad += 1
            return []
        engine, events = job.apply(key, job.decode_state(state.get_bytes(STATE_KEY)), batch)
        state.set_bytes(STATE_KEY, engine.to_bytes())
        progress.add(len(batch))
        return [v for _, v in events]

    sdf = app.dataframe(readings)
    sdf = sdf.apply(step, stateful=True, expand=True, metadata=True)
    sdf.to_topic(anomalies)
    app.run()  # until SIGTERM; the last checkpoint is committed on the way out
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
