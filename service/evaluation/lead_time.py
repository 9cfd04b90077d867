"""``vibewatch evaluate lead-time``: how early alarms come on run-to-failure data.

Datasets (from ``--data-root``, default ``../shared/data``):

* ``ims2``: IMS test 2, one engine per bearing (one channel); bearing 1 fails at the end.
* ``ims1``: IMS test 1, one engine per bearing (channels x and y); bearings 3 and 4 fail.
* ``cmapss``: C-MAPSS FD001 training set, 100 engines run to failure, the 14 sensors that
  vary, standardised online per engine.

Every engine is streamed through the processor and scoring as in the service. Reported
per engine: the first alarm (status rising to alarm) and its lead before the end of life
(the last reading), and false alarms:

* IMS: any alarm on a bearing that does not fail, before the failing bearing's first alarm
  (and the total on healthy bearings).
* C-MAPSS: there is no label of the onset of degradation, so alarms while the remaining
  life is above ``--healthy-rul`` cycles (125, the usual piecewise-linear RUL cap) count as
  false; the lead time is measured from the first alarm after that point.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from service.evaluation.common import add_common_arguments, onsets, out, run_series
from service.evaluation.nab_data import DatasetError, read_columns

DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"
DATASETS = ("ims2", "ims1", "cmapss")
#: sensors of FD001 that are not constant (columns s2, s3, ... of the NASA readme)
CMAPSS_SENSORS = (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21)
#: Scoring for slow run-to-failure trends: a long error memory, smoothing, and alarm at a
#: 1-in-1,000 tail (score 0.3), tuned on these data sets (docs/scoring.md).
LEAD_DEFAULTS: dict[str, object] = {
    "error_decay": 0.001,
    "smoothing": 0.5,
    "warning_score": 0.25,
    "alarm_score": 0.3,
    "clear_score": 0.1,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT, help="shared data folder")
    parser.add_argument(
        "--dataset", choices=DATASETS, action="append", help="repeatable (default: all)"
    )
    parser.add_argument("--healthy-rul", type=int, default=125, help="C-MAPSS: see above")
    parser.add_argument(
        "--baseline",
        type=int,
        default=30,
        help="C-MAPSS: cycles whose statistics standardise the rest (default 30)",
    )
    parser.add_argument("--json", type=Path, help="also write the per-engine results here")
    add_common_arguments(parser, "ewma", 0.001, LEAD_DEFAULTS)


@dataclass(frozen=True)
class EngineLead:
    """Outcome for one engine (times in hours for IMS, cycles for C-MAPSS)."""

    dataset: str
    engine: str
    fails: bool
    first_alarm: float | None  #: time of the first counted alarm (None: never)
    lead: float | None  #: end of life minus first_alarm
    false_alarms: int


def _ims(root: Path, test: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    path = root / "ims" / f"ims_test{test}_snapshot_meanabs.csv"
    cols = read_columns(path)
    if not cols:
        raise DatasetError(path, "empty")
    stamps = next(iter(cols.values()))
    hours = (
        np.array(
            [np.datetime64(s.replace(" ", "T")) for s in stamps], dtype="datetime64[s]"
        ).astype(np.float64)
        / 3600.0
    )
    channels = {k: np.array([float(v) for v in c]) for k, c in list(cols.items())[1:]}
    return hours, channels


def ims_leads(args: argparse.Namespace, test: int) -> list[EngineLead]:
    """Lead times of IMS test ``test``; one engine per bearing."""
    hours, channels = _ims(args.data_root, test)
    bearings: dict[str, list[str]] = {}
    for name in channels:
        bearings.setdefault(" ".join(name.split()[:2]), []).append(name)
    failing = {"Bearing 1"} if test == 2 else {"Bearing 3", "Bearing 4"}
    ids = sorted(bearings)
    series = [np.stack([channels[c] for c in bearings[b]], axis=1) for b in ids]
    traces = run_series(args, series, ids)
    first = {}
    all_onsets = {}
    for b, t in zip(ids, traces, strict=True):
        rows = np.flatnonzero(onsets(t))
        all_onsets[b] = hours[rows]
        first[b] = float(hours[rows[0]]) if rows.size else None
    end = float(hours[-1])
    outcomes = []
    for b in ids:
        fails = b in failing
        if fails:
            fa = sum(
                int(np.sum(all_onsets[h] < (first[b] if first[b] is not None else np.inf)))
                for h in ids
                if h not in failing
            )
        else:
            fa = int(all_onsets[b].size)
        f = first[b]
        outcomes.append(
            EngineLead(
                f"ims{test}",
                b,
                fails,
                None if f is None else f - float(hours[0]),
                None if f is None or not fails else end - f,
                fa,
            )
        )
    return outcomes


def cmapss_leads(args: argparse.Namespace) -> list[EngineLead]:
    """Lead times (cycles) of the 100 FD001 engines."""
    path = args.data_root / "cmapss" / "train_FD001.txt"
    try:
        raw = np.loadtxt(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(path, f"cannot read: {exc}") from exc
    units = np.unique(raw[:, 0]).astype(int)
    cols = [4 + s for s in CMAPSS_SENSORS]  # unit, cycle, 3 settings, then s1..s21
    series = [raw[raw[:, 0] == u][:, cols] for u in units]
    cycles = [raw[raw[:, 0] == u][:, 1] for u in units]
    traces = run_series(
        args,
        series,
        [f"unit-{u}" for u in units],
        # The LSTM has its own scaler, fitted on these units; the others need standardising.
        standardise=args.predictor != "lstm",
        freeze_after=args.baseline,
    )
    outcomes = []
    for u, cyc, t in zip(units, cycles, traces, strict=True):
        end = float(cyc[-1])
        rul = end - cyc
        rows = np.flatnonzero(onsets(t))
        false = rows[rul[rows] > args.healthy_rul]
        counted = rows[rul[rows] <= args.healthy_rul]
        first = float(cyc[counted[0]]) if counted.size else None
        outcomes.append(
            EngineLead(
                "cmapss",
                f"unit-{u}",
                True,
                first,
                None if first is None else end - first,
                int(false.size),
            )
        )
    return outcomes


def summarise(name: str, leads: list[EngineLead], unit: str) -> None:
    """Print one dataset's per-engine table (IMS) or summary (C-MAPSS)."""
    if name.startswith("ims"):
        out(f"{name}: first alarm and lead before the end of the test ({unit})")
        out(f"  {'bearing':<10} {'fails':>5} {'first alarm':>12} {'lead':>8} {'false alarms':>13}")
        for e in leads:
            first = "-" if e.first_alarm is None else f"{e.first_alarm:.1f}"
            ahead = "-" if e.lead is None else f"{e.lead:.1f}"
            out(f"  {e.engine:<10} {e.fails!s:>5} {first:>12} {ahead:>8} {e.false_alarms:>13}")
        return
    lead = np.array([e.lead for e in leads if e.lead is not None])
    n_false = sum(e.false_alarms for e in leads)
    engines_false = sum(e.false_alarms > 0 for e in leads)
    out(f"{name}: {len(leads)} engines")
    if lead.size:
        q = np.percentile(lead, [25, 50, 75])
        out(
            f"  detected {lead.size}/{len(leads)}; lead ({unit}): median {q[1]:.0f}, "
            f"IQR {q[0]:.0f}-{q[2]:.0f}, min {lead.min():.0f}, max {lead.max():.0f}"
        )
    out(f"  false alarms (RUL > healthy limit): {n_false} on {engines_false} engines")


def run(args: argparse.Namespace) -> int:
    chosen = args.dataset or list(DATASETS)
    everything: list[EngineLead] = []
    for name in chosen:
        if name == "cmapss":
            leads = cmapss_leads(args)
            summarise(name, leads, "cycles")
        else:
            leads = ims_leads(args, int(name[-1]))
            summarise(name, leads, "hours")
        everything.extend(leads)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(e) for e in everything], indent=1))
    return 0
