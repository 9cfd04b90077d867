"""``vibewatch evaluate simulated``: the service's defaults on ``vibewatch simulate`` data.

A seeded fleet from the simulator (:class:`service.simulator.Fleet`): healthy engines, one
with bearing wear that lasts to the end, one with a step to four times its level, and one
whose wear is repaired and then comes back (a second, identical fault). One reading per
second per engine (``--interval-ms``). Every engine is streamed through the service's
default model (the bundled IMS LSTM) and scoring, as ``vibewatch serve`` would.

Reported per fault episode: the delay from its onset to the alarm and the number of alarm
raises during it; per healthy engine: its alarms. Targets: every episode alarmed within
``--max-delay`` seconds with one raise, the lasting faults held to the end, the second wear
alarmed no later than the first plus 50 %, no alarm on a healthy engine.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from service.config import DEFAULT_ARTIFACT
from service.evaluation.common import (
    ALARM,
    add_scoring_arguments,
    onsets,
    out,
    scoring_settings,
)
from service.evaluation.runs import (
    PredictorSpec,
    Recording,
    add_predictor_arguments,
    predictor_spec,
)
from service.evaluation.runs import run as run_streams
from service.evaluation.stream import Trace
from service.simulator import Fault, Fleet

MODEL = PredictorSpec("lstm", model=DEFAULT_ARTIFACT)
START_MS = 1_700_000_000_000


@dataclass(frozen=True)
class Scenario:
    """A simulated fleet: engines, readings per engine, fault episodes (reading numbers)."""

    engines: int = 20
    readings: int = 9_000
    interval_ms: int = 1_000
    seed: int = 0
    faults: tuple[Fault, ...] = (
        Fault("engine-0001", "wear", 1_800),
        Fault("engine-0002", "spike", 1_800),
        Fault("engine-0003", "wear", 1_800, 600),
        Fault("engine-0003", "wear", 7_200, 600),
    )

    def generate(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(engine ids, values ``(readings, engines)``, event times ms)."""
        fleet = Fleet(self.engines, seed=self.seed, faults=self.faults)
        values = np.stack([fleet.next_values() for _ in range(self.readings)])
        ts = START_MS + np.arange(self.readings, dtype=np.int64) * self.interval_ms
        return fleet.ids, values, ts


@dataclass(frozen=True)
class Episode:
    """One fault episode's alarm."""

    engine: str
    kind: str
    onset_s: float
    delay_s: float | None  #: onset to the first alarm raise (None: never)
    raises: int  #: alarm raises from onset to the next episode (or the end)
    held: bool  #: a fault lasting to the end: in alarm from the raise to the end


@dataclass(frozen=True)
class SimOutcome:
    episodes: tuple[Episode, ...]
    healthy_alarms: dict[str, int]  #: healthy engines with alarms -> raises
    passed: bool
    why: str


def outcomes(scenario: Scenario, ids: Sequence[str], traces: Sequence[Trace],
             max_delay_s: float) -> SimOutcome:
    """Episodes and healthy engines of ``scenario`` from the traces (one per engine)."""
    step_s = scenario.interval_ms / 1000.0
    episodes = []
    by_engine: dict[str, list[Fault]] = {}
    for f in scenario.faults:
        by_engine.setdefault(f.engine_id, []).append(f)
    for engine, faults in by_engine.items():
        t = traces[list(ids).index(engine)]
        rows = np.flatnonzero(onsets(t, ALARM))
        faults = sorted(faults, key=lambda f: f.onset)
        for k, f in enumerate(faults):
            stop = faults[k + 1].onset if k + 1 < len(faults) else scenario.readings
            mine = rows[(rows >= f.onset) & (rows < stop)]
            first = int(mine[0]) if mine.size else None
            lasting = f.duration is None
            held = lasting and first is not None and bool(np.all(t.status[first:] >= ALARM))
            episodes.append(Episode(engine, f.kind, f.onset * step_s,
                                    None if first is None else (first - f.onset) * step_s,
                                    int(mine.size), held))
    faulty = set(by_engine)
    healthy = {e: int(onsets(t, ALARM).sum()) for e, t in zip(ids, traces, strict=True)
               if e not in faulty}
    why = []
    for ep in episodes:
        if ep.delay_s is None or ep.delay_s > max_delay_s:
            why.append(f"{ep.engine} {ep.kind}@{ep.onset_s:g}s not alarmed within "
                       f"{max_delay_s:g} s")
        elif ep.raises != 1:
            why.append(f"{ep.engine} {ep.kind}@{ep.onset_s:g}s raised {ep.raises} times")
    for f, ep in zip(scenario.faults, episodes, strict=False):
        if f.duration is None and not ep.held:
            why.append(f"{ep.engine} {ep.kind} not held to the end")
    repeats = [e for e in episodes if e.engine == "engine-0003"]
    if len(repeats) == 2 and None not in (repeats[0].delay_s, repeats[1].delay_s):
        once, again = repeats[0].delay_s or 0.0, repeats[1].delay_s or 0.0
        if again > 1.5 * once + step_s:
            why.append(f"second wear alarmed after {again:g} s, the first after {once:g} s")
    noisy = {e: n for e, n in healthy.items() if n}
    if noisy:
        why.append(f"{len(noisy)} healthy engines alarmed")
    return SimOutcome(tuple(episodes), noisy, not why, "; ".join(why))


def recordings(scenario: Scenario) -> tuple[list[str], list[Recording]]:
    ids, values, ts = scenario.generate()
    return ids, [Recording(e, values[:, k : k + 1], ts) for k, e in enumerate(ids)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", type=int, default=20, help="engines (default 20)")
    parser.add_argument("--readings", type=int, default=9_000,
                        help="readings per engine (default 9000)")
    parser.add_argument("--interval-ms", type=int, default=1_000,
                        help="event time between an engine's readings (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    parser.add_argument("--max-delay", type=float, default=300.0,
                        help="seconds from a fault's onset to its alarm (default 300)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    add_predictor_arguments(parser, MODEL)
    add_scoring_arguments(parser)


def run(args: argparse.Namespace) -> int:
    scenario = Scenario(args.engines, args.readings, args.interval_ms, args.seed)
    spec = predictor_spec(args, MODEL)
    ids, recs = recordings(scenario)
    traces = run_streams(spec, scoring_settings(args), recs)
    result = outcomes(scenario, ids, traces, args.max_delay)
    out(f"simulated fleet: {scenario.engines} engines, {scenario.readings} readings each, "
        f"{scenario.interval_ms} ms apart; model {spec.describe()}")
    out(f"  {'engine':<12} {'fault':<6} {'onset s':>8} {'delay s':>8} {'raises':>7} {'held':>5}")
    for e in result.episodes:
        delay = "-" if e.delay_s is None else f"{e.delay_s:.0f}"
        out(f"  {e.engine:<12} {e.kind:<6} {e.onset_s:>8.0f} {delay:>8} {e.raises:>7} "
            f"{e.held!s:>5}")
    out(f"  healthy engines with alarms: {result.healthy_alarms or 'none'}")
    out("  targets met" if result.passed else f"  targets missed: {result.why}")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(result), indent=1))
    return 0
