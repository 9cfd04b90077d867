"""The live scenario's outcome as the command prints it."""

from __future__ import annotations

from collections.abc import Sequence

from service.evaluation.common import out
from service.evaluation.live.outcome import FaultOutcome, RebaselineOutcome, RunOutcome
from service.evaluation.live.scenario import Scenario, clock


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def _fault_line(f: FaultOutcome) -> str:
    alarm = "never" if f.first_alarm_s is None else clock(f.first_alarm_s)
    held = "-" if f.held is None else ("yes" if f.held else "no")
    rank = ("-" if f.rank_best is None
            else f"{f.rank_best}-{f.rank_worst} ({f.polls_in_alarm} views)")
    page = "never" if f.page_delay_s is None else f"{f.page_delay_s:.0f} s"
    name = f"{f.engine_id} {f.kind}"
    line = (f"  {name:<26} {clock(f.onset_s):>6} {alarm:>6} {_num(f.delay_s):>8} "
            f"{f.raises:>6} {held:>5} {rank:>18} {_num(f.healthy_above, 'd'):>8} {page:>6}")
    if f.healthy_above_after_repair is not None:
        line += (f"\n  {'':<26} repaired, alarm held: up to {f.healthy_above_after_repair} "
                 "healthy engines listed above it")
    return line


def _rebaseline_line(rb: RebaselineOutcome) -> str:
    if not rb.applied:
        return (f"  re-baseline {rb.engine_id} at {clock(rb.at_s)}: HTTP {rb.http_status}, "
                "not applied")
    normal = ("not commissioned again by the end" if rb.normal_at_s is None
              else f"normal again at {clock(rb.normal_at_s)} "
                   f"(commissioned in {rb.commission_s:.0f} s)")
    quiet = ("no warning or alarm after" if not rb.raises_after
             else f"{rb.raises_after} warnings/alarms after")
    return (f"  re-baseline {rb.engine_id} at {clock(rb.at_s)}: HTTP {rb.http_status}, "
            f"{rb.previous} -> warmup, {normal}, {quiet}")


def _restart_words(o: RunOutcome) -> str:
    r = o.restart
    if r is None:
        return ""
    signal = {"term": "SIGTERM", "kill": "kill -9"}[str(r["mode"])]
    at = r["at_s"]
    assert isinstance(at, float)
    return (f"; {signal} at {clock(at)}, exit {r['exit_code']} after {r['stopped_wall_s']} s, "
            f"ready again {r['outage_wall_s']} s after the signal, caught up "
            f"{r['catch_up_wall_s']} s later")


def print_outcomes(scenario: Scenario, speed: float, outcomes: Sequence[RunOutcome],
                   promtool: dict[str, object] | None) -> None:
    out(f"live scenario: {scenario.engines} engines for {clock(scenario.span_s)} of simulated "
        f"time, a reading every {scenario.interval_ms} ms, at {speed:g}x; seed {scenario.seed}")
    out(f"  {scenario.describe()}")
    for o in outcomes:
        out()
        out(f"{o.name}: {o.readings:,} readings, {o.events} events, {o.wall_s:.0f} s"
            + _restart_words(o))
        out(f"  {'fault':<26} {'onset':>6} {'alarm':>6} {'delay s':>8} {'raises':>6} "
            f"{'held':>5} {'rank in alarm':>18} {'healthy↑':>8} {'page':>6}")
        for f in o.faults:
            out(_fault_line(f))
        fa = ", ".join(f"{e} x{n}" for e, n in o.false_alarms.items()) or "none"
        hw = ", ".join(f"{e} x{n}" for e, n in o.healthy_warnings.items()) or "none"
        out(f"  false alarms on healthy engines: {fa}; warnings: {hw}")
        if o.rebaseline is not None:
            out(_rebaseline_line(o.rebaseline))
        out("  targets met" if o.passed else "  targets missed:")
        for why in o.missed:
            out(f"    - {why}")
    if promtool is not None:
        out()
        verdict = "passed" if promtool["passed"] else f"FAILED\n{promtool['output']}"
        out(f"promtool test rules {promtool['path']}: {verdict}")
