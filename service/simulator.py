"""``vibewatch simulate``: synthetic vibration readings for a fleet of engines.

Healthy engines look like healthy IMS bearings (the default model's training data): a level
between 0.045 and 0.13 g per engine, a slow AR(1) drift of about 3 % of the level and about
1 % white noise per reading. Faults start at an onset reading and last to the end or, with
a duration, until the engine is repaired:

- ``wear``: a quadratic rise of the level and of the noise, as a degrading bearing shows;
- ``step``: a sudden, lasting step to four times the level (a loosened mount, a broken
  blade); ``spike`` is its former name and still accepted;
- ``intermittent``: bursts of impacts at random times, as from a cracked race or a part
  that comes loose now and then: a burst starts at a reading with probability 1/80 (every
  20 s on average at four readings a second), lasts 1 to 4 readings and raises the level
  3 to 6 times; between bursts the engine reads as healthy.

Every reading-count above is in readings, not seconds: at another reading interval the
same fault develops faster or slower in event time.
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
KINDS = ("wear", "step", "intermittent")
#: former names of fault kinds, still accepted
ALIASES = {"spike": "step"}
_FAULT = re.compile(
    r"^(?P<engine>[A-Za-z0-9._:-]{1,64}):(?P<kind>[a-z]+)(@(?P<at>\d+)(\+(?P<for>\d+))?)?$"
)
#: intermittent faults: a burst starts at a reading with probability 1/BURST_EVERY
BURST_EVERY = 80
BURST_READINGS = (1, 4)
BURST_GAIN = (3.0, 6.0)
STEP_GAIN = 4.0


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault injected into one engine from reading ``onset`` on."""

    engine_id: str
    kind: str  # one of KINDS (or a former name, ALIASES)
    onset: int
    #: readings the fault lasts before the engine is repaired (None: to the end)
    duration: int | None = None

    @classmethod
    def parse(cls, text: str, default_onset: int) -> Fault:
        """Parse ``ENGINE:KIND[@READING[+READINGS]]``, e.g. ``engine-0003:wear@500`` or
        ``engine-0004:step@300+600`` (repaired 600 readings after its onset). Raises
        ValueError naming what is wrong."""
        m = _FAULT.match(text)
        if m is None:
            raise ValueError(f"{text!r} is not ENGINE:KIND[@READING[+READINGS]], e.g. "
                             "engine-0003:wear@300 or engine-0004:step@300+600")
        kind = m.group("kind")
        if kind not in KINDS and kind not in ALIASES:
            raise ValueError(f"unknown fault kind {kind!r} in {text!r}: choose from "
                             f"{', '.join(KINDS)}")
        at, lasts = m.group("at"), m.group("for")
        if lasts is not None and int(lasts) < 1:
            raise ValueError(f"{text!r}: a fault lasts at least 1 reading")
        return cls(m.group("engine"), kind, int(at) if at else default_onset,
                   None if lasts is None else int(lasts))

    def active(self, tick: int) -> bool:
        """Whether the fault acts on reading ``tick`` (onset reached, not yet repaired)."""
        k = tick - self.onset
        return k >= 0 and (self.duration is None or k < self.duration)


@dataclass(slots=True)
class _Bursts:
    """The bursts of one intermittent fault (mutable: the generator's own state)."""

    rng: np.random.Generator
    left: int = 0  #: readings left in the current burst
    gain: float = 1.0

    def next_gain(self) -> float:
        """The level factor at this reading: the burst's gain, 1.0 between bursts."""
        if self.left == 0 and self.rng.random() < 1.0 / BURST_EVERY:
            self.left = int(self.rng.integers(BURST_READINGS[0], BURST_READINGS[1] + 1))
            self.gain = float(self.rng.uniform(*BURST_GAIN))
        if self.left == 0:
            return 1.0
        self.left -= 1
        return self.gain


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
        for _, f in self.faults:
            if ALIASES.get(f.kind, f.kind) not in KINDS:
                raise ValueError(f"unknown fault kind {f.kind!r}: choose from {', '.join(KINDS)}")
        # Bursts of intermittent faults come from their own generators, so adding or moving
        # a fault never changes the healthy engines' readings.
        self._bursts = {
            k: _Bursts(np.random.default_rng([seed, k]))
            for k, (_, f) in enumerate(self.faults) if f.kind == "intermittent"
        }

    def next_values(self) -> np.ndarray:
        """Advance one tick; returns one level (g) per engine."""
        n = len(self.ids)
        self.drift = 0.99 * self.drift + self.rng.normal(0, 0.03 * np.sqrt(1 - 0.99**2), n)
        level = self.base * (1 + self.drift)
        noise = self.rng.normal(0, 0.01, n)
        for j, (i, f) in enumerate(self.faults):
            k = self.tick - f.onset
            if not f.active(self.tick):
                continue
            kind = ALIASES.get(f.kind, f.kind)
            if kind == "wear":
                rise = (k / 200.0) ** 2
                level[i] *= 1 + rise
                noise[i] *= 1 + 3 * rise
            elif kind == "step":
                level[i] *= STEP_GAIN
            else:
                level[i] *= self._bursts[j].next_gain()
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
    parser.add_argument("--fault", action="append", default=[], metavar="ENGINE:KIND[@N[+D]]",
                        help="inject a fault, e.g. engine-0003:wear@300 (repeatable; KIND is "
                             f"{', '.join(KINDS)}; N, the reading it starts at, defaults to "
                             "300; D, readings until it is repaired, to never)")
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
