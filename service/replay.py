"""``vibewatch replay``: publish a recorded dataset to the readings topic, as sensors would.

Every series of the dataset (an IMS bearing channel, a C-MAPSS engine, a NAB file, an engine
of a generic CSV) becomes one engine. The datasets keep no usable clock of their own, so
reading i of every engine gets event time ``start + i * interval``; ``--speed`` compresses
wall-clock time (``--speed 3600``: an hour of data per second; 0: as fast as possible), so an
operator can watch a known failure unfold on the dashboards in minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

log = logging.getLogger(__name__)

#: Sampling interval of the public datasets, seconds (IMS: 10-minute snapshots; NAB: mostly
#: 5 minutes; C-MAPSS: one flight cycle, shown as an hour).
DEFAULT_INTERVAL_S = {"ims": 600.0, "nab": 300.0, "cmapss": 3600.0, "csv": 60.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("data", help="dataset: ims:PATH, cmapss:PATH, nab:PATH, csv:PATH or a "
                        "path whose format is detected")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--topic", default="vibewatch.readings", help="readings topic")
    parser.add_argument("--speed", type=float, default=3600.0,
                        help="data seconds per wall-clock second (default 3600; 0 = no pacing)")
    parser.add_argument("--interval-s", type=float, default=0.0,
                        help="seconds between readings (default: the dataset's own)")
    parser.add_argument("--start-ms", type=int, default=0,
                        help="event time of the first reading (default: now)")
    parser.add_argument("--rename", action="append", default=[], metavar="FROM=TO",
                        help="rename a channel, e.g. value=vibration to feed NAB data to the "
                        "default model (repeatable)")
    parser.add_argument("--prefix", default="", help="prefix for the engine ids")
    parser.add_argument("--batch", type=int, default=1, help="readings per message (default 1)")


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer
    from tqdm import tqdm

    from models.data import load, parse_spec

    rename = dict(item.split("=", 1) for item in args.rename)
    ds = load(args.data, rename=rename or None)
    kind, _ = parse_spec(args.data)
    interval_s = args.interval_s or DEFAULT_INTERVAL_S.get(kind, 60.0)
    if args.batch < 1 or args.speed < 0 or interval_s <= 0:
        raise SystemExit("replay: --batch >= 1, --speed >= 0 and --interval-s > 0 required")
    start_ms = args.start_ms or int(time.time() * 1000)
    steps = max(len(s) for s in ds.series)
    producer = KafkaProducer(bootstrap_servers=args.bootstrap.split(","), linger_ms=10,
                             batch_size=512 * 1024, compression_type="lz4")
    began = time.monotonic()
    sent = 0
    try:
        for start in tqdm(range(0, steps, args.batch), desc=f"replay {ds.name}", unit="step"):
            for series in ds.series:
                rows = range(start, min(start + args.batch, len(series)))
                if not rows:
                    continue
                engine_id = (args.prefix + series.engine_id)[:64]
                readings = [
                    {"ts": start_ms + round(i * interval_s * 1000),
                     "values": {c: float(series.values[i, j])
                                for j, c in enumerate(series.channels)}}
                    for i in rows
                ]
                doc = ({"engine_id": engine_id, **readings[0]} if args.batch == 1
                       else {"engine_id": engine_id, "readings": readings})
                producer.send(args.topic, key=engine_id.encode(), value=json.dumps(doc).encode())
                sent += 1
            if args.speed:
                ahead = (start + args.batch) * interval_s / args.speed - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush()
        producer.close()
    print(f"replayed {len(ds.series)} engines of {ds.name}: {sent} messages to {args.topic}")
    return 0
