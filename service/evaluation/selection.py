"""``vibewatch evaluate select``: the committed selection procedure for the scoring defaults.

It never scores a unit with settings chosen on that unit. Candidates are a small grid of
``ScoringSettings`` (:data:`GRIDS`) and, per data set, a few models; every candidate is run
on every data set once, and then, for each held-out fold, the candidate is chosen on
everything else:

* NAB (nab-dev): leave one category out. The NAB detection threshold is a setting too: it
  is chosen on the training categories and applied to the held-out one. artificialNoAnomaly
  has no windows, but its false positives count in the pooled total.
* IMS: leave one run out (tests 1 and 2).
* C-MAPSS FD001: folds of engines (unit number modulo ``--folds``).
* The simulator (``vibewatch evaluate simulated``): its targets on one seeded fleet are part
  of every training set; the held-out figure is another seed's fleet.

The choice on a training set is lexicographic: first the fewest targets missed on its IMS
runs, C-MAPSS units and the simulated fleet (issue 12's targets), then the highest NAB
standard score on its NAB files at their best threshold, then the grid's order. The
headline figures are the held-out ones, pooled over folds; the candidate chosen on
everything becomes the service's defaults (in-sample figures are reported as such). The
run is recorded in ``service/evaluation/selection.json``, and a test checks that
``ScoringSettings``' defaults are the recorded choice.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.config import ScoringSettings
from service.evaluation.common import (
    ALARM,
    event_scores,
    existing,
    onsets,
    out,
    progress,
)
from service.evaluation.datasets import (
    IMS_DIR,
    IMS_RUNS,
    NabStream,
    RunToFailure,
    daily_period,
    load_cmapss_run,
    load_ims_run,
    load_nab_corpus,
)
from service.evaluation.lead_time import (
    CMAPSS_MIN_DETECTED,
    CMAPSS_MODEL,
    IMS_MIN_LEAD_H,
    RunOutcome,
    UnitOutcome,
    outcomes,
    recordings,
)
from service.evaluation.nab_data import read_result_column, result_path
from service.evaluation.nab_score import (
    PROFILES,
    LabeledFile,
    normalised,
    optimise_threshold,
    score_file,
)
from service.evaluation.record import RECORD
from service.evaluation.runs import PredictorSpec, Recorded, Recording, record, score
from service.evaluation.simulated import MODEL as SIM_MODEL
from service.evaluation.simulated import Scenario, SimOutcome
from service.evaluation.simulated import outcomes as sim_outcomes
from service.evaluation.simulated import recordings as sim_recordings

FloatArray = npt.NDArray[np.float64]

#: Settings the grid does not vary, and why they are what they are (docs/scoring.md).
FIXED: dict[str, Any] = {
    # ten minutes of every new engine, and at least 30 readings (statistics need samples);
    # a model that needs longer (a seasonal one: a day) extends it
    "commission_s": 600.0,
    "commission_readings": 30,
    # a week of memory for what is normal (HTM remembers ~30 days of 5-minute readings)
    "baseline_s": 7 * 86_400.0,
    "clear_score": 0.1,
    "spike_floor": 60.0,
    "spike_s": 86_400.0,
    # several sensors of one unit are pooled (C-MAPSS: the maximum of 14 separately scored
    # sensors raises early alarms on most engines)
    "channel_reduce": "rms",
    "joint_shrinkage": 0.1,
    "telemanom_window": 100,
}
#: What the grid varies, each for a reason: the scorer (spikes seen apart or not), the
#: evidence pooled before scoring, the readings needed to raise, the quiet time that clears,
#: and the alarm level.
AXES: dict[str, tuple[Any, ...]] = {
    "scorer": ("likelihood", "likelihood-spikes"),
    "smoothing": (0.5, 0.2, 0.1),
    "hold_readings": (3, 1),
    "clear_s": (3_600.0, 21_600.0),
    "levels": ((0.25, 0.3), (0.3, 0.5)),
    "episode_readings": (10.0, 100.0),
}


def _grid(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    grid = []
    for values in itertools.product(*axes.values()):
        c = dict(FIXED)
        for name, v in zip(axes, values, strict=True):
            if name == "levels":
                c["warning_score"], c["alarm_score"] = v
            else:
                c[name] = v
        grid.append(c)
    return grid


GRIDS: dict[str, list[dict[str, Any]]] = {
    "full": _grid(AXES),
    # two candidates, for a run in seconds (the tests)
    "quick": _grid({"scorer": ("likelihood",), "smoothing": (0.5,), "hold_readings": (3, 1),
                    "clear_s": (3_600.0,), "levels": ((0.25, 0.3),),
                    "episode_readings": (10.0,)}),
}
#: The models tried per data set (the predictor is the data set's model, docs/scoring.md).
NAB_MODELS: dict[str, PredictorSpec] = {
    "seasonal": PredictorSpec("seasonal", level_rate=0.01, season_rate=0.2, range_tolerance=0.1),
    "seasonal-robust": PredictorSpec(
        "seasonal", level_rate=0.01, season_rate=0.2, range_tolerance=0.1, robust=3.0
    ),
}
IMS_MODELS: dict[str, PredictorSpec] = {
    "lstm": PredictorSpec("lstm"),
    "ewma": PredictorSpec("ewma", level_rate=0.001),
}
#: The simulated fleet's target: every fault alarmed within five minutes of its onset.
SIM_MAX_DELAY_S = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nab", type=Path, help="NAB-layout directory (e.g. nab-dev)")
    parser.add_argument("--cmapss", type=Path, help="C-MAPSS training file (train_FD001.txt)")
    parser.add_argument("--ims-dir", type=Path, default=IMS_DIR,
                        help="folder of the IMS CSVs (default: the shipped models/data/ims)")
    parser.add_argument("--skip", nargs="+", choices=("nab", "ims", "cmapss", "simulated"),
                        default=[], help="leave data sets out (the full procedure uses all)")
    parser.add_argument("--sim-readings", type=int, default=Scenario().readings,
                        help=f"readings per simulated engine (default {Scenario().readings})")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full",
                        help=f"candidates: full ({len(GRIDS['full'])}) or quick "
                        f"({len(GRIDS['quick'])}, seconds; default full)")
    parser.add_argument("--folds", type=int, default=5, help="C-MAPSS folds (default 5)")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument("--record", action="store_true",
                        help=f"write the report to {RECORD.name}, the committed record the "
                        "service's defaults must match (full grid, all data sets)")


@dataclass
class Data:
    """The data sets in play and what every (candidate, model) did on them."""

    nab: list[NabStream] = field(default_factory=list)
    ims: list[RunToFailure] = field(default_factory=list)
    cmapss: RunToFailure | None = None
    #: [candidate][nab model] -> event scores per NAB file
    nab_events: list[dict[str, list[FloatArray]]] = field(default_factory=list)
    #: [candidate][nab model] -> alarm onsets per NAB file
    nab_alarms: list[dict[str, list[FloatArray]]] = field(default_factory=list)
    #: [candidate][ims model] -> outcome per run
    ims_out: list[dict[str, list[RunOutcome]]] = field(default_factory=list)
    #: [candidate] -> C-MAPSS unit outcomes
    cmapss_units: list[tuple[UnitOutcome, ...]] = field(default_factory=list)
    #: simulated fleets: the training one (seed 0) and the held-out one (seed 1)
    sims: list[Scenario] = field(default_factory=list)
    #: [candidate] -> outcome per simulated fleet
    sim_out: list[list[SimOutcome]] = field(default_factory=list)


@dataclass(frozen=True)
class Fold:
    """A training set: indices of NAB files, IMS runs and C-MAPSS units."""

    nab: tuple[int, ...]
    ims: tuple[int, ...]
    cmapss: tuple[int, ...]


@dataclass(frozen=True)
class Choice:
    candidate: int
    nab_model: str | None
    ims_model: str | None
    missed: int  #: run-to-failure targets missed on the training set
    nab_standard: float | None  #: on the training NAB files, at their best threshold


def load(args: argparse.Namespace) -> Data:
    data = Data()
    if "nab" not in args.skip:
        if args.nab is None:
            raise SystemExit("pass the NAB corpus with --nab DIR (or --skip nab)")
        data.nab = load_nab_corpus(existing(args.nab, "--nab"))
    if "ims" not in args.skip:
        for key in sorted(IMS_RUNS):
            existing(args.ims_dir / IMS_RUNS[key][0], "--ims-dir")
            data.ims.append(load_ims_run(key, args.ims_dir))
    if "cmapss" not in args.skip:
        if args.cmapss is None:
            raise SystemExit("pass C-MAPSS with --cmapss train_FD001.txt (or --skip cmapss)")
        data.cmapss = load_cmapss_run(existing(args.cmapss, "--cmapss"))
    if "simulated" not in args.skip:
        data.sims = [Scenario(readings=args.sim_readings, seed=seed) for seed in (0, 1)]
    return data


def run_grid(data: Data, grid: Sequence[dict[str, Any]], models: int | None = None) -> None:
    """Record every model once (the first ``models`` of each data set's), then score every
    candidate on every data set."""
    nab_rec: dict[str, Recorded] = {}
    recs = [Recording(s.name, s.file.values[:, None], s.ts_ms,
                      daily_period(s.ts_ms, s.file.labeled.n_rows)) for s in data.nab]
    for name, spec in list(NAB_MODELS.items())[:models] if data.nab else ():
        out(f"recording NAB residuals, model {name} ...")
        nab_rec[name] = record(spec, recs)
    ims_rec: dict[str, list[tuple[Recorded, list[int]]]] = {}
    for name, spec in list(IMS_MODELS.items())[:models] if data.ims else ():
        out(f"recording IMS residuals, model {name} ...")
        ims_rec[name] = []
        for r in data.ims:
            rs, owner = recordings(r, spec)
            ims_rec[name].append((record(spec, rs), owner))
    cm_rec = None
    if data.cmapss is not None:
        out("recording C-MAPSS residuals ...")
        cm_rs, cm_owner = recordings(data.cmapss, CMAPSS_MODEL)
        cm_rec = record(CMAPSS_MODEL, cm_rs)
    sim_rec = []
    for sc in data.sims:
        out(f"recording simulated fleet residuals, seed {sc.seed} ...")
        ids, rs = sim_recordings(sc)
        sim_rec.append((ids, record(SIM_MODEL, rs)))
    for cand in progress(grid, "candidates"):
        settings = ScoringSettings(**cand)
        ev: dict[str, list[FloatArray]] = {}
        al: dict[str, list[FloatArray]] = {}
        for name, rec in nab_rec.items():
            traces = score(settings, rec)
            ev[name] = [event_scores(t) for t in traces]
            al[name] = [onsets(t, ALARM).astype(np.float64) for t in traces]
        data.nab_events.append(ev)
        data.nab_alarms.append(al)
        data.ims_out.append({
            name: [outcomes(r, score(settings, rec), owner, IMS_MIN_LEAD_H[r.name])
                   for r, (rec, owner) in zip(data.ims, runs, strict=True)]
            for name, runs in ims_rec.items()
        })
        if cm_rec is not None and data.cmapss is not None:
            data.cmapss_units.append(
                outcomes(data.cmapss, score(settings, cm_rec), cm_owner, 0.0).units
            )
        data.sim_out.append([
            sim_outcomes(sc, ids, score(settings, rec), SIM_MAX_DELAY_S)
            for sc, (ids, rec) in zip(data.sims, sim_rec, strict=True)
        ])


def cmapss_passes(units: Sequence[UnitOutcome]) -> bool:
    """C-MAPSS target on these units: >= 95 % detected, none alarmed early."""
    detected = sum(u.lead is not None for u in units)
    return detected >= CMAPSS_MIN_DETECTED * len(units) and not any(u.false_alarms for u in units)


class Selector:
    """Chooses candidates on training folds (memoised NAB scores per file subset)."""

    def __init__(self, data: Data, grid: Sequence[dict[str, Any]]) -> None:
        self.data = data
        self.grid = grid
        self._nab: dict[tuple[int, str, tuple[int, ...]], float] = {}

    def nab_standard(self, c: int, model: str, files: tuple[int, ...]) -> float:
        key = (c, model, files)
        if key not in self._nab:
            labs = [self.data.nab[i].file.labeled for i in files]
            cols = [self.data.nab_events[c][model][i] for i in files]
            p = PROFILES["standard"]
            _, total = optimise_threshold(labs, cols, p)
            self._nab[key] = normalised(total, sum(len(f.windows) for f in labs), p)
        return self._nab[key]

    def choose(self, fold: Fold) -> Choice:
        best: tuple[Any, ...] | None = None
        choice = None
        for c in range(len(self.grid)):
            missed, ims_model = 0, None
            if fold.ims:
                per_model = {
                    m: sum(not self.data.ims_out[c][m][r].passed for r in fold.ims)
                    for m in self.data.ims_out[c]
                }
                ims_model = min(per_model, key=lambda m: per_model[m])  # first of equals
                missed += per_model[ims_model]
            if fold.cmapss:
                units = [self.data.cmapss_units[c][i] for i in fold.cmapss]
                missed += 0 if cmapss_passes(units) else 1
            if self.data.sim_out and self.data.sim_out[c]:
                missed += 0 if self.data.sim_out[c][0].passed else 1
            nab_model, nab = None, None
            if fold.nab:
                scores = {m: self.nab_standard(c, m, fold.nab) for m in self.data.nab_events[c]}
                nab_model = max(scores, key=lambda m: scores[m])
                nab = scores[nab_model]
            key = (missed, -(nab if nab is not None else 0.0), c)
            if best is None or key < best:
                best, choice = key, Choice(c, nab_model, ims_model, missed, nab)
        assert choice is not None
        return choice


def folds(data: Data, n_folds: int) -> dict[str, Any]:
    """Every held-out fold's training set, by data set."""
    all_nab = tuple(range(len(data.nab)))
    all_ims = tuple(range(len(data.ims)))
    all_cm = tuple(range(len(data.cmapss.units))) if data.cmapss else ()
    cats = sorted({s.category for s in data.nab})
    return {
        "nab": {c: Fold(tuple(i for i, s in enumerate(data.nab) if s.category != c),
                        all_ims, all_cm) for c in cats},
        "ims": {data.ims[r].name: Fold(all_nab, tuple(i for i in all_ims if i != r), all_cm)
                for r in all_ims},
        "cmapss": {f"fold-{k}": Fold(all_nab, all_ims,
                                     tuple(i for i in all_cm if i % n_folds != k))
                   for k in range(n_folds)} if all_cm else {},
        "all": Fold(all_nab, all_ims, all_cm),
    }


def nab_pooled(
    data: Data, chosen: Mapping[str, tuple[Choice, Fold]], alarms: bool = False
) -> dict[str, Any]:
    """Held-out NAB: each category scored with its fold's choice and, per profile, the
    threshold best on its training categories (alarms: raises to alarm, threshold 1)."""
    result: dict[str, Any] = {}
    n_windows = sum(len(s.file.labeled.windows) for s in data.nab)
    for pname, profile in PROFILES.items():
        total = 0.0
        per_cat = {}
        for cat, (ch, fold) in chosen.items():
            assert ch.nab_model is not None
            table = data.nab_alarms if alarms else data.nab_events
            cols = table[ch.candidate][ch.nab_model]
            if alarms:
                threshold = 1.0
            else:
                threshold, _ = optimise_threshold(
                    [data.nab[i].file.labeled for i in fold.nab], [cols[i] for i in fold.nab],
                    profile,
                )
            test = [i for i, s in enumerate(data.nab) if s.category == cat]
            got = sum(score_file(data.nab[i].file.labeled, cols[i], profile, threshold).score
                      for i in test)
            per_cat[cat] = {"raw": got, "threshold": threshold}
            total += got
        result[pname] = {"normalised": normalised(total, n_windows, profile), "raw": total,
                         "categories": per_cat}
    return result


def nab_in_sample(data: Data, ch: Choice) -> dict[str, Any]:
    """NAB with one candidate on every file, threshold best on all of them (in-sample)."""
    assert ch.nab_model is not None
    labs = [s.file.labeled for s in data.nab]
    cols = data.nab_events[ch.candidate][ch.nab_model]
    result: dict[str, Any] = {}
    for pname, profile in PROFILES.items():
        threshold, total = optimise_threshold(labs, cols, profile)
        result[pname] = {"normalised": normalised(total, sum(len(f.windows) for f in labs),
                                                  profile), "threshold": threshold}
    alarm_cols = data.nab_alarms[ch.candidate][ch.nab_model]
    result["alarms_standard"] = _fixed(labs, alarm_cols)
    return result


def _fixed(labs: Sequence[LabeledFile], cols: Sequence[FloatArray]) -> float:
    p = PROFILES["standard"]
    total = sum(score_file(f, c, p, 1.0).score for f, c in zip(labs, cols, strict=True))
    return normalised(total, sum(len(f.windows) for f in labs), p)


def references(nab_dir: Path, data: Data) -> dict[str, Any]:
    """The reference detectors shipped with nab-dev, scored like-for-like: in-sample
    threshold, and thresholds chosen leaving each category out."""
    ref = nab_dir / "reference"
    result: dict[str, Any] = {}
    if not ref.is_dir():
        return result
    labs = [s.file.labeled for s in data.nab]
    cats = sorted({s.category for s in data.nab})
    n_windows = sum(len(f.windows) for f in labs)
    for det in sorted(p.name for p in ref.iterdir() if p.is_dir()):
        cols = [read_result_column(result_path(ref, det, s.name), "anomaly_score")
                for s in data.nab]
        row: dict[str, Any] = {}
        for pname, profile in PROFILES.items():
            _, ins = optimise_threshold(labs, cols, profile)
            total = 0.0
            for cat in cats:
                train = [i for i, s in enumerate(data.nab) if s.category != cat]
                th, _ = optimise_threshold([labs[i] for i in train], [cols[i] for i in train],
                                           profile)
                total += sum(score_file(labs[i], cols[i], profile, th).score
                             for i, s in enumerate(data.nab) if s.category == cat)
            row[pname] = {"in_sample": normalised(ins, n_windows, profile),
                          "held_out": normalised(total, n_windows, profile)}
        result[det] = row
    return result


def _units(units: Sequence[UnitOutcome]) -> dict[str, Any]:
    leads = np.array([u.lead for u in units if u.lead is not None])
    return {
        "units": len(units),
        "detected": int(leads.size),
        "early": sum(u.false_alarms > 0 for u in units),
        "held": sum(u.final_lead is not None for u in units),
        "lead_median": float(np.median(leads)) if leads.size else None,
        "lead_iqr": [float(x) for x in np.percentile(leads, [25, 75])] if leads.size else None,
        "passed": cmapss_passes(units),
    }


def select(data: Data, grid: Sequence[dict[str, Any]], n_folds: int,
           nab_dir: Path | None, models: int | None = None) -> dict[str, Any]:
    """The whole procedure on loaded data; the report."""
    t0 = time.monotonic()
    run_grid(data, grid, models)
    sel = Selector(data, grid)
    fs = folds(data, n_folds)
    report: dict[str, Any] = {"grid_size": len(grid), "fixed": FIXED,
                              "axes": {k: list(v) for k, v in AXES.items()}}

    def describe(ch: Choice) -> dict[str, Any]:
        return {"candidate": ch.candidate, "settings": _varied(grid[ch.candidate]),
                "nab_model": ch.nab_model, "ims_model": ch.ims_model,
                "train_missed": ch.missed, "train_nab_standard": ch.nab_standard}

    held: dict[str, Any] = {}
    if data.nab:
        chosen = {cat: (sel.choose(f), f) for cat, f in fs["nab"].items()}
        held["nab"] = nab_pooled(data, chosen)
        held["nab"]["alarms_standard"] = nab_pooled(data, chosen, alarms=True)["standard"]
        held["nab"]["choices"] = {cat: describe(ch) for cat, (ch, _) in chosen.items()}
    if data.ims:
        held["ims"] = {}
        for name, f in fs["ims"].items():
            ch = sel.choose(f)
            r = next(i for i, x in enumerate(data.ims) if x.name == name)
            assert ch.ims_model is not None
            res = data.ims_out[ch.candidate][ch.ims_model][r]
            held["ims"][name] = {"choice": describe(ch), "passed": res.passed, "why": res.why,
                                 "units": [asdict(u) for u in res.units]}
    if data.cmapss is not None:
        units: list[UnitOutcome] = []
        choices = {}
        for k, (name, f) in enumerate(fs["cmapss"].items()):
            ch = sel.choose(f)
            choices[name] = describe(ch)
            units += [u for i, u in enumerate(data.cmapss_units[ch.candidate])
                      if i % n_folds == k]
        held["cmapss"] = _units(units) | {"choices": choices}
    report["held_out"] = held

    final = sel.choose(fs["all"])
    ins: dict[str, Any] = {"choice": describe(final)}
    if data.nab:
        ins["nab"] = nab_in_sample(data, final)
    if data.ims:
        m = final.ims_model or next(iter(IMS_MODELS))
        ins["ims"] = {r.name: {"passed": o.passed, "why": o.why,
                               "units": [asdict(u) for u in o.units]}
                      for r, o in zip(data.ims, data.ims_out[final.candidate][m], strict=True)}
    if data.cmapss is not None:
        ins["cmapss"] = _units(data.cmapss_units[final.candidate])
    if data.sims:
        held["simulated"] = _sim(data.sim_out[final.candidate][1], data.sims[1])
        ins["simulated"] = _sim(data.sim_out[final.candidate][0], data.sims[0])
    report["in_sample"] = ins
    report["candidates"] = candidate_table(data, sel, fs["all"])
    report["defaults"] = {k: grid[final.candidate][k] for k in ScoringSettings.model_fields}
    report["models"] = {
        "nab": _spec(NAB_MODELS[final.nab_model]) if final.nab_model else None,
        "ims": _spec(IMS_MODELS[final.ims_model]) if final.ims_model else None,
        "cmapss": _spec(CMAPSS_MODEL) if data.cmapss is not None else None,
    }
    if nab_dir is not None and data.nab:
        report["references"] = references(nab_dir, data)
    report["seconds"] = round(time.monotonic() - t0, 1)
    return report


def candidate_table(data: Data, sel: Selector, everything: Fold) -> list[dict[str, Any]]:
    """Every candidate on all the data (in-sample): the targets it misses and its NAB
    standard score, for the docs' account of what helped."""
    rows = []
    for c, cand in enumerate(sel.grid):
        missed = []
        for m in data.ims_out[c] if data.ims_out else {}:
            for r, o in zip(data.ims, data.ims_out[c][m], strict=True):
                if not o.passed:
                    missed.append(f"{r.name}/{m}")
        if data.cmapss_units and not cmapss_passes(data.cmapss_units[c]):
            missed.append("cmapss")
        if data.sim_out and data.sim_out[c] and not data.sim_out[c][0].passed:
            missed.append("simulated")
        nab = {m: round(sel.nab_standard(c, m, everything.nab), 2)
               for m in (data.nab_events[c] if data.nab_events else {})} if everything.nab else {}
        rows.append({"candidate": c, "settings": _varied(cand), "missed": missed, "nab": nab})
    return rows


def _sim(o: SimOutcome, sc: Scenario) -> dict[str, Any]:
    return {"seed": sc.seed, "passed": o.passed, "why": o.why,
            "episodes": [asdict(e) for e in o.episodes], "healthy_alarms": o.healthy_alarms}


def _varied(c: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in c.items() if k not in FIXED}


_ROOT = Path(__file__).resolve().parents[2]


def _spec(spec: PredictorSpec) -> dict[str, Any]:
    """A model as JSON, its artifact path relative to the project (any clone finds it)."""
    def path(p: Path) -> str:
        return str(p.resolve().relative_to(_ROOT)) if p.resolve().is_relative_to(_ROOT) else str(p)

    return {k: (path(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items()}


def print_report(report: Mapping[str, Any]) -> None:
    """The report as tables: held-out beside in-sample."""
    held, ins = report["held_out"], report["in_sample"]
    out(f"chosen on everything (the defaults): {ins['choice']['settings']}; "
        f"models {ins['choice']['nab_model']} (NAB), {ins['choice']['ims_model']} (IMS)")
    if "nab" in held:
        out("NAB, normalised (standard / low FP / low FN):")
        h = held["nab"]
        out("  held out (leave one category out, threshold from the training categories): "
            + " / ".join(f"{h[p]['normalised']:.2f}" for p in PROFILES)
            + f"; alarms only (no threshold): {h['alarms_standard']['normalised']:.2f}")
        i = ins["nab"]
        out("  in-sample (chosen and thresholded on all of nab-dev): "
            + " / ".join(f"{i[p]['normalised']:.2f}" for p in PROFILES)
            + f"; alarms only: {i['alarms_standard']:.2f}")
        for det, row in report.get("references", {}).items():
            out(f"  reference {det}: held-out thresholds "
                + " / ".join(f"{row[p]['held_out']:.2f}" for p in PROFILES)
                + "; in-sample " + " / ".join(f"{row[p]['in_sample']:.2f}" for p in PROFILES))
    for name, r in held.get("ims", {}).items():
        out(f"IMS {name}, held out: {'targets met' if r['passed'] else r['why']}")
        for u in r["units"]:
            out(f"    {u['unit']:<10} fails={u['fails']!s:<5} first={_h(u['first_alarm'])} "
                f"lead={_h(u['lead'])} raises={u['raises']} held for={_h(u['final_lead'])}")
    if "cmapss" in held:
        for label, c in (("held out", held["cmapss"]), ("in-sample", ins["cmapss"])):
            out(f"C-MAPSS {label}: detected {c['detected']}/{c['units']}, early {c['early']}, "
                f"median lead {c['lead_median']} cycles, held {c['held']}")
    for label, part in (("held out (seed 1)", held), ("in-sample (seed 0)", ins)):
        if "simulated" in part:
            sim = part["simulated"]
            delays = ", ".join(f"{e['engine']} {e['kind']} {_h(e['delay_s'])} s"
                               for e in sim["episodes"])
            out(f"simulated fleet {label}: {'targets met' if sim['passed'] else sim['why']}; "
                f"alarm delays {delays}")
    out(f"{report['grid_size']} candidates, {report['seconds']} s")


def _h(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def run(args: argparse.Namespace) -> int:
    if args.record and (args.grid != "full" or args.skip):
        raise SystemExit("--record needs the full grid and all three data sets")
    data = load(args)
    # The quick grid tries one model per data set (a run in seconds, for the tests).
    report = select(data, GRIDS[args.grid], args.folds, args.nab,
                    1 if args.grid == "quick" else None)
    print_report(report)
    text = json.dumps(report, indent=1, default=_json)
    for path in ([args.out] if args.out else []) + ([RECORD] if args.record else []):
        path.write_text(text + "\n")
        out(f"report in {path}")
    return 0


def _json(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x))
