"""The vibewatch job on Faust (faust-streaming): an agent over the readings and a Table.

Written from the Faust user guide ("Tables and Windowing", "The App" settings): a ``Table``
is a dict per partition of the source topic, kept in the store (``rocksdb://``, backed by
rocksdict, the guide's choice for production; ``memory://`` is for development) and in a
compacted changelog topic that the worker replays on assignment; with
``processing_guarantee="exactly_once"`` the changelog records, the outputs and the offsets of a
source partition go out in that partition's Kafka transaction, committed every
``broker_commit_interval`` (2.8 s by default).

Design choices the framework made: an agent handles one event at a time (``stream.take``
batches events, but a table is still read and written key by key), so every reading is a
batch of one; the table's changelog partitions must equal the source topic's (6); each
``table[key] = value`` sends one changelog record, and the default producer batch (16 KB)
had to grow to 1 MiB for 3.7 KB records.

Run by the scenario with ``.venv-peers/faust/bin/python -m bench.peers.faust_app``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import faust

from bench.peers.job import BadMessageError, PeerJob, Progress
from bench.peers.options import parse

PARTITIONS = 6
TABLE = "engines"


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv, "faust_app")
    progress = Progress(opts.expect)
    job = PeerJob(opts.artifact)
    # The one setting changed from Faust's defaults: a producer batch of 16 KB holds four
    # 3.7 KB engine states, and the worker then logs "producer buffer full" and waits on
    # every few table writes (100 -> 400 readings/s in a same-sitting A/B).
    conf: dict[str, Any] = {"producer_max_batch_size": 1 << 20}
    if opts.commit_interval_s:
        conf["broker_commit_interval"] = opts.commit_interval_s
    app = faust.App(
        opts.group,
        broker=f"kafka://{opts.bootstrap}",
        store="rocksdb://",
        processing_guarantee="exactly_once",
        topic_partitions=PARTITIONS,
        datadir=str(opts.state_dir),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        **conf,
    )
    readings = app.topic(opts.topic, key_type=bytes, key_serializer="raw",
                         value_serializer="json", partitions=PARTITIONS)
    anomalies = app.topic(opts.out_topic, key_type=bytes, key_serializer="raw",
                          value_type=bytes, value_serializer="raw")
    # The table's keys and values go through the app's serializers: raw bytes both.
    engines = app.Table(TABLE, default=None, partitions=PARTITIONS, key_type=bytes,
                        value_type=bytes, options={"driver": "rocksdict"})

    async def score(stream: AsyncIterator[tuple[bytes, Any]]) -> None:
        async for key, value in stream.items():  # type: ignore[attr-defined]
            try:
                batch = job.readings(value)
            except BadMessageError:
                progress.bad += 1
                continue
            engine, events = job.apply(key.decode(), job.decode_state(engines.get(key)), batch)
            engines[key] = engine.to_bytes()
            progress.add(len(batch))
            for k, v in events:
                await anomalies.send(key=k, value=v)

    app.agent(readings, name="score")(score)
    progress.mark("BOOT")
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()  # until SIGTERM
    return 0


if __name__ == "__main__":
    sys.exit(main())
