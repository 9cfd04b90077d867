"""The live scenario's parts: time spans, faults, re-baseline, restart, the fleet's faults."""

from __future__ import annotations

import pytest

from service.evaluation.live.scenario import (
    LiveFault,
    Rebaseline,
    Restart,
    Scenario,
    clock,
    parse_span,
)
from service.simulator import Fault


@pytest.mark.parametrize(("text", "seconds"), [
    ("16m", 960.0), ("14m55s", 895.0), ("90s", 90.0), ("1.5m", 90.0), ("0s", 0.0),
])
def test_parse_span(text: str, seconds: float) -> None:
    assert parse_span(text) == seconds


@pytest.mark.parametrize("text", ["", "16", "m", "5h", "-3m", "3m2"])
def test_parse_span_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="time span"):
        parse_span(text)


def test_clock() -> None:
    assert clock(0) == "00:00" and clock(895) == "14:55" and clock(1800) == "30:00"


def test_fault_parse() -> None:
    assert LiveFault.parse("engine-0007:wear@16m") == LiveFault("engine-0007", "wear", 960.0)
    f = LiveFault.parse("engine-0011:step@11m+5m")
    assert f == LiveFault("engine-0011", "step", 660.0, 300.0) and f.end_s == 960.0
    assert f.describe() == "engine-0011 step 11:00-16:00"
    with pytest.raises(ValueError, match="unknown fault kind 'melt'"):
        LiveFault.parse("engine-0001:melt@1m")
    with pytest.raises(ValueError, match="ENGINE:KIND@ONSET"):
        LiveFault.parse("engine-0001:wear")


def test_rebaseline_and_restart_parse() -> None:
    assert Rebaseline.parse("engine-0011@17m") == Rebaseline("engine-0011", 1020.0)
    assert Restart.parse("kill@14m55s") == Restart("kill", 895.0)
    with pytest.raises(ValueError, match="MODE@TIME"):
        Restart.parse("stop@15m")
    with pytest.raises(ValueError, match="ENGINE@TIME"):
        Rebaseline.parse("engine-0011")


def test_fleet_faults_in_readings() -> None:
    s = Scenario(engines=20, span_s=1200, interval_ms=250,
                 faults=(LiveFault("engine-0001", "step", 660.0, 300.0),
                         LiveFault("engine-0002", "wear", 700.1)),
                 rebaseline=None)
    assert s.ticks == 4800
    assert s.fleet_faults() == [Fault("engine-0001", "step", 2640, 1200),
                                Fault("engine-0002", "wear", 2801)]
    assert s.tick_at(0.25) == 1 and s.tick_at(0.3) == 2


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"faults": (LiveFault("engine-0099", "wear", 60.0),)}, "the engines are"),
    ({"faults": (LiveFault("engine-0001", "wear", 2000.0),)}, "after the end"),
    ({"faults": (LiveFault("engine-0001", "wear", 60.0), LiveFault("engine-0001", "step", 90.0))},
     "one fault per engine"),
    ({"faults": (), "rebaseline": Rebaseline("engine-0001", 1900.0)}, "re-baseline"),
])
def test_scenario_refuses_what_cannot_run(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Scenario(engines=5, span_s=1800.0, **kwargs)  # type: ignore[arg-type]


def test_default_scenario_is_issue_12s() -> None:
    s = Scenario()
    assert s.engines == 50 and s.span_s == 1800.0
    assert {f.kind for f in s.faults} == {"wear", "step", "intermittent"}
    assert s.rebaseline is not None
    repaired = s.fault_of(s.rebaseline.engine_id)
    assert repaired is not None and repaired.end_s is not None
    assert repaired.end_s <= s.rebaseline.at_s  # re-baselined after its repair
