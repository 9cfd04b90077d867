"""What a run of the live scenario means against issue 12's targets.

Per fault: the detection delay (simulated time from the onset to the first alarm), the
alarm raises while the fault is the engine's business (from the onset to the re-baseline,
or the end), whether a lasting fault's alarm is held to the end, the engine's rank in the
engine list while that list shows it in alarm, and when the page alert would fire.
Per fleet: alarms on healthy engines (false alarms). The re-baseline: applied, the engine
commissioned afresh, and quiet on healthy readings afterwards.

The page alert is ``VibewatchEngineInAlarm`` (deploy/prometheus/rules): status alarm for
``for: 1m``, evaluated every 15 s on series scraped every 15 s (deploy/prometheus/
prometheus.yml), with the simulated time running at 1x. :func:`status_series` gives what
that Prometheus would have scraped; :func:`page_fires` evaluates the rule on it the way
promtool does, and the promtool test that :mod:`.promtool` writes checks that model
against the real rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from service.evaluation.live.observe import STATUS_CODE, Event, RunRecord
from service.evaluation.live.scenario import LiveFault, Scenario

SCRAPE_S = 15.0  #: scrape and rule evaluation interval (deploy/prometheus/prometheus.yml)
PAGE_FOR_S = 60.0  #: ``for`` of VibewatchEngineInAlarm (deploy/prometheus/rules)
ALARM = STATUS_CODE["alarm"]
STALE = -1  #: a scrape that failed (the service was down): Prometheus marks series stale
#: issue 12's targets
WEAR_DELAY_S = 30.0
PAGE_DELAY_S = 120.0


@dataclass(frozen=True)
class FaultOutcome:
    engine_id: str
    kind: str
    onset_s: float
    end_s: float | None
    first_alarm_s: float | None
    delay_s: float | None
    raises: int
    warnings: int
    held: bool | None  #: a lasting fault: in alarm from the first raise to the end
    alarms_before_onset: int
    polls_in_alarm: int  #: engine-list views showing it in alarm while the fault is on
    rank_best: int | None
    rank_worst: int | None
    #: the simulated time of the engine's row in the view that ranked it worst
    rank_worst_at_s: float | None
    healthy_above: int | None  #: most healthy engines listed above it while in alarm
    #: a repaired fault whose alarm is held: most healthy engines above it after the repair
    healthy_above_after_repair: int | None
    page_s: float | None  #: when the page alert fires (simulated time at 1x)
    page_delay_s: float | None


@dataclass(frozen=True)
class RebaselineOutcome:
    engine_id: str
    at_s: float
    http_status: int
    applied: bool  #: an event with cause baseline, to warmup
    previous: str | None  #: the status it left
    normal_at_s: float | None  #: commissioned: warmup -> normal
    commission_s: float | None
    raises_after: int  #: warnings and alarms after the re-baseline


@dataclass(frozen=True)
class RunOutcome:
    name: str
    restart: dict[str, object] | None
    faults: tuple[FaultOutcome, ...]
    false_alarms: dict[str, int]  #: healthy engine -> alarm raises
    healthy_warnings: dict[str, int]
    rebaseline: RebaselineOutcome | None
    readings: int
    events: int
    wall_s: float
    missed: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.missed


def effective_s(record: RunRecord, engine_events: list[Event]) -> list[float]:
    """Simulated time of each of an engine's events. A re-baseline event carries the wall
    time of the request, not the engine's event time; it is placed at the re-baseline's
    scenario time instead (its place in the engine's event order is exact)."""
    out: list[float] = []
    for e in engine_events:
        if e.cause == "baseline" and record.rebaseline is not None:
            out.append(max(out[-1] if out else 0.0, record.rebaseline.at_s))
        else:
            out.append(record.sim_s(e.ts_ms))
    return out


def by_engine(events: list[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for e in events:
        out.setdefault(e.engine_id, []).append(e)
    return out


def scrape_times(span_s: float) -> np.ndarray:
    return np.arange(0.0, span_s + 1e-9, SCRAPE_S)


def outage(record: RunRecord) -> tuple[float, float] | None:
    """The simulated interval a 1x Prometheus could not scrape: from the restart signal
    to ready again (the restart's wall time, which is not accelerated)."""
    r = record.restart
    if r is None:
        return None
    return (r.at_s, r.at_s + r.outage_wall_s)


def status_series(record: RunRecord, engine_events: list[Event], span_s: float) -> np.ndarray:
    """The engine's status code at every scrape (STALE while the service was down)."""
    times = scrape_times(span_s)
    codes = np.zeros(len(times), dtype=np.int64)  # warmup from the first reading
    at = effective_s(record, engine_events)
    for when, e in zip(at, engine_events, strict=True):
        codes[times >= when] = STATUS_CODE[e.status]
    gap = outage(record)
    if gap is not None:
        codes[(times > gap[0]) & (times <= gap[1])] = STALE
    return codes


def score_series(record: RunRecord, engine_id: str, span_s: float) -> np.ndarray:
    """The engine's score at every scrape, from the engine list's rows (the latest row at
    or before the scrape in event time; NaN before the first; STALE while down)."""
    pairs = sorted({(r.ts_ms, r.score) for p in record.polls for r in p.rows
                    if r.engine_id == engine_id})
    times = scrape_times(span_s)
    out = np.full(len(times), np.nan)
    if pairs:
        ts = np.array([record.sim_s(t) for t, _ in pairs])
        scores = np.array([s for _, s in pairs])
        k = np.searchsorted(ts, times, side="right") - 1
        out[k >= 0] = scores[k[k >= 0]]
    gap = outage(record)
    if gap is not None:
        out[(times > gap[0]) & (times <= gap[1])] = STALE
    return out


def page_fires(codes: np.ndarray) -> np.ndarray:
    """Whether VibewatchEngineInAlarm fires at each evaluation (one per scrape): active
    while the latest scrape says alarm, firing once active for ``PAGE_FOR_S``; a stale
    scrape ends it (the series is gone)."""
    firing = np.zeros(len(codes), dtype=bool)
    since: float | None = None
    for k, code in enumerate(codes):
        now = k * SCRAPE_S
        if code == ALARM:
            since = now if since is None else since
            firing[k] = now - since >= PAGE_FOR_S
        else:
            since = None
    return firing


def fault_outcome(record: RunRecord, scenario: Scenario, fault: LiveFault,
                  engine_events: list[Event]) -> FaultOutcome:
    at = effective_s(record, engine_events)
    rb = scenario.rebaseline
    stop = len(engine_events)
    if rb is not None and rb.engine_id == fault.engine_id:
        stop = next((k for k, e in enumerate(engine_events) if e.cause == "baseline"), stop)
    mine = [(t, e) for t, e in zip(at[:stop], engine_events[:stop], strict=True)
            if t >= fault.onset_s]
    early = sum(1 for t, e in zip(at[:stop], engine_events[:stop], strict=True)
                if t < fault.onset_s and e.is_alarm_raise)
    raises = [t for t, e in mine if e.is_alarm_raise]
    first = raises[0] if raises else None
    held: bool | None = None
    if fault.end_s is None and stop == len(engine_events):
        held = first is not None and all(e.status == "alarm" for t, e in mine if t >= first)
    ranks, above, after_repair, rank_at = [], [], [], []
    for p in record.polls:
        for k, row in enumerate(p.rows):
            if row.engine_id == fault.engine_id and row.status == "alarm":
                healthy = sum(1 for r in p.rows[:k] if scenario.fault_of(r.engine_id) is None)
                if fault.end_s is not None and record.sim_s(row.ts_ms) >= fault.end_s:
                    after_repair.append(healthy)
                else:
                    ranks.append(k + 1)
                    above.append(healthy)
                    rank_at.append(record.sim_s(row.ts_ms))
    fires = page_fires(status_series(record, engine_events, scenario.span_s))
    after = np.flatnonzero(fires & (scrape_times(scenario.span_s) >= fault.onset_s))
    page = float(after[0] * SCRAPE_S) if after.size else None
    return FaultOutcome(
        engine_id=fault.engine_id, kind=fault.kind, onset_s=fault.onset_s, end_s=fault.end_s,
        first_alarm_s=first, delay_s=None if first is None else first - fault.onset_s,
        raises=len(raises), warnings=sum(1 for _, e in mine if e.is_warning_raise),
        held=held, alarms_before_onset=early, polls_in_alarm=len(ranks),
        rank_best=min(ranks) if ranks else None, rank_worst=max(ranks) if ranks else None,
        rank_worst_at_s=rank_at[int(np.argmax(ranks))] if ranks else None,
        healthy_above=max(above) if above else None,
        healthy_above_after_repair=max(after_repair) if after_repair else None,
        page_s=page, page_delay_s=None if page is None else page - fault.onset_s,
    )


def rebaseline_outcome(record: RunRecord, engine_events: list[Event]) -> RebaselineOutcome | None:
    rb = record.rebaseline
    if rb is None:
        return None
    at = effective_s(record, engine_events)
    k = next((i for i, e in enumerate(engine_events) if e.cause == "baseline"), None)
    if k is None:
        return RebaselineOutcome(rb.engine_id, rb.at_s, rb.http_status, False, None, None,
                                 None, 0)
    after = list(zip(at[k + 1:], engine_events[k + 1:], strict=True))
    normal = next((t for t, e in after if e.status == "normal" and e.previous == "warmup"),
                  None)
    base = engine_events[k]
    return RebaselineOutcome(
        rb.engine_id, rb.at_s, rb.http_status, base.status == "warmup", base.previous,
        normal, None if normal is None else normal - rb.at_s,
        sum(1 for _, e in after if e.is_alarm_raise or e.is_warning_raise),
    )


def outcome(record: RunRecord, scenario: Scenario) -> RunOutcome:
    """The run's outcome and the targets it missed (in words)."""
    events = by_engine(record.events)
    faults = tuple(fault_outcome(record, scenario, f, events.get(f.engine_id, []))
                   for f in scenario.faults)
    healthy = [e for e in scenario.engine_ids if scenario.fault_of(e) is None]
    false_alarms = {e: n for e in healthy
                    if (n := sum(x.is_alarm_raise for x in events.get(e, [])))}
    warnings = {e: n for e in healthy
                if (n := sum(x.is_warning_raise for x in events.get(e, [])))}
    rb = None
    if record.rebaseline is not None:
        rb = rebaseline_outcome(record, events.get(record.rebaseline.engine_id, []))
    restart = None
    if record.restart is not None:
        r = record.restart
        restart = {"mode": r.mode, "at_s": r.at_s, "exit_code": r.exit_code,
                   "stopped_wall_s": round(r.stopped_wall_s, 2),
                   "outage_wall_s": round(r.outage_wall_s, 2),
                   "catch_up_wall_s": None if r.catch_up_wall_s is None
                   else round(r.catch_up_wall_s, 2)}
    result = RunOutcome(record.name, restart, faults, false_alarms, warnings, rb,
                        record.readings, len(record.events), round(record.wall_s, 1))
    return replace(result, missed=tuple(missed(result)))


def missed(o: RunOutcome) -> list[str]:
    """Issue 12's live targets this run missed, in words."""
    why = []
    for f in o.faults:
        if f.first_alarm_s is None:
            why.append(f"{f.engine_id} {f.kind}: never alarmed")
            continue
        if f.raises != 1:
            why.append(f"{f.engine_id} {f.kind}: {f.raises} alarm raises")
        if f.kind == "wear" and (f.delay_s or 0.0) > WEAR_DELAY_S:
            why.append(f"{f.engine_id} wear: alarmed {f.delay_s:.1f} s after onset "
                       f"(target {WEAR_DELAY_S:.0f} s)")
        if f.held is False:
            why.append(f"{f.engine_id} {f.kind}: alarm not held to the end")
        if f.alarms_before_onset:
            why.append(f"{f.engine_id}: {f.alarms_before_onset} alarms before its fault")
        if f.healthy_above:
            why.append(f"{f.engine_id} {f.kind}: up to {f.healthy_above} healthy engines "
                       "listed above it while in alarm")
        if f.page_delay_s is None or f.page_delay_s > PAGE_DELAY_S:
            when = "never" if f.page_delay_s is None else f"{f.page_delay_s:.0f} s after onset"
            why.append(f"{f.engine_id} {f.kind}: page alert {when} "
                       f"(target {PAGE_DELAY_S:.0f} s)")
    if o.false_alarms:
        why.append(f"false alarms on {len(o.false_alarms)} healthy engines: "
                   + ", ".join(f"{e} x{n}" for e, n in o.false_alarms.items()))
    rb = o.rebaseline
    if rb is not None:
        if rb.http_status != 202 or not rb.applied:
            why.append(f"re-baseline of {rb.engine_id}: HTTP {rb.http_status}, "
                       f"{'applied' if rb.applied else 'not applied'}")
        elif rb.normal_at_s is None:
            why.append(f"re-baseline of {rb.engine_id}: not commissioned again by the end")
        if rb.raises_after:
            why.append(f"re-baseline of {rb.engine_id}: {rb.raises_after} warnings or alarms "
                       "afterwards")
    return why
