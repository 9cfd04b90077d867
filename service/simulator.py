"""``vibewatch simulate``: synthetic vibration readings for a fleet of engines.

Healthy engines look like healthy IMS bearings (the default model's training data): a level
between 0.045 and 0.13 g per engine, a slow AR(1) drift of about 3 % of the level and about
1 % white noise per reading. A ``wear`` fault adds a quadratic rise of the level and of the
noise after an onset reading, as a degrading bearing does; a ``spike`` fault is a sudden
step to several times the level.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import UsageError
from service.publisher import Publisher, add_kafka_options, kafka_settings

log = logging.getLogger(__name__)

CHANNEL = "vibration"
_FAULT = re.compile(r"^(?P<engine>[A-Za-z0-9._:-]{1,64}):(?P<kind>wear|spike)(@(?P<at>\d+))?$")


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault injected into one engine from reading ``onset`` on."""

    engine_id: str
    kind: str  # "wear" or "spike"
    onset: int
    #: readings the fault lasts before the engine is repaired (None: to the end)
    duration: int | None = None

    @classmethod
    def parse(cls, text: str, default_onset: int) -> Fault:
        """Parse ``ENGINE:KIND[@READING]``, e.g. ``engine-0003:wear@500``."""
        m = _FAULT.match(text)
        if m is None:
            raise ValueError(f"{text!r} is not ENGINE:KIND[@READING] with KIND wear or spike, "
                             "e.g. engine-0003:wear@300")
        at = m.group("at")
        return cls(m.group("engine"), m.group("kind"), int(at) if at else default_onset)


class Fleet:
    """Deterministic (seeded) generator of one reading per engine per tick."""

    def __init__(
        self, engines: int, *, seed: int = 0, faults: Sequence[Fault] = (), prefix: str = "engine"
    ) -> None:
        if engines < 1:
            raise ValueError("engines must be at least 1")
        self.ids = [f"{prefix}-{i:04d}" for i in range(engines)]
        self.rng = np.random.default_rng(seed)
        self.base = self.rng.uniform(0.045, 0.13, engines)
        self.drift = np.zeros(engines)
        self.tick = 0
        index = {e: i for i, e in enumerate(self.ids)}
        unknown = [f.engine_id for f in faults if f.engine_id not in index]
        if unknown:
            raise ValueError(f"unknown engine(s) {', '.join(unknown)}: the simulated engines "
                             f"are {self.ids[0]} to {self.ids[-1]}")
        self.faults = [(index[f.engine_id], f) for f in faults]

    def next_values(self) -> np.ndarray:
        """Advance one tick; returns one level (g) per engine."""
        n = len(self.ids)
        self.drift = 0.99 * self.drift + self.rng.normal(0, 0.03 * np.sqrt(1 - 0.99**2), n)
        level = self.base * (1 + self.drift)
        noise = self.rng.normal(0, 0.01, n)
        for i, f in self.faults:
            k = self.tick - f.onset
            if k < 0 or (f.duration is not None and k >= f.duration):
                continue
            if f.kind == "wear":
                rise = (k / 200.0) ** 2
                level[i] *= 1 + rise
                noise[i] *= 1 + 3 * rise
            else:
                level[i] *= 4.0
        self.tick += 1
        out: np.ndarray = np.maximum(level * (1 + noise), 1e-4)
        return out


def messages(
    fleet: Fleet, ticks: int, *, start_ms: int, interval_ms: int, batch: int = 1
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(engine_id, json bytes)`` messages; ``batch`` > 1 uses the batch form."""
    pending: list[list[dict[str, object]]] = [[] for _ in fleet.ids]
    for t in range(ticks):
        values = fleet.next_values()
        ts = start_ms + t * interval_ms
        for i, engine_id in enumerate(fleet.ids):
            reading = {"ts": ts, "values": {CHANNEL: round(float(values[i]), 7)}}
            if batch == 1:
                yield engine_id, json.dumps({"engine_id": engine_id, **reading}).encode()
                continue
            pending[i].append(reading)
            if len(pending[i]) == batch or t == ticks - 1:
                doc = {"engine_id": engine_id, "readings": pending[i]}
                yield engine_id, json.dumps(doc).encode()
                pending[i] = []


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    add_kafka_options(parser)
    parser.add_argument("--engines", type=int, default=20, help="number of engines")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="readings per second over the fleet (0 = as fast as possible)")
    parser.add_argument("--ticks", type=int, default=0,
                        help="readings per engine, then stop (0 = run until Ctrl-C)")
    parser.add_argument("--batch", type=int, default=1, help="readings per message")
    parser.add_argument("--interval-ms", type=int, default=0,
                        help="event-time step between an engine's readings (0 = engines / "
                             "rate, i.e. real time)")
    parser.add_argument("--start-ms", type=int, default=0,
                        help="event time of the first tick, epoch ms (0 = now)")
    parser.add_argument("--fault", action="append", default=[], metavar="ENGINE:KIND[@N]",
                        help="inject a fault, e.g. engine-0003:wear@300 (repeatable; KIND is "
                             "wear or spike; N, the reading it starts at, defaults to 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def run(args: argparse.Namespace) -> int:
    if args.engines < 1 or args.batch < 1 or args.rate < 0 or args.ticks < 0:
        raise UsageError("--engines and --batch must be at least 1, --rate and --ticks at "
                         "least 0")
    default_onset = 300
    try:
        faults = [Fault.parse(f, default_onset) for f in args.fault]
        fleet = Fleet(args.engines, seed=args.seed, faults=faults)
    except ValueError as exc:
        raise UsageError(f"--fault: {exc}") from None
    interval_ms = args.interval_ms or (
        max(1, round(1000 * args.engines / args.rate)) if args.rate else 1000
    )
    start_ms = args.start_ms or int(time.time() * 1000)
    kafka = kafka_settings(args)
    ticks = args.ticks or 2**62

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Stop cleanly (flush what was sent) on Ctrl-C and on SIGTERM from a supervisor, even
    # when started from a shell that left SIGINT ignored.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("simulating %d engines at %g readings/s to %s on %s", args.engines, args.rate,
             kafka.readings_topic, kafka.bootstrap_servers)
    began = time.monotonic()
    with Publisher(kafka, "simulate") as out:
        try:
            for key, value in messages(fleet, ticks, start_ms=start_ms,
                                       interval_ms=interval_ms, batch=args.batch):
                out.send(key, value)
                if args.rate:
                    ahead = out.sent * args.batch / args.rate - (time.monotonic() - began)
                    if ahead > 0.005:
                        time.sleep(ahead)
                if out.sent % 10_000 == 0:
                    log.info("sent %d messages", out.sent)
        except KeyboardInterrupt:
            pass
    print(f"sent {out.sent} messages ({out.sent * args.batch} readings max) to "
          f"{kafka.readings_topic}")
    return 0
