"""``vibewatch evaluate lead-time``: how early alarms come on run-to-failure data, and how
many come on healthy units.

Data (any mix; without any flag, the two IMS tests shipped in ``models/data/ims``):

* ``--ims ims1 ims2``: the shipped IMS tests (test 1: bearings 3 and 4 fail; test 2:
  bearing 1). Each bearing is a unit with its channels.
* ``--data CSV --failing UNIT...``: any run-to-failure CSV (a time column, then channel
  columns grouped into units by ``--unit-regex``); the units not named by ``--failing``
  are healthy controls.
* ``--cmapss FILE [--rul FILE]``: C-MAPSS units (a training file: each runs to its last
  cycle; a test file with its RUL file: each fails RUL cycles after its last row; make one
  with ``vibewatch evaluate cut-cmapss``). A cycle is taken as one hour.

Every unit is streamed through the data set's model and the service's processor and
scoring. Per unit: the first alarm (status rising to alarm), its lead before the end of
life, the number of alarm raises, whether the alarm was held from the first raise to the
unit's last reading, and false alarms:

* runs with healthy units: any alarm on a healthy unit (and whether it came before the
  failing units' first alarm);
* C-MAPSS (every unit fails, none says when its degradation starts): alarms while more than
  ``--healthy-rul`` cycles of life are left (125, the usual piecewise-linear RUL cap).

Targets checked (issue 12): on runs with healthy units every failing unit in alarm without
a break for at least the last ``--min-lead`` hours (72 h for IMS test 2: its final alarm
raised that early and held to the end), and no alarm on a healthy unit before the failing
units' first alarm; on C-MAPSS at least 95 % of units detected and none alarmed early.
Also reported: the number of raises (an alarm that clears and comes back counts twice) and
whether the first alarm was held to the end.

``--one-engine``: all of a run's channels are one engine (a model of the whole machine, such
as ``models/artifacts/ims1-8ch`` for IMS test 1's eight channels, scored with
``--channel-reduce joint``). Its alarms are attributed to units by the channels that drive
them: each episode at warning or above belongs to the unit whose channels hold the largest
share of the error (``ScoreBatch.contributions``) at its first alarm reading (or its first
reading, if it never reaches alarm), and the per-unit figures and targets above are computed
from those attributed episodes. For every unit the table also gives the top contributing
channels and their shares at its first alarm (any multichannel engine: C-MAPSS's 14 sensors
too).

``--plot PATH`` also draws one unit (``--plot-unit``; default the first failing unit of the
first run) over its run: reading and prediction, score and levels, status, with the first
alarm and the end of life marked (:mod:`service.evaluation.unit_plot`; needs matplotlib,
from the ``train`` extra).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from service.config import ScoringSettings
from service.errors import UsageError
from service.evaluation.common import (
    ALARM,
    WARNING,
    add_scoring_arguments,
    existing,
    onsets,
    out,
    scoring_settings,
)
from service.evaluation.datasets import (
    IMS_DIR,
    IMS_RUNS,
    UNIT_REGEX,
    RunToFailure,
    load_cmapss_run,
    load_ims_run,
    load_run_csv,
)
from service.evaluation.record import recorded_model
from service.evaluation.runs import (
    PredictorSpec,
    Recording,
    add_predictor_arguments,
    predictor_spec,
)
from service.evaluation.runs import run as run_streams
from service.evaluation.stream import Trace

HOUR_MS = 3_600_000
#: The model of each kind of run-to-failure data (``--predictor`` and friends override it):
#: for IMS (and any vibration CSV) the one the selection procedure chose (``selection.json``;
#: without a record the bundled IMS LSTM, one engine per channel); for C-MAPSS the deviation
#: of each sensor from the unit's own first 30 cycles (standardised online, then frozen)
#: against a slow EWMA level.
CMAPSS_MODEL = PredictorSpec("ewma", level_rate=0.001, standardise=True, freeze_after=30)
MODELS: dict[str, PredictorSpec] = {
    "ims": recorded_model("ims", PredictorSpec("lstm")),
    "csv": recorded_model("ims", PredictorSpec("lstm")),
    "cmapss": recorded_model("cmapss", CMAPSS_MODEL),
}
#: Minimum lead (hours) per shipped IMS test: test 2's bearing 1 degrades for days.
IMS_MIN_LEAD_H = {"ims1": 24.0, "ims2": 72.0}
CMAPSS_MIN_DETECTED = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ims", nargs="+", choices=sorted(IMS_RUNS), default=None,
                        help="shipped IMS tests (default: both, when no other data is given)")
    parser.add_argument("--ims-dir", type=Path, default=IMS_DIR,
                        help="folder of the IMS CSVs (default: the shipped models/data/ims)")
    parser.add_argument("--data", type=Path, nargs="+", default=[],
                        help="run-to-failure CSVs (a time column, then channel columns)")
    parser.add_argument("--failing", nargs="+", default=[],
                        help="with --data: the units that fail at the end of the run")
    parser.add_argument("--unit-regex", default=UNIT_REGEX,
                        help="with --data: a regex whose 'unit' group names a column's unit "
                        f"(default {UNIT_REGEX!r}: 'Bearing 3 C1' -> 'Bearing 3')")
    parser.add_argument("--min-lead", type=float, default=24.0,
                        help="with --data: hours before the end the first alarm must come "
                        "(default 24)")
    parser.add_argument("--cmapss", type=Path, nargs="+", default=[],
                        help="C-MAPSS files (train_FD00x.txt, or test_FD00x.txt with --rul)")
    parser.add_argument("--rul", type=Path, nargs="+", default=[],
                        help="RUL files, one per --cmapss test file, in the same order")
    parser.add_argument("--healthy-rul", type=float, default=125.0,
                        help="C-MAPSS: alarms with more cycles than this left are false "
                        "(default 125)")
    parser.add_argument("--channels", nargs="+", default=None, metavar="CHANNEL",
                        help="keep only these channels of every unit (e.g. one C-MAPSS "
                        "sensor: --channels s11; default: all)")
    parser.add_argument("--one-engine", action="store_true",
                        help="all of a run's channels as one engine (a whole-machine model, "
                        "e.g. --model models/artifacts/ims1-8ch), its alarms attributed to "
                        "units by their channels' contributions (default: one engine per "
                        "unit)")
    parser.add_argument("--json", type=Path, help="also write the per-unit results here")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="also draw one unit's reading, prediction, score and status "
                        "over its run into this PNG (needs matplotlib: the train extra; "
                        "default: no picture)")
    parser.add_argument("--plot-unit", default=None, metavar="UNIT",
                        help="with --plot: the unit to draw, by name (default: the first "
                        "failing unit of the first run, e.g. 'Bearing 1' of ims2)")
    add_predictor_arguments(
        parser, MODELS["ims"],
        "Unset options keep each data set's model: for IMS and --data the one the selection "
        f"procedure chose ({MODELS['ims'].describe()}; a single-channel model runs one engine "
        "per channel, a unit's status the worst of its channels'), for C-MAPSS an EWMA level "
        "on sensors standardised against each unit's first 30 cycles.",
    )
    add_scoring_arguments(parser)


@dataclass(frozen=True)
class UnitOutcome:
    """One unit's alarms (times in hours since the start of its run; C-MAPSS: cycles)."""

    run: str
    unit: str
    fails: bool
    first_alarm: float | None  #: the first counted alarm (None: never)
    lead: float | None  #: end of life minus first_alarm (failing units)
    raises: int  #: alarm raises counted (C-MAPSS: after the healthy limit)
    #: failing unit in alarm at its last reading: end of life minus the start of that
    #: (final) alarm, which was held since; None otherwise
    final_lead: float | None
    held_from_first: bool  #: never cleared after the first counted alarm
    false_alarms: int  #: healthy unit: all its raises; C-MAPSS: raises with life left > limit
    #: the top contributing channels and their shares of the error at the first counted
    #: alarm (a multichannel engine; empty otherwise)
    top_at_first: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class RunOutcome:
    """A run's units and whether the targets hold."""

    run: str
    units: tuple[UnitOutcome, ...]
    passed: bool
    why: str  #: what failed, or "" when passed


#: Channels named at a unit's first alarm.
TOP_CHANNELS = 3


def one_engine(data: RunToFailure, spec: PredictorSpec) -> Recording:
    """All of ``data``'s channels, unit after unit, as one engine's stream. Raises
    UsageError when the units do not share their readings' times, or when an LSTM's
    channels are not the run's."""
    first = data.units[0]
    if any(not np.array_equal(u.ts_ms, first.ts_ms) for u in data.units):
        raise UsageError(f"--one-engine: the units of {data.name} are not read together")
    names = tuple(c for u in data.units for c in u.channels)
    if spec.predictor == "lstm":
        from service.evaluation.predictors import load_model

        have = load_model(spec.model).channels
        if tuple(have) != names:
            raise UsageError(f"--one-engine: the model's channels {list(have)} are not "
                             f"{data.name}'s {list(names)}")
    values = np.concatenate([u.values for u in data.units], axis=1)
    return Recording(data.name, values, first.ts_ms)


def attributed(data: RunToFailure, trace: Trace) -> list[Trace]:
    """Per-unit traces of a whole-run engine (:func:`one_engine`): each episode at warning
    or above goes to the unit whose channels hold the largest share of the error at its
    first alarm reading (its first reading, if it never reaches alarm); the other units
    are normal meanwhile (warmup while the engine commissions). Every unit's trace carries
    the engine's contributions."""
    assert trace.contributions is not None
    status = trace.status
    bounds = np.cumsum([0] + [len(u.channels) for u in data.units])
    per = [np.where(status == 0, 0, 1).astype(np.int8) for _ in data.units]
    high = status >= WARNING
    starts = np.flatnonzero(high & ~np.concatenate([[False], high[:-1]]))
    for start in starts:
        end = start + int(np.argmin(high[start:])) if not high[start:].all() else len(status)
        alarm = np.flatnonzero(status[start:end] >= ALARM)
        row = start + (int(alarm[0]) if alarm.size else 0)
        share = np.nan_to_num(trace.contributions[row])
        unit = int(np.argmax([share[a:b].sum() for a, b in itertools.pairwise(bounds)]))
        per[unit][start:end] = status[start:end]
    return [replace(trace, status=st, changed=st != np.concatenate([[0], st[:-1]]))
            for st in per]


def recordings(data: RunToFailure, spec: PredictorSpec) -> tuple[list[Recording], list[int]]:
    """The streams to run for ``data``: one per unit, or one per channel when the model
    takes fewer channels than the units have (a single-channel LSTM); and the unit of each."""
    recs: list[Recording] = []
    owner: list[int] = []
    split = spec.predictor == "lstm" and any(u.values.shape[1] > 1 for u in data.units)
    if split:
        from service.evaluation.predictors import load_model

        split = len(load_model(spec.model).channels) == 1
    for k, u in enumerate(data.units):
        if split:
            for c, ch in enumerate(u.channels):
                recs.append(Recording(f"{u.name}/{ch}", u.values[:, c : c + 1], u.ts_ms))
                owner.append(k)
        else:
            recs.append(Recording(u.name, u.values, u.ts_ms))
            owner.append(k)
    return recs, owner


def unit_status(traces: Sequence[Trace], owner: Sequence[int], k: int) -> np.ndarray:
    """Unit ``k``'s status per reading: the worst of its streams'."""
    mine = [t.status for t, o in zip(traces, owner, strict=True) if o == k]
    worst: np.ndarray = np.max(np.stack(mine), axis=0)
    return worst


def top_channels(names: Sequence[str], share: np.ndarray) -> tuple[tuple[str, float], ...]:
    """The :data:`TOP_CHANNELS` largest shares of one reading, largest first."""
    order = np.argsort(-np.nan_to_num(share), kind="stable")[:TOP_CHANNELS]
    return tuple((names[i], round(float(share[i]), 3)) for i in order)


def _unit_shares(
    data: RunToFailure, traces: Sequence[Trace], owner: Sequence[int], k: int
) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Unit ``k``'s channel names and per-reading shares: its own stream's when it is one
    multichannel stream, the whole-run engine's when every unit shares one; else None."""
    mine = [t for t, o in zip(traces, owner, strict=True) if o == k]
    if len(mine) != 1 or mine[0].contributions is None:
        return (), None
    shares = mine[0].contributions
    if shares.shape[1] == len(data.units[k].channels):
        return data.units[k].channels, shares
    return tuple(c for u in data.units for c in u.channels), shares


def outcomes(
    data: RunToFailure, traces: Sequence[Trace], owner: Sequence[int], min_lead_h: float
) -> RunOutcome:
    """Per-unit alarms of ``data`` from the traces of its streams, and the targets."""
    units = []
    start = min(int(u.ts_ms[0]) for u in data.units)
    for k, u in enumerate(data.units):
        status = unit_status(traces, owner, k)
        names, shares = _unit_shares(data, traces, owner, k)
        hours = (u.ts_ms - start) / HOUR_MS
        left = (u.end_ms - u.ts_ms) / HOUR_MS
        rows = np.flatnonzero(onsets(Trace(status * 0.0, status.astype(np.int8), status * 0.0,
                                           status * 0.0, status * False)))
        if data.healthy_rul_h is not None:
            early = rows[left[rows] > data.healthy_rul_h]
            counted = rows[left[rows] <= data.healthy_rul_h]
            false = int(early.size)
        else:
            counted = rows
            false = 0 if u.fails else int(rows.size)
        first = int(counted[0]) if counted.size else None
        from_first = first is not None and bool(np.all(status[first:] >= ALARM))
        final = None
        if u.fails and counted.size and status[-1] >= ALARM:
            final = float(left[int(counted[-1])])
        top = top_channels(names, shares[first]) if shares is not None and first is not None \
            else ()
        units.append(UnitOutcome(
            data.name, u.name, u.fails,
            None if first is None else float(hours[first]),
            None if first is None or not u.fails else float(left[first]),
            int(counted.size), final, from_first, false, top,
        ))
    return RunOutcome(data.name, tuple(units), *_targets(data, units, min_lead_h))


def _targets(
    data: RunToFailure, units: Sequence[UnitOutcome], min_lead_h: float
) -> tuple[bool, str]:
    if data.healthy_rul_h is not None:
        detected = sum(u.lead is not None for u in units)
        early = sum(u.false_alarms > 0 for u in units)
        why = []
        if detected < CMAPSS_MIN_DETECTED * len(units):
            why.append(f"{detected}/{len(units)} detected")
        if early:
            why.append(f"{early} alarmed with more than {data.healthy_rul_h:g} h left")
        return not why, "; ".join(why)
    why = []
    firsts = [u.first_alarm for u in units if u.fails and u.first_alarm is not None]
    first_fail = min(firsts, default=float("inf"))
    for u in units:
        if u.fails and (u.lead is None or u.lead < min_lead_h):
            why.append(f"{u.unit} not alarmed {min_lead_h:g} h ahead")
        elif u.fails and (u.final_lead is None or u.final_lead < min_lead_h):
            why.append(f"{u.unit} alarm not held for the last {min_lead_h:g} h")
        if not u.fails and u.first_alarm is not None and u.first_alarm < first_fail:
            why.append(f"healthy {u.unit} alarmed first")
    return not why, "; ".join(why)


@dataclass(frozen=True)
class EvaluatedRun:
    """A run's outcome and the traces it was computed from (one per stream, ``owner[i]``
    the index of stream ``i``'s unit)."""

    outcome: RunOutcome
    traces: tuple[Trace, ...]
    owner: tuple[int, ...]

    def unit_traces(self, k: int) -> list[Trace]:
        """The traces of unit ``k``'s streams."""
        return [t for t, o in zip(self.traces, self.owner, strict=True) if o == k]


def evaluate_run(
    data: RunToFailure, spec: PredictorSpec, settings: ScoringSettings, min_lead_h: float,
    whole: bool = False,
) -> EvaluatedRun:
    """Stream ``data`` through ``spec`` and ``settings``; its outcome and traces. ``whole``:
    all its channels as one engine (:func:`one_engine`, :func:`attributed`)."""
    if whole:
        (trace,) = run_streams(spec, settings, [one_engine(data, spec)])
        if trace.contributions is None:
            raise UsageError("--one-engine needs a model of several channels")
        traces = attributed(data, trace)
        owner = list(range(len(data.units)))
    else:
        recs, owner = recordings(data, spec)
        traces = run_streams(spec, settings, recs)
    return EvaluatedRun(outcomes(data, traces, owner, min_lead_h), tuple(traces), tuple(owner))


def report(result: RunOutcome) -> None:
    """Print one run's table (units with controls) or summary (C-MAPSS)."""
    verdict = "targets met" if result.passed else f"targets missed: {result.why}"
    if any(not u.fails for u in result.units):
        out(f"{result.run}: first alarm (h into the run), lead before the end (h); {verdict}")
        out(f"  {'unit':<12} {'fails':>5} {'first alarm':>12} {'lead':>8} {'raises':>7} "
            f"{'held for':>9} {'false':>6}")
        for e in result.units:
            first = "-" if e.first_alarm is None else f"{e.first_alarm:.1f}"
            ahead = "-" if e.lead is None else f"{e.lead:.1f}"
            final = "-" if e.final_lead is None else f"{e.final_lead:.1f}"
            out(f"  {e.unit:<12} {e.fails!s:>5} {first:>12} {ahead:>8} {e.raises:>7} "
                f"{final:>9} {e.false_alarms:>6}")
        tops = [(e.unit, e.top_at_first) for e in result.units if e.top_at_first]
        if tops:
            out("  top contributors at each unit's first alarm (share of the error):")
            for unit, top in tops:
                out(f"    {unit:<12} " + ", ".join(f"{c} {100 * v:.0f}%" for c, v in top))
        return
    leads = np.array([u.lead for u in result.units if u.lead is not None])
    out(f"{result.run}: {len(result.units)} units (1 cycle = 1 h); {verdict}")
    if leads.size:
        q = np.percentile(leads, [25, 50, 75])
        out(f"  detected {leads.size}/{len(result.units)}; lead (cycles): median {q[1]:.0f}, "
            f"IQR {q[0]:.0f}-{q[2]:.0f}, min {leads.min():.0f}, max {leads.max():.0f}")
    early = [u for u in result.units if u.false_alarms]
    held = sum(u.final_lead is not None for u in result.units)
    out(f"  alarms held to the last reading: {held}/{leads.size}; early alarms (more than "
        f"the healthy limit left): {sum(u.false_alarms for u in early)} on {len(early)} units")
    at_first = [u.top_at_first for u in result.units if u.top_at_first]
    if at_first:
        counts = Counter(t[0][0] for t in at_first)
        out(f"  top contributor at the first alarm of the {len(at_first)} detected units: "
            + ", ".join(f"{c} {n}" for c, n in counts.most_common()))


def run_datasets(args: argparse.Namespace) -> list[tuple[RunToFailure, str, float]]:
    """The data sets the command line names: (data, model kind, minimum lead)."""
    chosen: list[tuple[RunToFailure, str, float]] = []
    ims = args.ims if args.ims is not None else ([] if args.data or args.cmapss else
                                                 sorted(IMS_RUNS))
    for key in ims:
        existing(args.ims_dir / IMS_RUNS[key][0], "--ims-dir")
        chosen.append((load_ims_run(key, args.ims_dir), "ims", IMS_MIN_LEAD_H[key]))
    if args.data and not args.failing:
        raise SystemExit("--data needs --failing UNIT... (the units that fail)")
    for path in args.data:
        chosen.append((load_run_csv(existing(path, "--data"), args.failing, args.unit_regex),
                       "csv", args.min_lead))
    if args.rul and len(args.rul) != len(args.cmapss):
        raise SystemExit("give one --rul file per --cmapss test file")
    for i, path in enumerate(args.cmapss):
        rul = existing(args.rul[i], "--rul") if args.rul else None
        chosen.append((load_cmapss_run(existing(path, "--cmapss"), rul, args.healthy_rul),
                       "cmapss", 0.0))
    if args.channels:
        chosen = [(keep_channels(d, args.channels), kind, lead) for d, kind, lead in chosen]
    return chosen


def keep_channels(data: RunToFailure, channels: Sequence[str]) -> RunToFailure:
    """``data`` with only ``channels`` of every unit (units left without one are dropped);
    UsageError naming the known channels when one is in no unit."""
    known = [c for u in data.units for c in u.channels]
    unknown = [c for c in channels if c not in known]
    if unknown:
        raise UsageError(f"--channels: no {unknown} in {data.name} (its channels: "
                         f"{', '.join(dict.fromkeys(known))})")
    units = []
    for u in data.units:
        ks = [k for k, c in enumerate(u.channels) if c in channels]
        if ks:
            units.append(replace(u, channels=tuple(u.channels[k] for k in ks),
                                 values=u.values[:, ks]))
    return replace(data, units=tuple(units))


def plot_target(
    chosen: Sequence[tuple[RunToFailure, str, float]], name: str | None
) -> tuple[int, int]:
    """(run, unit) indices of the unit ``--plot-unit`` names (the first run that has it), or
    by default the first failing unit of the first run; exits naming the units otherwise."""
    for r, (data, _, _) in enumerate(chosen):
        for k, u in enumerate(data.units):
            if (u.name == name) if name is not None else u.fails:
                return r, k
    if name is None and chosen and chosen[0][0].units:
        return 0, 0
    known = ", ".join(dict.fromkeys(u.name for d, _, _ in chosen for u in d.units))
    raise UsageError(f"--plot-unit: no unit {name!r} in the data (units: {known})")


def draw(path: Path, data: RunToFailure, unit: int, evaluated: EvaluatedRun,
         spec: PredictorSpec, settings: ScoringSettings) -> None:
    """Write the picture of ``data``'s unit ``unit`` (``--plot``) and say where it went."""
    from service.evaluation.unit_plot import draw_unit

    outcome = evaluated.outcome.units[unit]
    draw_unit(path, data, unit, evaluated.unit_traces(unit), settings, outcome.first_alarm,
              f"model {spec.describe()}; scoring {settings.scorer}")
    out(f"picture of {data.name} {outcome.unit}: {path}")


def run(args: argparse.Namespace) -> int:
    settings = scoring_settings(args)
    chosen = run_datasets(args)
    target = None
    if args.plot is not None:
        # matplotlib (the train extra) is checked before minutes of streaming, not after
        import service.evaluation.unit_plot  # noqa: F401

        if not args.plot.parent.is_dir():
            raise UsageError(f"--plot: no folder {args.plot.parent} for the picture")
        target = plot_target(chosen, args.plot_unit)
    results = []
    for r, (data, kind, min_lead) in enumerate(chosen):
        spec = predictor_spec(args, MODELS[kind])
        out(f"# {data.name}: model {spec.describe()}")
        evaluated = evaluate_run(data, spec, settings, min_lead, args.one_engine)
        report(evaluated.outcome)
        results.append(evaluated.outcome)
        if target is not None and target[0] == r:
            draw(args.plot, data, target[1], evaluated, spec, settings)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0

