"""The live scenario: a simulated fleet, its faults, a re-baseline and a restart, in time.

Every time here is *simulated* time (event time) in seconds from the first reading; the
fleet itself (:class:`service.simulator.Fleet`) counts readings, so faults are turned into
readings with the scenario's reading interval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.simulator import ALIASES, KINDS, Fault

_SPAN = re.compile(r"^(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")
_FAULT = re.compile(r"^(?P<engine>[A-Za-z0-9._:-]{1,64}):(?P<kind>[a-z]+)@(?P<at>[0-9.ms]+)"
                    r"(\+(?P<for>[0-9.ms]+))?$")
_AT = re.compile(r"^(?P<what>[A-Za-z0-9._:-]{1,64})@(?P<at>[0-9.ms]+)$")
RESTART_MODES = ("term", "kill")


def parse_span(text: str) -> float:
    """Seconds of ``16m``, ``14m55s``, ``90s`` or ``1.5m``; ValueError otherwise."""
    m = _SPAN.match(text.strip())
    if m is None or not (m.group("m") or m.group("s")):
        raise ValueError(f"{text!r} is not a time span like 16m, 14m55s or 90s")
    return 60 * float(m.group("m") or 0) + float(m.group("s") or 0)


def clock(seconds: float) -> str:
    """``mm:ss`` of simulated seconds (``16:00``)."""
    whole = round(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


@dataclass(frozen=True)
class LiveFault:
    """A fault from ``onset_s`` on, for ``duration_s`` (None: to the end)."""

    engine_id: str
    kind: str
    onset_s: float
    duration_s: float | None = None

    @classmethod
    def parse(cls, text: str) -> LiveFault:
        """``ENGINE:KIND@ONSET[+DURATION]`` with time spans, e.g. ``engine-0007:wear@16m``
        or ``engine-0011:step@11m+5m``; ValueError naming what is wrong."""
        m = _FAULT.match(text)
        if m is None:
            raise ValueError(f"{text!r} is not ENGINE:KIND@ONSET[+DURATION], e.g. "
                             "engine-0007:wear@16m or engine-0011:step@11m+5m")
        kind = m.group("kind")
        if kind not in KINDS and kind not in ALIASES:
            raise ValueError(f"unknown fault kind {kind!r}: choose from {', '.join(KINDS)}")
        lasts = m.group("for")
        return cls(m.group("engine"), kind, parse_span(m.group("at")),
                   None if lasts is None else parse_span(lasts))

    @property
    def end_s(self) -> float | None:
        return None if self.duration_s is None else self.onset_s + self.duration_s

    def describe(self) -> str:
        when = (f"from {clock(self.onset_s)}" if self.end_s is None
                else f"{clock(self.onset_s)}-{clock(self.end_s)}")
        return f"{self.engine_id} {self.kind} {when}"


@dataclass(frozen=True)
class Rebaseline:
    """An operator re-baselines ``engine_id`` at ``at_s`` (POST /engines/{id}/baseline)."""

    engine_id: str
    at_s: float

    @classmethod
    def parse(cls, text: str) -> Rebaseline:
        """``ENGINE@TIME``, e.g. ``engine-0011@17m``."""
        m = _AT.match(text)
        if m is None:
            raise ValueError(f"{text!r} is not ENGINE@TIME, e.g. engine-0011@17m")
        return cls(m.group("what"), parse_span(m.group("at")))


@dataclass(frozen=True)
class Restart:
    """The service is stopped at ``at_s`` (SIGTERM: ``term``; SIGKILL: ``kill``) and
    started again at once, while the readings keep coming."""

    mode: str
    at_s: float

    @classmethod
    def parse(cls, text: str) -> Restart:
        """``MODE@TIME``, e.g. ``term@15m`` or ``kill@14m55s``."""
        m = _AT.match(text)
        if m is None or m.group("what") not in RESTART_MODES:
            raise ValueError(f"{text!r} is not MODE@TIME with MODE {' or '.join(RESTART_MODES)},"
                             " e.g. term@15m")
        return cls(m.group("what"), parse_span(m.group("at")))

    def describe(self) -> str:
        signal = {"term": "SIGTERM", "kill": "kill -9"}[self.mode]
        return f"{signal} at {clock(self.at_s)}"


#: The acceptance scenario of issue 12 (see docs/scoring.md, "Live acceptance"): the faults
#: start after the 10 minutes of commissioning; the step is repaired at 16:00 and its engine
#: re-baselined at 17:00 (commissioned again by 27:00); the restart at 14:55 falls inside
#: the step and the intermittent fault and before the wear.
DEFAULT_FAULTS = (
    LiveFault("engine-0011", "step", 11 * 60.0, 5 * 60.0),
    LiveFault("engine-0023", "intermittent", 13 * 60.0),
    LiveFault("engine-0007", "wear", 16 * 60.0),
)
DEFAULT_REBASELINE = Rebaseline("engine-0011", 17 * 60.0)
DEFAULT_RESTART = Restart("term", 14 * 60.0 + 55.0)


@dataclass(frozen=True)
class Scenario:
    """The simulated fleet of one run (every run of a command uses the same one)."""

    engines: int = 50
    span_s: float = 1800.0
    interval_ms: int = 250
    seed: int = 0
    faults: tuple[LiveFault, ...] = DEFAULT_FAULTS
    rebaseline: Rebaseline | None = DEFAULT_REBASELINE

    def __post_init__(self) -> None:
        """Refuse a scenario that cannot run as meant (ValueError naming the problem)."""
        if self.engines < 1 or self.interval_ms < 1 or self.span_s <= 0:
            raise ValueError("engines, the reading interval and the span must be positive")
        ids = set(self.engine_ids)
        for f in self.faults:
            if f.engine_id not in ids:
                raise ValueError(f"fault on {f.engine_id}: the engines are "
                                 f"{self.engine_ids[0]} to {self.engine_ids[-1]}")
            if f.onset_s >= self.span_s:
                raise ValueError(f"fault on {f.engine_id} starts at {clock(f.onset_s)}, after "
                                 f"the end ({clock(self.span_s)})")
        if len({f.engine_id for f in self.faults}) != len(self.faults):
            raise ValueError("one fault per engine")
        if self.rebaseline is not None:
            r = self.rebaseline
            if r.engine_id not in ids or r.at_s >= self.span_s:
                raise ValueError(f"re-baseline of {r.engine_id} at {clock(r.at_s)}: not an "
                                 "engine of the fleet, or after the end")

    @property
    def engine_ids(self) -> list[str]:
        return [f"engine-{i:04d}" for i in range(self.engines)]

    @property
    def ticks(self) -> int:
        """Readings per engine."""
        return int(self.span_s * 1000 // self.interval_ms)

    def tick_at(self, seconds: float) -> int:
        """The first reading at or after ``seconds``."""
        return -int(-seconds * 1000 // self.interval_ms)

    def fleet_faults(self) -> list[Fault]:
        """The faults in the simulator's units (readings)."""
        return [Fault(f.engine_id, f.kind, self.tick_at(f.onset_s),
                      None if f.duration_s is None
                      else max(1, round(f.duration_s * 1000 / self.interval_ms)))
                for f in self.faults]

    def fault_of(self, engine_id: str) -> LiveFault | None:
        return next((f for f in self.faults if f.engine_id == engine_id), None)

    def describe(self) -> str:
        parts = [f.describe() for f in self.faults]
        if self.rebaseline is not None:
            parts.append(f"{self.rebaseline.engine_id} re-baselined at "
                         f"{clock(self.rebaseline.at_s)}")
        return "; ".join(parts)
