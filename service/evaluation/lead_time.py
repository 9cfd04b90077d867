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

``--plot PATH`` also draws one unit (``--plot-unit``; default the first failing unit of the
first run) over its run: reading and prediction, score and levels, status, with the first
alarm and the end of life marked (:mod:`service.evaluation.unit_plot`; needs matplotlib,
from the ``train`` extra).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from service.config import ScoringSettings
from service.errors import UsageError
from service.evaluation.common import (
    ALARM,
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


@dataclass(frozen=True)
class RunOutcome:
    """A run's units and whether the targets hold."""

    run: str
    units: tuple[UnitOutcome, ...]
    passed: bool
    why: str  #: what failed, or "" when passed


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


def outcomes(
    data: RunToFailure, traces: Sequence[Trace], owner: Sequence[int], min_lead_h: float
) -> RunOutcome:
    """Per-unit alarms of ``data`` from the traces of its streams, and the targets."""
    units = []
    start = min(int(u.ts_ms[0]) for u in data.units)
    for k, u in enumerate(data.units):
        status = unit_status(traces, owner, k)
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
        units.append(UnitOutcome(
            data.name, u.name, u.fails,
            None if first is None else float(hours[first]),
            None if first is None or not u.fails else float(left[first]),
            int(counted.size), final, from_first, false,
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
    data: RunToFailure, spec: PredictorSpec, settings: ScoringSettings, min_lead_h: float
) -> EvaluatedRun:
    """Stream ``data`` through ``spec`` and ``settings``; its outcome and traces."""
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
    return chosen


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
        evaluated = evaluate_run(data, spec, settings, min_lead)
        report(evaluated.outcome)
        results.append(evaluated.outcome)
        if target is not None and target[0] == r:
            draw(args.plot, data, target[1], evaluated, spec, settings)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0

