"""The live scenario's outcome from what a run observed (constructed observations)."""

from __future__ import annotations

import numpy as np

from service.evaluation.live.observe import (
    Event,
    Poll,
    RebaselineRecord,
    RestartRecord,
    Row,
    RunRecord,
)
from service.evaluation.live.outcome import STALE, outcome, page_fires, status_series
from service.evaluation.live.scenario import LiveFault, Rebaseline, Scenario

START = 1_700_000_000_000
SCENARIO = Scenario(
    engines=4, span_s=900.0,
    faults=(LiveFault("engine-0001", "wear", 600.0),
            LiveFault("engine-0002", "step", 600.0, 60.0)),
    rebaseline=Rebaseline("engine-0002", 700.0),
)


def ev(engine: str, at_s: float, previous: str, status: str, cause: str = "score") -> Event:
    return Event(engine, START + int(at_s * 1000), previous, status, 0.5, cause)


def record(events: list[Event], polls: list[Poll] | None = None,
           restart: RestartRecord | None = None) -> RunRecord:
    r = RunRecord("test", START, readings=100, wall_s=10.0, events=events, polls=polls or [],
                  restart=restart)
    r.rebaseline = RebaselineRecord("engine-0002", 700.0, 202, "accepted")
    return r


def commissioned(*engines: str) -> list[Event]:
    return [ev(e, 30.0, "warmup", "normal") for e in engines]


def test_a_clean_run_meets_the_targets() -> None:
    events = [
        *commissioned("engine-0000", "engine-0001", "engine-0002", "engine-0003"),
        ev("engine-0001", 612.0, "normal", "alarm"),
        ev("engine-0002", 601.0, "normal", "alarm"),
        # wall-clock time of the request: placed at the re-baseline's scenario time
        ev("engine-0002", 9e9, "alarm", "warmup", cause="baseline"),
        ev("engine-0002", 710.0, "warmup", "normal"),
    ]
    at_630, at_670 = START + 630_000, START + 670_000
    polls = [Poll(1.0, (Row("engine-0002", at_630, "alarm", 9.0),
                        Row("engine-0001", at_630, "alarm", 2.0),
                        Row("engine-0000", at_630, "normal", 0.1))),
             # the step was repaired at 660 s; its alarm is held, its score low
             Poll(2.0, (Row("engine-0001", at_670, "alarm", 2.0),
                        Row("engine-0000", at_670, "normal", 0.1),
                        Row("engine-0002", at_670, "alarm", 0.01)))]
    o = outcome(record(events, polls), SCENARIO)
    wear, step = o.faults
    assert (wear.delay_s, wear.raises, wear.held) == (12.0, 1, True)
    assert (step.delay_s, step.raises, step.held) == (1.0, 1, None)  # repaired: not held
    assert (wear.rank_best, wear.rank_worst, wear.healthy_above) == (1, 2, 0)
    assert (step.rank_best, step.healthy_above, step.healthy_above_after_repair) == (1, 0, 1)
    # scrapes at 615, 630, ... see the alarm; `for: 1m` -> firing at 675
    assert wear.page_s == 675.0 and wear.page_delay_s == 75.0
    assert step.page_s == 675.0  # seen first by the scrape at 615
    rb = o.rebaseline
    assert rb is not None and rb.applied and rb.previous == "alarm"
    assert rb.normal_at_s == 710.0 and rb.commission_s == 10.0 and rb.raises_after == 0
    assert o.false_alarms == {} and o.passed, o.missed


def test_misses_are_named() -> None:
    events = [
        *commissioned("engine-0000", "engine-0001", "engine-0002", "engine-0003"),
        ev("engine-0000", 300.0, "normal", "alarm"),  # a healthy engine
        ev("engine-0001", 100.0, "normal", "alarm"),  # before its onset
        ev("engine-0001", 110.0, "alarm", "normal"),
        ev("engine-0001", 660.0, "normal", "alarm"),  # 60 s: too late for wear
        ev("engine-0001", 700.0, "alarm", "normal"),  # not held
        ev("engine-0001", 720.0, "normal", "alarm"),  # raised again
        ev("engine-0002", 9e9, "normal", "warmup", cause="baseline"),
        ev("engine-0002", 800.0, "warmup", "warning"),
    ]
    polls = [Poll(1.0, (Row("engine-0003", 0, "normal", 5.0), Row("engine-0001", 0, "alarm", 2.0)))]
    o = outcome(record(events, polls), SCENARIO)
    text = "\n".join(o.missed)
    assert "engine-0001 wear: 2 alarm raises" in text
    assert "engine-0001 wear: alarmed 60.0 s after onset" in text
    assert "engine-0001 wear: alarm not held to the end" in text
    assert "engine-0001: 1 alarms before its fault" in text
    assert "up to 1 healthy engines listed above it" in text
    assert "engine-0002 step: never alarmed" in text
    assert "false alarms on 1 healthy engines: engine-0000 x1" in text
    assert "re-baseline of engine-0002: not commissioned again" in text
    assert "re-baseline of engine-0002: 1 warnings or alarms afterwards" in text
    assert not o.passed


def test_status_series_marks_the_restart_stale() -> None:
    events = [ev("engine-0001", 30.0, "warmup", "normal"), ev("engine-0001", 612.0, "normal",
                                                               "alarm")]
    restart = RestartRecord("term", 655.0, 0, 1.0, 8.0)
    codes = status_series(record(events, restart=restart), events, 900.0)
    assert codes[0] == 0 and codes[2] == 1 and codes[41] == 3
    assert codes[44] == STALE  # 660 s falls within 655 .. 663
    assert codes[43] == 3 and codes[45] == 3


def test_page_fires_after_a_minute_and_again_after_a_stale_scrape() -> None:
    codes = np.array([1, 3, 3, 3, 3, 3, 3, STALE, 3, 3, 3, 3, 3, 1])
    fires = page_fires(codes)
    assert fires.tolist() == [False, False, False, False, False, True, True, False,
                              False, False, False, False, True, False]
