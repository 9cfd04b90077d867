"""``vibewatch replay``: publish a recorded dataset to the readings topic, as sensors would.

Every series of the dataset (an IMS bearing channel, a C-MAPSS engine, a NAB file, an engine
of a generic CSV) becomes one engine. ``--speed`` compresses wall-clock time (``--speed
3600``: an hour of data per second; 0: as fast as possible), so an operator can watch a
known failure unfold on the dashboards in minutes.

Event times (``--time-base``):
- ``end-now`` (default): reading i is dated ``end - (steps - 1 - i) * interval``, where
  ``end`` is the wall-clock time the last step will be sent: the replay ends at the present,
  no reading is dated after it was sent, and the engines go stale like any that stops.
- ``data``: the dataset's own clock (IMS snapshot times, NAB timestamps; taken as UTC), so
  the dates are the ones in the papers.
- ``--start-ms T``: reading i at ``T + i * interval``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.errors import UsageError
from service.publisher import Publisher, add_kafka_options, kafka_settings

if TYPE_CHECKING:
    from models.data import Dataset

log = logging.getLogger(__name__)

#: Sampling interval of the public datasets, seconds (IMS: 10-minute snapshots; NAB: mostly
#: 5 minutes; C-MAPSS: one flight cycle, shown as an hour).
DEFAULT_INTERVAL_S = {"ims": 600.0, "nab": 300.0, "cmapss": 3600.0, "csv": 60.0}
TIME_BASES = ("end-now", "data")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("data", help="dataset: ims:PATH, cmapss:PATH, nab:PATH, csv:PATH or a "
                        "path whose format is detected")
    add_kafka_options(parser)
    parser.add_argument("--speed", type=float, default=3600.0,
                        help="data seconds per wall-clock second (0 = no pacing)")
    parser.add_argument("--time-base", choices=TIME_BASES, default="end-now",
                        help="event times: end-now (the replay ends at the present) or data "
                        "(the dataset's own clock, IMS and NAB)")
    parser.add_argument("--interval-s", type=float, default=0.0,
                        help="seconds between readings (0 = the dataset's own: " + ", ".join(
                            f"{k} {v:g}" for k, v in DEFAULT_INTERVAL_S.items()) + ")")
    parser.add_argument("--start-ms", type=int, default=0,
                        help="event time of the first reading, epoch ms (0 = the time base)")
    parser.add_argument("--rename", action="append", default=[], metavar="FROM=TO",
                        help="rename a channel, e.g. value=vibration to feed NAB data to the "
                        "default model (repeatable)")
    parser.add_argument("--prefix", default="", help="prefix for the engine ids")
    parser.add_argument("--batch", type=int, default=1, help="readings per message")


def _data_times(ds: Dataset, kind: str) -> list[np.ndarray]:
    """Event times (epoch ms) of each series from its file's first column (IMS, NAB)."""
    if kind not in ("ims", "nab"):
        raise UsageError(f"--time-base data: {kind} data has no clock (C-MAPSS counts cycles);"
                         " use --time-base end-now or --start-ms")
    by_name = {f.name: f for f in ds.files}
    cache: dict[str, np.ndarray] = {}
    out = []
    for series in ds.series:
        if series.source not in cache:
            cache[series.source] = _first_column_ms(by_name[series.source])
        out.append(cache[series.source][: len(series)])
    return out


def _first_column_ms(path: Path) -> np.ndarray:
    with path.open(newline="") as f:
        rows = csv.reader(f)
        next(rows, None)
        try:
            times = [datetime.fromisoformat(r[0]).replace(tzinfo=UTC) for r in rows if r]
        except ValueError as exc:
            raise UsageError(f"{path}: the first column is not a time ({exc})") from None
    return np.array([round(t.timestamp() * 1000) for t in times], dtype=np.int64)


def event_times(
    lengths: Sequence[int], interval_s: float, speed: float, start_ms: int, now_ms: int,
    batch: int = 1,
) -> list[np.ndarray]:
    """Event times of every series for a start (``start_ms`` > 0) or the end-now time base.

    End-now: the last message goes out ``last * interval / speed`` seconds after ``now``
    (``last``: the first step of the last batch) and its last reading is dated then; each
    earlier step one interval before the next.
    """
    steps = max(lengths, default=0)
    step_ms = interval_s * 1000
    if not start_ms:
        last = (steps - 1) // batch * batch
        end_ms = now_ms + (int(last * step_ms / speed) if speed else 0)  # never later
        start_ms = end_ms - round((steps - 1) * step_ms)
    return [start_ms + np.round(np.arange(n) * step_ms).astype(np.int64) for n in lengths]


def _rename(items: list[str]) -> dict[str, str]:
    bad = [item for item in items if "=" not in item]
    if bad:
        raise UsageError(f"--rename takes FROM=TO, got {bad[0]!r}")
    return dict(item.split("=", 1) for item in items)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from models.data import FORMATS, load, parse_spec

    prefix, sep, rest = args.data.partition(":")
    path = Path(rest if sep and prefix in FORMATS else args.data)
    if not path.exists():
        raise UsageError(f"{args.data}: no such file or directory (give FORMAT:PATH with "
                         f"FORMAT one of {', '.join(FORMATS)}, or a path)")
    if args.batch < 1 or args.speed < 0 or args.interval_s < 0:
        raise UsageError("--batch must be at least 1, --speed and --interval-s at least 0")
    rename = _rename(args.rename)
    ds = load(args.data, rename=rename or None)
    kind, _ = parse_spec(args.data)
    interval_s = args.interval_s or DEFAULT_INTERVAL_S.get(kind, 60.0)
    lengths = [len(s) for s in ds.series]
    if args.time_base == "data" and not args.start_ms:
        times = _data_times(ds, kind)
    else:
        times = event_times(lengths, interval_s, args.speed, args.start_ms,
                            int(time.time() * 1000), args.batch)
    steps = max(lengths, default=0)
    kafka = kafka_settings(args)
    first, last = min(int(t[0]) for t in times), max(int(t[-1]) for t in times)
    log.info("replaying %d engines of %s to %s on %s: readings dated %s to %s", len(ds.series),
             ds.name, kafka.readings_topic, kafka.bootstrap_servers, _iso(first), _iso(last))
    began = time.monotonic()
    with Publisher(kafka, "replay") as out:
        try:
            for start in tqdm(range(0, steps, args.batch), desc=f"replay {ds.name}",
                              unit="step"):
                for series, ts in zip(ds.series, times, strict=True):
                    rows = range(start, min(start + args.batch, len(series)))
                    if not rows:
                        continue
                    engine_id = (args.prefix + series.engine_id)[:64]
                    readings = [
                        {"ts": int(ts[i]),
                         "values": {c: float(series.values[i, j])
                                    for j, c in enumerate(series.channels)}}
                        for i in rows
                    ]
                    doc = ({"engine_id": engine_id, **readings[0]} if args.batch == 1
                           else {"engine_id": engine_id, "readings": readings})
                    out.send(engine_id, json.dumps(doc).encode())
                if args.speed:
                    ahead = (start + args.batch) * interval_s / args.speed - (
                        time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
        except KeyboardInterrupt:
            pass
    print(f"replayed {len(ds.series)} engines of {ds.name}: {out.sent} messages to "
          f"{kafka.readings_topic}, readings dated {_iso(first)} to {_iso(last)}")
    return 0


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="seconds")
